import CZlib
import Testing
@testable import TorusWebSocket

@Suite struct DeflateTests {
    static let sample = utf8(String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 200))

    @Test func emptyAndSmallMessages() throws {
        let c = PerMessageDeflateCompressor()
        let d = PerMessageDeflateDecompressor()
        for m in [[], utf8("a"), utf8("Hello"), [UInt8](repeating: 0, count: 10)] as [[UInt8]] {
            let z = c.compress(m)
            #expect(!z.isEmpty)
            #expect(try d.decompress(z, limit: 1 << 20) == m)
        }
    }

    @Test func rfc7692Example() throws {
        // RFC 7692 7.2.3.1: "Hello" compressed.
        let d = PerMessageDeflateDecompressor()
        #expect(try d.decompress(hex("f2 48 cd c9 c9 07 00"), limit: 100) == utf8("Hello"))
        // 7.2.3.2: the same message twice with context takeover; the 2nd refers back.
        #expect(try d.decompress(hex("f2 00 11 00 00"), limit: 100) == utf8("Hello"))
        // 7.2.3.3: stored block.
        #expect(try PerMessageDeflateDecompressor().decompress(hex("00 05 00 fa ff 48 65 6c 6c 6f 00"), limit: 100)
                == utf8("Hello"))
        // 7.2.3.4: BFINAL block.
        #expect(try PerMessageDeflateDecompressor().decompress(hex("f3 48 cd c9 c9 07 00 00"), limit: 100)
                == utf8("Hello"))
    }

    @Test func contextTakeoverShrinksRepeats() throws {
        let c = PerMessageDeflateCompressor()
        let d = PerMessageDeflateDecompressor()
        let first = c.compress(Self.sample)
        let second = c.compress(Self.sample)
        #expect(second.count < first.count)
        #expect(try d.decompress(first, limit: 1 << 20) == Self.sample)
        #expect(try d.decompress(second, limit: 1 << 20) == Self.sample)
    }

    @Test func noContextTakeoverMessagesAreIndependent() throws {
        let c = PerMessageDeflateCompressor(noContextTakeover: true)
        let first = c.compress(Self.sample)
        let second = c.compress(Self.sample)
        #expect(first == second)
        // Each decodes with a fresh decompressor, and in sequence with a resetting one.
        #expect(try PerMessageDeflateDecompressor().decompress(second, limit: 1 << 20) == Self.sample)
        let d = PerMessageDeflateDecompressor(noContextTakeover: true)
        for _ in 0..<3 { #expect(try d.decompress(first, limit: 1 << 20) == Self.sample) }
    }

    @Test(arguments: [8, 9, 10, 12, 15])
    func windowBitsHonoured(bits: Int) {
        // Pseudo-random text with long-distance repeats; decode with a zlib
        // inflater limited to the negotiated window to prove no reference
        // reaches further back.
        var rng = SplitMix(seed: 42)
        let block = (0..<3000).map { _ in UInt8(0x61 + rng.next() % 26) }
        let message = block + block + block
        let c = PerMessageDeflateCompressor(windowBits: bits)
        let z1 = c.compress(message), z2 = c.compress(message)
        #expect(z2.count < z1.count || bits < 15)
        #expect(inflateRaw([z1, z2], windowBits: bits) == [message, message])
    }

    @Test func zipBombIsBounded() throws {
        let limit = 1 << 20
        let bomb = PerMessageDeflateCompressor().compress([UInt8](repeating: 0, count: 16 << 20))
        #expect(bomb.count < 32 << 10)  // > 500:1
        var out: [UInt8] = []
        let d = PerMessageDeflateDecompressor()
        var failure: WebSocketProtocolError?
        bomb.withUnsafeBytes { raw in
            do throws(WebSocketProtocolError) {
                try d.decompress(raw, into: &out, limit: limit)
            } catch {
                failure = error
            }
        }
        #expect(failure?.closeCode == .messageTooBig)
        #expect(out.capacity <= limit + 64 << 10)
        // Exactly at the limit is fine.
        let exact = PerMessageDeflateCompressor().compress([UInt8](repeating: 0, count: limit))
        #expect(try PerMessageDeflateDecompressor().decompress(exact, limit: limit).count == limit)
    }

    @Test func zipBombThroughDecoder() {
        let limit = 1 << 20
        let bomb = PerMessageDeflateCompressor().compress([UInt8](repeating: 0x61, count: 16 << 20))
        var wire: [UInt8] = []
        FrameEncoder(role: .client).encodeFrame(opcode: .text, rsv1: true, payload: bomb, into: &wire)
        var decoder = MessageDecoder(role: .server, configuration: .init(maxMessageSize: limit),
                                     decompressor: PerMessageDeflateDecompressor())
        let r = feed(&decoder, [wire])
        #expect(r.error?.closeCode == .messageTooBig)
        #expect(decoder.bufferCapacity <= limit + 64 << 10)
    }

    @Test func corruptDataIs1007() {
        let r = decodeServer(rawFrame(rsv1: true, opcode: 2, payload: [0xFF, 0xFF, 0xFF, 0xFF]),
                             decompressor: PerMessageDeflateDecompressor())
        #expect(r.error?.closeCode == .invalidPayloadData)
    }

    /// Client compresses, server decodes: single frame, fragmented, mixed with
    /// uncompressed messages and control frames, split into tiny chunks.
    @Test(arguments: [false, true])
    func endToEnd(noContextTakeover: Bool) throws {
        let agreement = PerMessageDeflateAgreement(serverNoContextTakeover: noContextTakeover,
                                                   clientNoContextTakeover: noContextTakeover)
        let compressor = try #require(agreement.makeCompressor(role: .client))
        let enc = FrameEncoder(role: .client)
        let text = utf8(String(repeating: "κόσμε 🌍 ", count: 500))
        var wire: [UInt8] = []
        enc.encodeFrame(opcode: .text, rsv1: true, payload: compressor.compress(text), into: &wire)
        // Fragmented compressed binary with a ping in between.
        let binary = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 / 7) }
        let z = compressor.compress(binary)
        let third = z.count / 3
        enc.encodeFrame(opcode: .binary, fin: false, rsv1: true, payload: Array(z[..<third]), into: &wire)
        enc.encodePing(utf8("x"), into: &wire)
        enc.encodeFrame(opcode: .continuation, fin: false, payload: Array(z[third ..< 2 * third]), into: &wire)
        enc.encodeFrame(opcode: .continuation, fin: true, payload: Array(z[(2 * third)...]), into: &wire)
        // An uncompressed message on a deflate connection.
        enc.encodeFrame(opcode: .text, payload: utf8("plain"), into: &wire)
        enc.encodeFrame(opcode: .text, rsv1: true, payload: compressor.compress(text), into: &wire)

        let expected: [WebSocketEvent] = [.text(text), .ping(utf8("x")), .binary(binary), .text(utf8("plain")), .text(text)]
        for chunkSize in [1, 3, 1000, wire.count] {
            var decoder = MessageDecoder(role: .server, decompressor: agreement.makeDecompressor(role: .server))
            let chunks = stride(from: 0, to: wire.count, by: chunkSize).map { Array(wire[$0 ..< min($0 + chunkSize, wire.count)]) }
            let r = feed(&decoder, chunks)
            #expect(r.error == nil)
            #expect(r.events == expected, "chunk size \(chunkSize)")
        }
    }

    @Test func compressedInvalidUTF8FailsFast() {
        var bad = [UInt8](repeating: 0x61, count: 50_000)
        bad[10] = 0xFF
        let z = PerMessageDeflateCompressor().compress(bad)
        let wire = rawFrame(fin: false, rsv1: true, opcode: 1, payload: z)
        let r = decodeServer(wire, decompressor: PerMessageDeflateDecompressor())
        #expect(r.error?.closeCode == .invalidPayloadData)
    }

    @Test func largeCompressedMessage() throws {
        var message = [UInt8](repeating: 0, count: 16 << 20)
        message.withUnsafeMutableBytes { m in
            var x: UInt32 = 1
            for i in stride(from: 0, to: m.count, by: 4) {
                x = x &* 1_103_515_245 &+ 12345
                m.storeBytes(of: x >> 24 & 0x0F, toByteOffset: i, as: UInt32.self)  // compressible noise
            }
        }
        let z = PerMessageDeflateCompressor().compress(message)
        var wire: [UInt8] = []
        FrameEncoder(role: .client).encodeFrame(opcode: .binary, rsv1: true, payload: z, into: &wire)
        var decoder = MessageDecoder(role: .server, decompressor: PerMessageDeflateDecompressor())
        #expect(try decoder.decode(wire) == [.binary(message)])
    }

    /// zlib refusing a stream (out of memory, or a level it does not accept) is not a
    /// trap on a connection: no compressor means uncompressed messages (RFC 7692
    /// allows any message uncompressed); no decompressor fails a compressed message
    /// with 1011, and an uncompressed one still passes.
    @Test func zlibRefusingAStreamDegradesWithoutATrap() throws {
        #expect(PerMessageDeflateCompressor.make(memoryLevel: 0) == nil, "memory level 0 is refused by zlib")
        #expect(PerMessageDeflateCompressor.make(level: 42) == nil)
        #expect(PerMessageDeflateDecompressor.make(noContextTakeover: false, windowBits: 7) == nil)
        #expect(PerMessageDeflateCompressor.make(windowBits: 8) != nil)
        #expect(PerMessageDeflateDecompressor.make() != nil)
        let agreement = PerMessageDeflateAgreement(compressionLevel: -1, memoryLevel: 0)
        #expect(agreement.makeCompressor(role: .server) == nil)

        let enc = FrameEncoder(role: .client)
        var plain: [UInt8] = [], zipped: [UInt8] = []
        enc.encodeFrame(opcode: .text, rsv1: false, payload: utf8("plain"), into: &plain)
        enc.encodeFrame(opcode: .text, rsv1: true, payload: PerMessageDeflateCompressor().compress(utf8("zipped")), into: &zipped)
        var decoder = MessageDecoder(role: .server, decompressor: nil)
        decoder.compressionUnavailable = true
        let r = feed(&decoder, [plain, zipped])
        #expect(r.events == [.text(utf8("plain"))])
        #expect(r.error?.closeCode == .internalError, "\(String(describing: r.error))")
        // Without the agreement the same frame is the peer's error: 1002.
        #expect(decodeServer(zipped).error?.closeCode == .protocolError)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt8 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt8(truncatingIfNeeded: z ^ (z >> 31))
    }
}

/// Inflates raw DEFLATE messages (tail already removed) in sequence on one
/// zlib stream with a given window size.
func inflateRaw(_ messages: [[UInt8]], windowBits: Int) -> [[UInt8]] {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    defer {
        inflateEnd(stream)
        stream.deallocate()
    }
    #expect(torus_inflateInit2(stream, Int32(-windowBits)) == Z_OK)
    var results: [[UInt8]] = []
    for message in messages {
        var input = message + [0, 0, 0xFF, 0xFF]
        var out = [UInt8](repeating: 0, count: 1 << 20)
        let rc = input.withUnsafeMutableBytes { inp in
            out.withUnsafeMutableBytes { o -> Int32 in
                stream.pointee.next_in = inp.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_in = uInt(inp.count)
                stream.pointee.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(o.count)
                return inflate(stream, Z_SYNC_FLUSH)
            }
        }
        #expect(rc == Z_OK, "inflate returned \(rc)")
        results.append(Array(out[..<(out.count - Int(stream.pointee.avail_out))]))
    }
    return results
}
