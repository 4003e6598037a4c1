/// Limits enforced by ``MessageDecoder``. A plain value; `Sendable`.
public struct MessageDecoderConfiguration: Hashable, Sendable {
    /// Largest payload of a single frame, in bytes (as announced on the wire,
    /// so compressed size for compressed frames). Larger -> 1009.
    public var maxFrameSize: Int
    /// Largest message, in bytes, after reassembly and decompression.
    /// Larger -> 1009. Inclusive: a message of exactly this size is accepted.
    public var maxMessageSize: Int
    /// Between messages the reassembly buffer is kept for reuse if its
    /// capacity is at most this many bytes; a larger one is released so that
    /// one big message does not pin memory for the connection's lifetime.
    public var retainedBufferCapacity: Int

    public init(maxFrameSize: Int = 16 << 20, maxMessageSize: Int = 16 << 20, retainedBufferCapacity: Int = 64 << 10) {
        precondition(maxFrameSize >= 125 && maxMessageSize >= 0 && retainedBufferCapacity >= 0)
        self.maxFrameSize = maxFrameSize
        self.maxMessageSize = maxMessageSize
        self.retainedBufferCapacity = retainedBufferCapacity
    }
}

/// Incremental RFC 6455 (+ RFC 7692) decoder: bytes in, ``WebSocketEvent``s out.
///
/// Feed it received bytes in chunks of any size, split anywhere. It never
/// keeps a pointer into the input: every call copies what it needs (at most a
/// 14-byte partial header, payload bytes unmasked straight into the message
/// buffer), so the caller may return the receive buffer to the kernel as soon
/// as a call returns.
///
/// Memory: the decoder owns a reassembly buffer for the current data message
/// (grown geometrically, never beyond ``MessageDecoderConfiguration/maxMessageSize``
/// plus one byte, so large messages cost amortised linear copying), a 125-byte
/// control-frame buffer, and the optional decompressor. Events hand out arrays
/// (see ``WebSocketEvent``).
///
/// Validation (each failure is thrown once as a ``WebSocketProtocolError`` and
/// every later call rethrows it; the caller sends a close frame with its code and
/// fails the connection):
/// - 1002: RSV bits not claimed by an extension (RSV1 is permessage-deflate's,
///   only on the first frame of a data message and only if a decompressor was
///   given); reserved opcodes; a server receiving an unmasked frame or a client
///   a masked one; a 64-bit length with the top bit set; a control frame that is
///   fragmented or longer than 125 bytes; a continuation with no message open or
///   a new data frame while one is; a close body of 1 byte or an invalid close code.
/// - 1007: invalid UTF-8 in a text message (detected at the first bad byte,
///   across frames and chunks, and a truncated sequence at the end) or in a close
///   reason; corrupt compressed data.
/// - 1009: a frame above `maxFrameSize` or a message above `maxMessageSize`.
///
/// Control frames between fragments of a message are delivered as they come.
/// After a close frame the decoder reports no more events and discards input.
///
/// Threading: a value type with a reference to a non-`Sendable` decompressor;
/// confine it to the connection's loop.
public struct MessageDecoder {
    public let role: WebSocketRole
    public let configuration: MessageDecoderConfiguration
    private let decompressor: PerMessageDeflateDecompressor?

    private enum Phase {
        case header
        case payload
        case closed
        case failed(WebSocketProtocolError)
    }

    private var phase: Phase = .header

    // Partial header (only used when a header straddles two inputs).
    private var headerBytes = [UInt8](repeating: 0, count: FrameHeader.maxEncodedSize)
    private var headerCount = 0

    // Current frame.
    private var frameOpcode = Opcode.continuation
    private var frameFin = false
    private var frameKey: MaskingKey?
    private var frameRemaining = 0
    private var frameOffset = 0

    // Current data message.
    private var messageOpcode: Opcode?
    private var messageCompressed = false
    private var message: [UInt8] = []
    private var validator = UTF8Validator()

    // Current control frame.
    private var control: [UInt8] = []

    /// - Parameters:
    ///   - role: our role; a server expects masked frames, a client unmasked ones.
    ///   - decompressor: pass one (from ``PerMessageDeflateAgreement/makeDecompressor(role:)``)
    ///     iff permessage-deflate was negotiated; it allows RSV1 on data messages.
    public init(role: WebSocketRole, configuration: MessageDecoderConfiguration = .init(),
                decompressor: PerMessageDeflateDecompressor? = nil) {
        self.role = role
        self.configuration = configuration
        self.decompressor = decompressor
        control.reserveCapacity(FrameEncoder.maxControlPayload)
    }

