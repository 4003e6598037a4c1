import Testing
@testable import TorusWebSocket

@Suite struct DecoderErrorTests {
    func expectError(_ bytes: [UInt8], _ code: CloseCode, role: WebSocketRole = .server,
                     configuration: MessageDecoderConfiguration = .init(),
                     decompressor: PerMessageDeflateDecompressor? = nil,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        var d = MessageDecoder(role: role, configuration: configuration, decompressor: decompressor)
        let r = feed(&d, [bytes])
        #expect(r.error?.closeCode == code, "events: \(r.events)", sourceLocation: sourceLocation)
        // Every later call reports the same error.
        if let first = r.error {
            let again = feed(&d, [[0x81, 0x80, 0, 0, 0, 0]])
            #expect(again.error == first, sourceLocation: sourceLocation)
        }
    }

    @Test func serverRequiresMaskedFrames() {
        expectError(rawFrame(opcode: 1, key: nil, payload: utf8("x")), .protocolError)
    }

    @Test func clientRejectsMaskedFrames() {
        expectError(rawFrame(opcode: 1, payload: utf8("x")), .protocolError, role: .client)
        var d = MessageDecoder(role: .client)
        #expect(feed(&d, [rawFrame(opcode: 1, key: nil, payload: utf8("x"))]).events == [.text(utf8("x"))])
    }

    @Test func reservedBitsWithoutExtension() {
        expectError(rawFrame(rsv1: true, opcode: 1, payload: utf8("x")), .protocolError)
        expectError(rawFrame(rsv2: true, opcode: 1, payload: utf8("x")), .protocolError)
        expectError(rawFrame(rsv3: true, opcode: 2, payload: [1]), .protocolError)
        expectError(rawFrame(rsv2: true, opcode: 9), .protocolError)
    }

    @Test func rsv1OnlyOnFirstDataFrameWithDeflate() {
        let inflater = { PerMessageDeflateDecompressor() }
        // RSV2 is never claimed.
        expectError(rawFrame(rsv2: true, opcode: 1, payload: [0]), .protocolError, decompressor: inflater())
        // RSV1 on a control frame.
        expectError(rawFrame(rsv1: true, opcode: 9), .protocolError, decompressor: inflater())
        // RSV1 on a continuation frame.
        let compressed = PerMessageDeflateCompressor().compress(utf8("Hello"))
        expectError(rawFrame(fin: false, rsv1: true, opcode: 1, payload: compressed)
                    + rawFrame(rsv1: true, opcode: 0, payload: []), .protocolError, decompressor: inflater())
    }

    @Test(arguments: [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] as [UInt8])
    func reservedOpcodes(opcode: UInt8) {
        expectError(rawFrame(opcode: opcode), .protocolError)
    }

