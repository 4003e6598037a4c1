import Testing
@testable import TorusWebSocket

@Suite struct DecoderSplitTests {
    /// Fragmented text with a multi-byte character split across fragments,
    /// interleaved pings/pongs, a 16-bit-length binary frame and a close.
    static let wire: [UInt8] = {
        let enc = FrameEncoder(role: .client)
        var w: [UInt8] = []
        enc.encodeFrame(opcode: .text, fin: false, payload: [0x68, 0xC3], into: &w)          // "h" + half of "é"
        enc.encodePing(utf8("ping-1"), into: &w)
        enc.encodeFrame(opcode: .continuation, fin: false, payload: [0xA9, 0xE2, 0x82], into: &w)  // rest of "é", 2/3 of "€"
        enc.encodePong([], into: &w)
        enc.encodeFrame(opcode: .continuation, fin: false, payload: [], into: &w)
        enc.encodePing([], into: &w)
        enc.encodeFrame(opcode: .continuation, fin: true, payload: [0xAC, 0x21], into: &w)  // end of "€", "!"
        enc.encodeFrame(opcode: .binary, payload: (0..<300).map { UInt8(truncatingIfNeeded: $0) }, into: &w)
        enc.encodeFrame(opcode: .binary, fin: false, payload: [1, 2, 3], into: &w)
        enc.encodeFrame(opcode: .continuation, payload: [4], into: &w)
        enc.encodeClose(code: .goingAway, reason: "done", into: &w)
        return w
    }()

    static let expected: [WebSocketEvent] = [
        .ping(utf8("ping-1")), .pong([]), .ping([]), .text(utf8("hé€!")),
        .binary((0..<300).map { UInt8(truncatingIfNeeded: $0) }), .binary([1, 2, 3, 4]),
        .close(code: .goingAway, reason: "done"),
    ]

    @Test func wholeInput() {
        let r = decodeServer(Self.wire)
        #expect(r.error == nil)
        #expect(r.events == Self.expected)
    }

    @Test func splitAtEveryByteBoundary() {
        let w = Self.wire
        for cut in 0...w.count {
            var d = MessageDecoder(role: .server)
            let r = feed(&d, [Array(w[..<cut]), Array(w[cut...])])
            #expect(r.error == nil && r.events == Self.expected, "cut at \(cut)")
        }
    }

    @Test func splitAtEveryPairOfBoundaries() {
        let w = Self.wire
        for a in stride(from: 0, through: w.count, by: 1) {
            for b in stride(from: a, through: w.count, by: 7) {
                var d = MessageDecoder(role: .server)
                let r = feed(&d, [Array(w[..<a]), Array(w[a..<b]), Array(w[b...])])
                #expect(r.error == nil && r.events == Self.expected, "cuts at \(a), \(b)")
            }
        }
    }

    @Test func oneByteAtATime() {
        var d = MessageDecoder(role: .server)
        let r = feed(&d, Self.wire.map { [$0] })
        #expect(r.error == nil)
        #expect(r.events == Self.expected)
    }

    @Test func nextAdvancesInputOneEventAtATime() throws {
        var d = MessageDecoder(role: .server)
        var events: [WebSocketEvent] = []
        try Self.wire.withUnsafeBytes { raw in
            var rest = raw
            while let e = try d.next(&rest) {
                events.append(e)
                #expect(rest.count < raw.count)
            }
            #expect(rest.isEmpty)
        }
        #expect(events == Self.expected)
    }
}