    /// True between the first and the last frame of a fragmented data message.
    public var isMessageInProgress: Bool { messageOpcode != nil }

    /// True once a close frame has been decoded.
    public var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    /// Capacity of the reassembly buffer (for tests and metrics).
    public var bufferCapacity: Int { message.capacity }

    /// Consumes bytes from the front of `input` until one event is complete
    /// (returned, with `input` advanced past what was used) or `input` is
    /// exhausted (returns `nil`, `input` empty). Call again with the rest while
    /// it returns events.
    public mutating func next(_ input: inout UnsafeRawBufferPointer) throws(WebSocketProtocolError) -> WebSocketEvent? {
        switch phase {
        case .failed(let error):
            throw error
        case .closed:
            input = UnsafeRawBufferPointer(start: nil, count: 0)
            return nil
        case .header, .payload:
            break
        }
        do {
            while true {
                if case .header = phase {
                    guard let header = takeHeader(&input) else { return nil }
                    try startFrame(header)
                    phase = .payload
                }
                if frameRemaining > 0 {
                    if input.isEmpty { return nil }
                    try consumePayload(&input)
                    if frameRemaining > 0 { return nil }
                }
                phase = .header
                if let event = try endFrame() { return event }
            }
        } catch {
            phase = .failed(error)
            decompressor?.reset()
            throw error
        }
    }

    /// Decodes all of `input`, calling `body` for each event in order.
    public mutating func decode(_ input: UnsafeRawBufferPointer,
                                _ body: (WebSocketEvent) -> Void) throws(WebSocketProtocolError) {
        var rest = input
        while let event = try next(&rest) { body(event) }
    }

    /// Decodes all of `input` and returns the events.
    public mutating func decode(_ input: [UInt8]) throws(WebSocketProtocolError) -> [WebSocketEvent] {
        var events: [WebSocketEvent] = []
        var failure: WebSocketProtocolError?
        input.withUnsafeBytes { raw in
            do throws(WebSocketProtocolError) {
                try decode(raw) { events.append($0) }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return events
    }

    // MARK: Whole frames in place

    /// Fast path for the common case, a whole small message in one frame: when no
    /// frame or fragmented message is in progress and `input` starts with a complete
    /// final text or binary frame (uncompressed, no RSV bit, masked as our role
    /// expects, 7- or 16-bit length, within both size limits), unmasks its payload
    /// *in place*, validates text, advances `input` past the frame and returns the
    /// payload, a slice of `input` that is valid as long as the caller's buffer.
    ///
    /// Returns nil, with `input` and the decoder unchanged, in every other case:
    /// the caller then uses ``next(_:)``, which also reports any error (invalid
    /// UTF-8 is re-masked before returning nil, so `next` sees the original bytes).
    ///
    /// `input` must be memory the caller may modify (a receive buffer it owns).
    public mutating func takeWholeMessage(_ input: inout UnsafeMutableRawBufferPointer)
        -> (kind: WebSocketMessageKind, payload: UnsafeRawBufferPointer)? {
        guard case .header = phase, headerCount == 0, messageOpcode == nil,
              input.count >= 2, let base = input.baseAddress else { return nil }
        let b0 = base.load(as: UInt8.self)
        let b1 = base.load(fromByteOffset: 1, as: UInt8.self)
        // FIN set, RSV1-3 clear, opcode text (1) or binary (2).
        let kind: WebSocketMessageKind
        switch b0 {
        case 0x81: kind = .text
        case 0x82: kind = .binary
        default: return nil
        }
        let masked = b1 & 0x80 != 0
        guard masked == (role == .server) else { return nil }
        var length = Int(b1 & 0x7F)
        var size = 2
        if length == 126 {
            guard input.count >= 4 else { return nil }
            length = Int(base.load(fromByteOffset: 2, as: UInt8.self)) << 8
                | Int(base.load(fromByteOffset: 3, as: UInt8.self))
            size = 4
        } else if length == 127 {
            return nil
        }
        let keyAt = size
        if masked { size += 4 }
        guard length <= configuration.maxFrameSize, length <= configuration.maxMessageSize,
              input.count - size >= length else { return nil }
        let payload = UnsafeMutableRawBufferPointer(start: base + size, count: length)
        var key: MaskingKey?
        if masked {
            key = MaskingKey(rawValue: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: keyAt, as: UInt32.self)))
        }
        if let key { Masking.apply(key, to: payload) }
        if kind == .text, !UTF8Validator.isValidUTF8(UnsafeRawBufferPointer(payload)) {
            if let key { Masking.apply(key, to: payload) }
            return nil
        }
        input = UnsafeMutableRawBufferPointer(rebasing: input[(size + length)...])
        return (kind, UnsafeRawBufferPointer(payload))
    }

