import Testing
@testable import TorusWebSocket

@Suite struct FrameRoundTripTests {
    @Test(arguments: [0, 1, 125, 126, 127, 65535, 65536, 16 << 20])
    func binaryRoundTripClientToServer(length: Int) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        var wire: [UInt8] = []
        FrameEncoder(role: .client).encodeFrame(opcode: .binary, payload: payload, into: &wire)
        let expectedHeader = length <= 125 ? 2 : (length <= 65535 ? 4 : 10)
        #expect(wire.count == expectedHeader + 4 + length)
        #expect(wire[1] & 0x80 != 0)  // masked

        // Feed in 64 KiB receive-buffer sized chunks, as the event loop would.
        var decoder = MessageDecoder(role: .server)
        var events: [WebSocketEvent] = []
        var i = 0
        repeat {
            let end = min(i + 65536, wire.count)
            events += try decoder.decode(Array(wire[i..<end]))
            i = end
        } while i < wire.count
        #expect(events.count == 1)
        #expect(events.first == .binary(payload))
    }

    @Test(arguments: [0, 125, 126, 65535, 65536])
    func textRoundTripServerToClient(length: Int) throws {
        let text = String(repeating: "é", count: length / 2) + String(repeating: "a", count: length % 2)
        var wire: [UInt8] = []
        FrameEncoder(role: .server).encodeFrame(opcode: .text, payload: utf8(text), into: &wire)
        #expect(wire[1] & 0x80 == 0)  // unmasked
        var decoder = MessageDecoder(role: .client)
        #expect(try decoder.decode(wire) == [.text(utf8(text))])
    }

    @Test func headerEncodingsUseMinimalLength() {
        func header(_ n: UInt64) -> [UInt8] {
            let h = FrameHeader(opcode: .binary, payloadLength: n)
            var out = [UInt8](repeating: 0, count: h.encodedSize)
            out.withUnsafeMutableBytes { _ = h.write(to: $0) }
            return out
        }
        #expect(header(0) == [0x82, 0x00])
        #expect(header(125) == [0x82, 125])
        #expect(header(126) == [0x82, 126, 0x00, 126])
        #expect(header(65535) == [0x82, 126, 0xFF, 0xFF])
        #expect(header(65536) == [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0])
        #expect(header(1 << 40) == [0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0])
    }

    @Test func writeFrameIntoCallerBuffer() throws {
        let enc = FrameEncoder(role: .client, fixedMaskingKey: MaskingKey(1, 2, 3, 4))
        let payload = utf8("abcdefghij")
        var buffer = [UInt8](repeating: 0xEE, count: enc.frameSize(payloadLength: payload.count) + 3)
        let n = buffer.withUnsafeMutableBytes { dst in
            payload.withUnsafeBytes { enc.writeFrame(opcode: .text, payload: $0, into: dst) }
        }
        #expect(n == 2 + 4 + 10)
        #expect(Array(buffer[n...]) == [0xEE, 0xEE, 0xEE])
        var d = MessageDecoder(role: .server)
        #expect(try d.decode(Array(buffer[..<n])) == [.text(payload)])
    }

    @Test func closePingPongEncoding() throws {
        let enc = FrameEncoder(role: .client)
        var wire: [UInt8] = []
        enc.encodePing(utf8("hi"), into: &wire)
        enc.encodePong([], into: &wire)
        enc.encodeClose(code: .normalClosure, reason: String(repeating: "€", count: 60), into: &wire)
        var d = MessageDecoder(role: .server)
        let events = try d.decode(wire)
        #expect(events.count == 3)
        #expect(events[0] == .ping(utf8("hi")))
        #expect(events[1] == .pong([]))
        // 60 x 3 bytes cut at 123 bytes on a scalar boundary: 41 euros.
        #expect(events[2] == .close(code: .normalClosure, reason: String(repeating: "€", count: 41)))

        var empty: [UInt8] = []
        FrameEncoder(role: .server).encodeClose(code: nil, into: &empty)
        #expect(empty == [0x88, 0x00])
        var c = MessageDecoder(role: .client)
        #expect(try c.decode(empty) == [.close(code: nil, reason: "")])
    }

    @Test func fragmentedMessageWithInterleavedControlFrames() throws {
        let enc = FrameEncoder(role: .client)
        var wire: [UInt8] = []
        enc.encodeFrame(opcode: .text, fin: false, payload: utf8("Hel"), into: &wire)
        enc.encodePing(utf8("p1"), into: &wire)
        enc.encodeFrame(opcode: .continuation, fin: false, payload: [], into: &wire)
        enc.encodePong(utf8("p2"), into: &wire)
        enc.encodeFrame(opcode: .continuation, fin: true, payload: utf8("lo"), into: &wire)
        var d = MessageDecoder(role: .server)
        #expect(try d.decode(wire) == [.ping(utf8("p1")), .pong(utf8("p2")), .text(utf8("Hello"))])
        #expect(!d.isMessageInProgress)
    }

    @Test func bufferIsReusedWhenCallerDropsMessage() throws {
        var d = MessageDecoder(role: .server)
        var wire: [UInt8] = []
        FrameEncoder(role: .client).encodeFrame(opcode: .binary, payload: [UInt8](repeating: 7, count: 4000), into: &wire)
        var firstAddress: UnsafeRawPointer?
        for _ in 0..<3 {
            let events = try d.decode(wire)
            guard case .binary(let bytes)? = events.first else { Issue.record("no message"); return }
            let address = bytes.withUnsafeBytes { $0.baseAddress }
            if let firstAddress { #expect(address == firstAddress) } else { firstAddress = address }
        }
    }

    @Test func largeBufferIsReleasedAfterMessage() throws {
        var d = MessageDecoder(role: .server, configuration: .init(retainedBufferCapacity: 1024))
        var wire: [UInt8] = []
        let enc = FrameEncoder(role: .client)
        enc.encodeFrame(opcode: .binary, payload: [UInt8](repeating: 1, count: 100_000), into: &wire)
        enc.encodeFrame(opcode: .binary, payload: [2], into: &wire)
        let events = try d.decode(wire)
        #expect(events.count == 2)
        #expect(d.bufferCapacity < 100_000)
    }
}