    @Test func controlFramesMustBeFinalAndShort() {
        expectError(rawFrame(fin: false, opcode: 9, payload: utf8("x")), .protocolError)
        expectError(rawFrame(opcode: 9, payload: [UInt8](repeating: 0, count: 126)), .protocolError)
        expectError(rawFrame(opcode: 0xA, payload: [UInt8](repeating: 0, count: 126)), .protocolError)
        expectError(rawFrame(opcode: 8, payload: [3, 0xE8] + [UInt8](repeating: 0x61, count: 124)), .protocolError)
        // 125 is fine.
        #expect(decodeServer(rawFrame(opcode: 9, payload: [UInt8](repeating: 1, count: 125))).events
                == [.ping([UInt8](repeating: 1, count: 125))])
    }

    @Test func continuationWithoutMessage() {
        expectError(rawFrame(opcode: 0, payload: utf8("x")), .protocolError)
        expectError(rawFrame(fin: false, opcode: 0, payload: utf8("x")), .protocolError)
        // After a complete message there is again nothing to continue.
        expectError(rawFrame(opcode: 1, payload: utf8("a")) + rawFrame(opcode: 0, payload: utf8("b")), .protocolError)
    }

    @Test func newDataFrameInsideFragmentedMessage() {
        expectError(rawFrame(fin: false, opcode: 1, payload: utf8("a")) + rawFrame(opcode: 1, payload: utf8("b")),
                    .protocolError)
        expectError(rawFrame(fin: false, opcode: 2, payload: [1]) + rawFrame(fin: false, opcode: 2, payload: [2]),
                    .protocolError)
    }

    @Test func sixtyFourBitLengthWithMostSignificantBit() {
        expectError([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4], .protocolError)
    }

    @Test func closeBodyOfOneByte() {
        expectError(rawFrame(opcode: 8, payload: [0x03]), .protocolError)
    }

    @Test(arguments: [0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535] as [UInt16])
    func invalidCloseCodes(code: UInt16) {
        expectError(rawFrame(opcode: 8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)]), .protocolError)
    }

    @Test(arguments: [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] as [UInt16])
    func validCloseCodes(code: UInt16) {
        let r = decodeServer(rawFrame(opcode: 8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)] + utf8("bye ✓")))
        #expect(r.error == nil)
        #expect(r.events == [.close(code: CloseCode(rawValue: code), reason: "bye ✓")])
    }

    @Test func invalidUTF8InCloseReason() {
        expectError(rawFrame(opcode: 8, payload: [0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD]), .invalidPayloadData)
        expectError(rawFrame(opcode: 8, payload: [0x03, 0xE8, 0xED, 0xA0, 0x80]), .invalidPayloadData)
    }

    @Test func invalidUTF8InText() {
        expectError(rawFrame(opcode: 1, payload: [0x61, 0xC0, 0xAF]), .invalidPayloadData)
        // Truncated sequence at the end of the message.
        expectError(rawFrame(opcode: 1, payload: [0x61, 0xE2, 0x82]), .invalidPayloadData)
        // Binary messages are not validated.
        #expect(decodeServer(rawFrame(opcode: 2, payload: [0xC0, 0xAF])).events == [.binary([0xC0, 0xAF])])
    }

    @Test func utf8FailsFastBeforeMessageEnds() {
        // Frame announces 1000 bytes; only the first 3 arrive, the 2nd is invalid.
        var frame = rawFrame(fin: false, opcode: 1, payload: [0x61, 0xFF] + [UInt8](repeating: 0x61, count: 998))
        frame = Array(frame[..<(frame.count - 997)])
        var d = MessageDecoder(role: .server)
        #expect(feed(&d, [frame]).error?.closeCode == .invalidPayloadData)
    }

    @Test func utf8FailsFastAcrossFragmentsAndChunks() {
        // "κ" split across fragments is fine...
        let ok = rawFrame(fin: false, opcode: 1, payload: [0xCE]) + rawFrame(opcode: 0, payload: [0xBA])
        #expect(decodeServer(ok).events == [.text(utf8("κ"))])
        // ...a surrogate split across fragments fails on the first bad byte of
        // the second fragment, while the message is still open.
        let first = rawFrame(fin: false, opcode: 1, payload: [0x61, 0xED])
        let second = rawFrame(fin: false, opcode: 0, payload: [0xA0, 0x80])
        var d = MessageDecoder(role: .server)
        let r = feed(&d, [first, Array(second[..<7])])  // header (6) + first payload byte
        #expect(r.error?.closeCode == .invalidPayloadData)
    }

    @Test func frameTooBig() {
        let config = MessageDecoderConfiguration(maxFrameSize: 1000, maxMessageSize: 5000)
        // Rejected from the header alone, before any payload arrives.
        var header = rawFrame(opcode: 2, payload: [UInt8](repeating: 0, count: 1001))
        header = Array(header[..<8])
        expectError(header, .messageTooBig, configuration: config)
        #expect(decodeServer(rawFrame(opcode: 2, payload: [UInt8](repeating: 0, count: 1000)),
                             configuration: config).events.count == 1)
    }

    @Test func messageTooBigAcrossFragments() {
        let config = MessageDecoderConfiguration(maxFrameSize: 1000, maxMessageSize: 2500)
        let frag = [UInt8](repeating: 0x61, count: 1000)
        let ok = rawFrame(fin: false, opcode: 1, payload: frag) + rawFrame(fin: false, opcode: 0, payload: frag)
            + rawFrame(opcode: 0, payload: Array(frag[..<500]))
        #expect(decodeServer(ok, configuration: config).events == [.text([UInt8](repeating: 0x61, count: 2500))])
        let tooBig = rawFrame(fin: false, opcode: 1, payload: frag) + rawFrame(fin: false, opcode: 0, payload: frag)
            + rawFrame(opcode: 0, payload: Array(frag[..<501]))
        expectError(tooBig, .messageTooBig, configuration: config)
    }

    /// Limits of Int.max ("no limit"): a peer's 63-bit length after a fragment ends in
    /// 1009, not in an overflowing sum of the message so far and the frame (a trap before).
    @Test func hugeLengthUnderUnlimitedLimitsIsAnError() {
        let config = MessageDecoderConfiguration(maxFrameSize: .max, maxMessageSize: .max)
        let header = FrameHeader(opcode: .continuation, maskingKey: MaskingKey(1, 2, 3, 4), payloadLength: UInt64(Int.max))
        var huge = [UInt8](repeating: 0, count: FrameHeader.maxEncodedSize)
        let n = huge.withUnsafeMutableBytes { header.write(to: $0) }
        expectError(rawFrame(fin: false, opcode: 1, payload: utf8("x")) + Array(huge[..<n]), .messageTooBig,
                    configuration: config)
    }

    /// A message limit of Int.max with permessage-deflate: inflating does not overflow
    /// the limit's one-byte margin (a trap before), and the message arrives.
    @Test func compressedMessageUnderUnlimitedLimit() {
        let config = MessageDecoderConfiguration(maxFrameSize: .max, maxMessageSize: .max)
        let compressed = PerMessageDeflateCompressor().compress(utf8("Hello"))
        let r = decodeServer(rawFrame(rsv1: true, opcode: 1, payload: compressed), configuration: config,
                             decompressor: PerMessageDeflateDecompressor())
        #expect(r.error == nil)
        #expect(r.events == [.text(utf8("Hello"))])
    }

    /// The frame limit a connection derives for permessage-deflate saturates instead of
    /// overflowing when the configured limit is Int.max (negotiated by the peer: a trap before).
    @Test func deflateFrameLimitSaturates() {
        var configuration = WebSocketConfiguration()
        configuration.maxFrameSize = .max
        #expect(configuration.decoderConfiguration(deflate: true).maxFrameSize == .max)
        configuration.maxFrameSize = 6400
        #expect(configuration.decoderConfiguration(deflate: true).maxFrameSize == 6400 + 100 + 1024)
    }

    @Test func inputAfterCloseIsIgnored() {
        let bytes = rawFrame(opcode: 8, payload: [0x03, 0xE8]) + rawFrame(opcode: 1, payload: utf8("late"))
            + [0xFF, 0xFF, 0xFF]
        let r = decodeServer(bytes)
        #expect(r.error == nil)
        #expect(r.events == [.close(code: .normalClosure, reason: "")])
    }

    @Test func closeInsideFragmentedMessageIsDelivered() {
        // Autobahn 7.1.5 expects a normal close here, not 1002.
        let bytes = rawFrame(fin: false, opcode: 1, payload: utf8("frag")) + rawFrame(opcode: 8, payload: [0x03, 0xE8])
        let r = decodeServer(bytes)
        #expect(r.error == nil)
        #expect(r.events == [.close(code: .normalClosure, reason: "")])
    }
}