    // MARK: Header

    private mutating func takeHeader(_ input: inout UnsafeRawBufferPointer) -> FrameHeader? {
        if headerCount == 0, let (header, size) = FrameHeader.parse(input) {
            input = UnsafeRawBufferPointer(rebasing: input[size...])
            return header
        }
        while true {
            let needed = headerCount < 2 ? 2 : FrameHeader.sizeFromFirstTwoBytes(headerBytes[1])
            if headerCount == needed {
                headerCount = 0
                return headerBytes.withUnsafeBytes { FrameHeader.parse(UnsafeRawBufferPointer(rebasing: $0[..<needed]))!.header }
            }
            guard !input.isEmpty else { return nil }
            let n = min(needed - headerCount, input.count)
            for k in 0..<n { headerBytes[headerCount + k] = input[k] }
            headerCount += n
            input = UnsafeRawBufferPointer(rebasing: input[n...])
        }
    }

    private mutating func startFrame(_ h: FrameHeader) throws(WebSocketProtocolError) {
        let op = h.opcode
        if h.rsv2 || h.rsv3 { throw .protocolError("reserved bits set") }
        if op.isReserved { throw .protocolError("reserved opcode \(op.rawValue)") }
        if h.rsv1 && !(decompressor != nil && (op == .text || op == .binary)) {
            throw .protocolError("RSV1 set without permessage-deflate on a first data frame")
        }
        switch role {
        case .server where h.maskingKey == nil: throw .protocolError("unmasked client frame")
        case .client where h.maskingKey != nil: throw .protocolError("masked server frame")
        default: break
        }
        if h.payloadLength >= 1 << 63 { throw .protocolError("payload length has the most significant bit set") }
        if op.isControl {
            if !h.fin { throw .protocolError("fragmented control frame") }
            if h.payloadLength > 125 { throw .protocolError("control frame payload over 125 bytes") }
        } else if op == .continuation {
            if messageOpcode == nil { throw .protocolError("continuation frame without a message") }
        } else if messageOpcode != nil {
            throw .protocolError("new data frame inside a fragmented message")
        }
        if h.payloadLength > UInt64(configuration.maxFrameSize) {
            throw .tooBig("frame of \(h.payloadLength) bytes exceeds \(configuration.maxFrameSize)")
        }
        let length = Int(h.payloadLength)

        frameOpcode = op
        frameFin = h.fin
        frameKey = h.maskingKey
        frameRemaining = length
        frameOffset = 0

        if op.isControl {
            control.removeAll(keepingCapacity: true)
            return
        }
        if op != .continuation {
            messageOpcode = op
            messageCompressed = h.rsv1
            validator.reset()
            if message.capacity > configuration.retainedBufferCapacity {
                message = []
            } else {
                message.removeAll(keepingCapacity: true)
            }
        }
        if !messageCompressed && message.count + length > configuration.maxMessageSize {
            throw .tooBig("message exceeds \(configuration.maxMessageSize) bytes")
        }
    }

    // MARK: Payload

    private mutating func consumePayload(_ input: inout UnsafeRawBufferPointer) throws(WebSocketProtocolError) {
        let n = min(frameRemaining, input.count)
        let chunk = UnsafeRawBufferPointer(rebasing: input[..<n])
        input = UnsafeRawBufferPointer(rebasing: input[n...])
        frameRemaining -= n

        if frameOpcode.isControl {
            MessageDecoder.appendUnmasked(chunk, to: &control, key: frameKey, offset: &frameOffset)
        } else if messageCompressed {
            try inflate(chunk)
        } else {
            let start = message.count
            reserveMessage(adding: n)
            MessageDecoder.appendUnmasked(chunk, to: &message, key: frameKey, offset: &frameOffset)
            try validateText(from: start)
        }
    }

