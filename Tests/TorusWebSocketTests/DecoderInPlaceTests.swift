import Testing
import TorusTestSupport
@testable import TorusWebSocket

/// Decodes `chunks` the way a connection does: whole messages unmasked in place
/// (`takeWholeMessage`), everything else through `next`. Counts the fast-path hits.
func decodeInPlace(_ decoder: inout MessageDecoder, _ chunks: [[UInt8]]) -> (result: DecodeResult, inPlace: Int) {
    var result = DecodeResult()
    var inPlace = 0
    for chunk in chunks {
        var bytes = chunk
        let failed: Bool = bytes.withUnsafeMutableBytes { all in
            var input = UnsafeRawBufferPointer(all)
            while true {
                var rest = UnsafeMutableRawBufferPointer(mutating: input)
                while let (kind, payload) = decoder.takeWholeMessage(&rest) {
                    inPlace += 1
                    result.events.append(kind == .text ? .text(Array(payload)) : .binary(Array(payload)))
                }
                input = UnsafeRawBufferPointer(rest)
                do throws(WebSocketProtocolError) {
                    guard let event = try decoder.next(&input) else { return false }
                    result.events.append(event)
                } catch {
                    result.error = error
                    return true
                }
            }
        }
        if failed { break }
    }
    return (result, inPlace)
}

@Suite struct DecoderInPlaceTests {
    @Test func wholeFramesAreTakenInPlaceAndMatchTheCopyingPath() {
        let messages: [(Opcode, [UInt8])] = [
            (.text, utf8("héllo €")), (.binary, []), (.text, []), (.binary, testBytes(125)),
            (.binary, testBytes(126)), (.text, Array(repeating: 0x61, count: 65535)), (.binary, testBytes(300)),
        ]
        var wire: [UInt8] = []
        for (op, payload) in messages { wire += clientFrame(op, payload) }
        var d = MessageDecoder(role: .server)
        let (r, inPlace) = decodeInPlace(&d, [wire])
        #expect(r.error == nil)
        #expect(inPlace == messages.count)
        #expect(r.events == messages.map { $0.0 == .text ? .text($0.1) : .binary($0.1) })
    }

    @Test func everySplitOfTheMixedWireGivesTheSameEvents() {
        // Fragments, interleaved control frames and whole frames, cut at every byte.
        var wire = DecoderSplitTests.wire
        wire.removeLast(clientFrame(.close, [0x03, 0xE9] + utf8("done")).count)
        wire = clientFrame(.text, utf8("first")) + wire + clientFrame(.binary, [9, 8, 7])
            + clientFrame(.close, [0x03, 0xE9] + utf8("done"))
        var expected: [WebSocketEvent] = [.text(utf8("first"))] + DecoderSplitTests.expected
        expected.removeLast()
        expected += [.binary([9, 8, 7]), .close(code: .goingAway, reason: "done")]
        for cut in 0...wire.count {
            var d = MessageDecoder(role: .server)
            let (r, _) = decodeInPlace(&d, [Array(wire[..<cut]), Array(wire[cut...])])
            #expect(r.error == nil && r.events == expected, "cut at \(cut)")
        }
    }

    @Test func framesTheFastPathLeavesToTheDecoder() {
        let cases: [(String, [UInt8])] = [
            ("not final", clientFrame(.text, utf8("ab"), fin: false)),
            ("compressed (RSV1)", clientFrame(.text, utf8("ab"), rsv1: true)),
            ("control", clientFrame(.ping, utf8("ab"))),
            ("64-bit length", clientFrame(.binary, testBytes(70_000))),
            ("unmasked to a server", rawFrame(opcode: 2, key: nil, payload: [1, 2])),
            ("incomplete payload", Array(clientFrame(.binary, testBytes(200)).dropLast())),
            ("incomplete header", [0x82]),
        ]
        for (name, frame) in cases {
            var d = MessageDecoder(role: .server)
            var bytes = frame
            bytes.withUnsafeMutableBytes { all in
                var input = all
                #expect(d.takeWholeMessage(&input) == nil, "\(name)")
                #expect(input.count == frame.count, "\(name): input untouched")
            }
            #expect(bytes == frame, "\(name): bytes untouched")
        }
    }

    @Test func noFastPathInsideAFragmentedMessage() {
        var d = MessageDecoder(role: .server)
        let wire = clientFrame(.text, utf8("a"), fin: false) + clientFrame(.text, utf8("b"))
        let (r, inPlace) = decodeInPlace(&d, [wire])
        #expect(inPlace == 0)
        #expect(r.error?.closeCode == .protocolError, "a new data frame inside a fragmented message")
    }

    @Test func invalidUTF8IsRestoredAndReportedByTheDecoder() {
        // A valid frame first (taken in place), then one with a surrogate (ED A0 80).
        let wire = clientFrame(.text, utf8("ok")) + clientFrame(.text, [0x61, 0xED, 0xA0, 0x80])
        var d = MessageDecoder(role: .server)
        let (r, inPlace) = decodeInPlace(&d, [wire])
        #expect(inPlace == 1)
        #expect(r.events == [.text(utf8("ok"))])
        #expect(r.error?.closeCode == .invalidPayloadData)
    }

    @Test func sizeLimitsAreLeftToTheDecoder() {
        let config = MessageDecoderConfiguration(maxFrameSize: 125, maxMessageSize: 100)
        var d = MessageDecoder(role: .server, configuration: config)
        let (ok, _) = decodeInPlace(&d, [clientFrame(.binary, testBytes(100))])
        #expect(ok.error == nil && ok.events == [.binary(testBytes(100))])
        let (r, inPlace) = decodeInPlace(&d, [clientFrame(.binary, testBytes(101))])
        #expect(inPlace == 0)
        #expect(r.error?.closeCode == .messageTooBig)
    }

    @Test func clientRoleTakesUnmaskedServerFrames() {
        let enc = FrameEncoder(role: .server)
        var wire: [UInt8] = []
        enc.encodeFrame(opcode: .text, payload: utf8("hi"), into: &wire)
        enc.encodeFrame(opcode: .binary, payload: testBytes(1000), into: &wire)
        var d = MessageDecoder(role: .client)
        let (r, inPlace) = decodeInPlace(&d, [wire])
        #expect(inPlace == 2)
        #expect(r.events == [.text(utf8("hi")), .binary(testBytes(1000))])
        var masked = clientFrame(.binary, [1])
        masked.withUnsafeMutableBytes { all in
            var input = all
            #expect(d.takeWholeMessage(&input) == nil, "a masked frame to a client")
        }
    }
}
