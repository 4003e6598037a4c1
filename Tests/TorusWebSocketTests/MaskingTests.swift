import Testing
@testable import TorusWebSocket

@Suite struct MaskingTests {
    func naive(_ key: MaskingKey, _ data: [UInt8], offset: Int) -> [UInt8] {
        data.enumerated().map { $0.element ^ key.byte(offset + $0.offset) }
    }

    @Test func matchesNaiveForAllLengthsOffsetsAndAlignments() {
        let key = MaskingKey(0x12, 0x34, 0xAB, 0xCD)
        let base = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        for start in 0..<9 {            // misaligned buffer starts
            for length in [0, 1, 3, 7, 8, 9, 15, 16, 17, 64, 131, 291] where start + length <= base.count {
                for offset in 0..<5 {
                    let slice = Array(base[start ..< start + length])
                    var inPlace = base
                    let next = inPlace.withUnsafeMutableBytes {
                        Masking.apply(key, to: UnsafeMutableRawBufferPointer(rebasing: $0[start ..< start + length]), offset: offset)
                    }
                    #expect(next == offset + length)
                    #expect(Array(inPlace[start ..< start + length]) == naive(key, slice, offset: offset))
                    var copied = [UInt8](repeating: 0, count: length + 1)
                    base.withUnsafeBytes { src in
                        copied.withUnsafeMutableBytes { dst in
                            _ = Masking.apply(key, from: UnsafeRawBufferPointer(rebasing: src[start ..< start + length]),
                                              to: UnsafeMutableRawBufferPointer(rebasing: dst[1...]), offset: offset)
                        }
                    }
                    #expect(Array(copied[1...]) == naive(key, slice, offset: offset))
                }
            }
        }
    }

    @Test func offsetCarriesAcrossCalls() {
        let key = MaskingKey(rawValue: 0xDEAD_BEEF)
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        var pieces = data
        var offset = 0
        var start = 0
        for size in [1, 2, 5, 8, 13, 100, 3, 868] {
            offset = pieces.withUnsafeMutableBytes {
                Masking.apply(key, to: UnsafeMutableRawBufferPointer(rebasing: $0[start ..< start + size]), offset: offset)
            }
            start += size
        }
        #expect(start == 1000)
        #expect(pieces == naive(key, data, offset: 0))
        // Involution.
        pieces.withUnsafeMutableBytes { _ = Masking.apply(key, to: $0) }
        #expect(pieces == data)
    }

    @Test func rfc6455MaskedHelloExample() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let encoder = FrameEncoder(role: .client, fixedMaskingKey: MaskingKey(0x37, 0xFA, 0x21, 0x3D))
        var out: [UInt8] = []
        encoder.encodeFrame(opcode: .text, payload: utf8("Hello"), into: &out)
        #expect(out == hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"))
        let server = FrameEncoder(role: .server)
        out = []
        server.encodeFrame(opcode: .text, payload: utf8("Hello"), into: &out)
        #expect(out == hex("81 05 48 65 6c 6c 6f"))
    }
}