    private static func appendUnmasked(_ chunk: UnsafeRawBufferPointer, to buffer: inout [UInt8],
                                       key: MaskingKey?, offset: inout Int) {
        let start = buffer.count
        buffer.append(contentsOf: chunk)
        if let key {
            let from = offset
            offset = buffer.withUnsafeMutableBytes {
                Masking.apply(key, to: UnsafeMutableRawBufferPointer(rebasing: $0[start...]), offset: from)
            }
        }
    }

    /// Geometric growth capped at the message limit: amortised O(1) per byte,
    /// and never more than `maxMessageSize` bytes of capacity for a message.
    private mutating func reserveMessage(adding n: Int) {
        let needed = message.count + n
        if needed > message.capacity {
            let cap = max(configuration.maxMessageSize, needed)
            message.reserveCapacity(min(max(needed, message.capacity * 2, 256), cap))
        }
    }

    private mutating func inflate(_ chunk: UnsafeRawBufferPointer) throws(WebSocketProtocolError) {
        guard let decompressor else { return }
        let limit = configuration.maxMessageSize
        let start = message.count
        var failure: WebSocketProtocolError?
        var output = message
        message = []  // keep `output` uniquely referenced while inflating
        var offset = frameOffset
        if let key = frameKey {
            // Unmask through a small stack buffer: the input is not ours to modify.
            let piece = 4096
            withUnsafeTemporaryAllocation(byteCount: min(piece, chunk.count), alignment: 8) { tmp in
                var done = 0
                while done < chunk.count, failure == nil {
                    let n = min(piece, chunk.count - done)
                    let src = UnsafeRawBufferPointer(rebasing: chunk[done ..< done + n])
                    let dst = UnsafeMutableRawBufferPointer(rebasing: tmp[..<n])
                    offset = Masking.apply(key, from: src, to: dst, offset: offset)
                    do throws(WebSocketProtocolError) {
                        try decompressor.decompress(UnsafeRawBufferPointer(dst), into: &output, limit: limit)
                    } catch {
                        failure = error
                    }
                    done += n
                }
            }
        } else {
            do throws(WebSocketProtocolError) {
                try decompressor.decompress(chunk, into: &output, limit: limit)
            } catch {
                failure = error
            }
        }
        message = output
        frameOffset = offset
        if let failure { throw failure }
        try validateText(from: start)
    }

    private mutating func validateText(from start: Int) throws(WebSocketProtocolError) {
        guard messageOpcode == .text, message.count > start else { return }
        var v = validator
        let ok = message.withUnsafeBytes { v.validate(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        validator = v
        if !ok { throw .invalidPayload("invalid UTF-8 in text message") }
    }

    // MARK: End of frame

    private mutating func endFrame() throws(WebSocketProtocolError) -> WebSocketEvent? {
        if frameOpcode.isControl {
            switch frameOpcode {
            case .ping: return .ping(Array(control))
            case .pong: return .pong(Array(control))
            default: return try closeEvent()
            }
        }
        guard frameFin, let opcode = messageOpcode else { return nil }
        if messageCompressed, let decompressor {
            let start = message.count
            try decompressor.finishMessage(into: &message, limit: configuration.maxMessageSize)
            try validateText(from: start)
        }
        messageOpcode = nil
        if opcode == .text {
            guard validator.finish() else { throw .invalidPayload("truncated UTF-8 sequence at end of text message") }
            return .text(message)
        }
        return .binary(message)
    }

    private mutating func closeEvent() throws(WebSocketProtocolError) -> WebSocketEvent {
        if control.isEmpty {
            phase = .closed
            return .close(code: nil, reason: "")
        }
        if control.count == 1 { throw .protocolError("close frame body of 1 byte") }
        let code = CloseCode(rawValue: UInt16(control[0]) << 8 | UInt16(control[1]))
        if !code.isValidOnWire { throw .protocolError("invalid close code \(code.rawValue)") }
        let reason = control[2...]
        guard reason.withUnsafeBytes({ UTF8Validator.isValidUTF8($0) }) else {
            throw .invalidPayload("invalid UTF-8 in close reason")
        }
        phase = .closed
        return .close(code: code, reason: String(decoding: reason, as: UTF8.self))
    }
}

@available(*, unavailable)
extension MessageDecoder: Sendable {}
