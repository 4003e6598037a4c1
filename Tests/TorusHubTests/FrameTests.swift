import Testing
@testable import TorusHub

@Suite("Router protocol frames")
struct FrameTests {
    static let samples: [HubFrame] = [
        .hello(id: "router-01.home:a_b"),
        .welcome(heartbeatTimeoutMs: 30_000),
        .hello(id: "r1", version: 1),
        .welcome(heartbeatTimeoutMs: 10_000, nonce: Array(0..<32)),
        .auth(proof: Array(100..<132)),
        .auth(proof: Array(100..<132), confirm: false),
        .authOK,
        .refused(reason: "authentication failed"),
        .heartbeat,
        .event(Array(#"{"temp":21.5}"#.utf8)),
        .event([]),
        .command(requestID: 7, body: Array("open".utf8)),
        .reply(requestID: 0xFFFF_FFFF, body: [0, 1, 2, 255]),
        .bye(reason: "replaced"),
    ]

    @Test func wireLayout() {
        #expect(HubFrame.heartbeat.encoded == [0, 0, 0, 1, 3])
        #expect(HubFrame.hello(id: "r1", version: 1).encoded == [0, 0, 0, 3, 1, 0x72, 0x31])
        #expect(HubFrame.hello(id: "r1").encoded == [0, 0, 0, 4, 1, 2, 0x72, 0x31])
        #expect(HubFrame.command(requestID: 258, body: [9]).encoded == [0, 0, 0, 6, 5, 0, 0, 1, 2, 9])
    }

    @Test func roundTripWholeAndSplitAtEveryByte() throws {
        var wire: [UInt8] = []
        for f in Self.samples { f.encode(into: &wire) }
        for split in 0...wire.count {
            var decoder = HubFrameDecoder()
            var out: [HubFrame] = []
            for part in [Array(wire[..<split]), Array(wire[split...])] {
                try part.withUnsafeBytes { b in try decoder.feed(b) { out.append($0); return true } }
            }
            #expect(out == Self.samples, "split at \(split)")
            #expect(decoder.bufferedBytes == 0)
        }
        // Byte by byte.
        var decoder = HubFrameDecoder()
        var out: [HubFrame] = []
        for byte in wire {
            try [byte].withUnsafeBytes { b in try decoder.feed(b) { out.append($0); return true } }
        }
        #expect(out == Self.samples)
    }

    func decodeError(_ bytes: [UInt8], maxFrame: Int = 1024) -> HubProtocolError? {
        var decoder = HubFrameDecoder(maxFrame: maxFrame)
        do {
            try bytes.withUnsafeBytes { b in try decoder.feed(b) { _ in true } }
            return nil
        } catch {
            return error as? HubProtocolError
        }
    }

    @Test func malformedFrames() {
        #expect(decodeError([0, 0, 0, 0]) == .emptyFrame)
        #expect(decodeError([0, 0, 4, 1, 4]) == .frameTooLarge(1025))
        // The length alone is enough to refuse a huge frame (nothing is buffered).
        #expect(decodeError([0x7F, 0xFF, 0xFF, 0xFF]) == .frameTooLarge(0x7FFF_FFFF))
        #expect(decodeError([0, 0, 0, 1, 99]) == .unknownType(99))
        #expect(decodeError([0, 0, 0, 2, 3, 0]) == .badPayload(.heartbeat))
        #expect(decodeError([0, 0, 0, 3, 5, 0, 0]) == .badPayload(.command))
        #expect(decodeError([0, 0, 0, 1, 1]) == .invalidID)
        #expect(decodeError([0, 0, 0, 3, 1, 0x20, 0x41]) == .invalidID)
        #expect(decodeError(HubFrame.hello(id: String(repeating: "a", count: 65)).encoded) == .invalidID)
        #expect(decodeError([0, 0, 0, 2, 2, 0]) == .badPayload(.welcome))
    }

    @Test func ids() {
        #expect(HubFrame.isValidID("r1"))
        #expect(HubFrame.isValidID("AA:BB:CC:dd:ee:ff"))
        #expect(!HubFrame.isValidID(""))
        #expect(!HubFrame.isValidID("a/b"))
        #expect(!HubFrame.isValidID("é"))
    }
}
