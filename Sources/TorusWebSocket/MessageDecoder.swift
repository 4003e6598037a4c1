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
        // Not from input: limits are the application's configuration.
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
    // Stored properties are ordered by size (words, then the partial header, then
    // bytes) so the decoder, kept inline in every connection, has little padding.
    public let configuration: MessageDecoderConfiguration
    private let decompressor: PerMessageDeflateDecompressor?

    // Current frame.
    private var frameRemaining = 0
    private var frameOffset = 0

    // Current data message.
    private var message: [UInt8] = []

    // Current control frame.
    private var control: [UInt8] = []

    // Partial header (only used when a header straddles two inputs).
    private var partialHeader = PartialFrameHeader()

    public let role: WebSocketRole
    private var frameOpcode = Opcode.continuation
    private var frameFin = false
    private var messageOpcode: Opcode?
    private var messageCompressed = false
    /// permessage-deflate was agreed but zlib refused the decompressor's stream (out
    /// of memory): a compressed message fails with 1011, not 1002.
    var compressionUnavailable = false
    private var validator = UTF8Validator()

    private enum Phase {
        case header
        case payload
        case closed
        /// Terminal; the error (rare) is boxed so the phase stays one word.
        indirect case failed(WebSocketProtocolError)
    }

    private var phase: Phase = .header
    private var frameKey: MaskingKey?

    /// - Parameters:
    ///   - role: our role; a server expects masked frames, a client unmasked ones.
    ///   - configuration: the frame and message size limits.
    ///   - decompressor: pass one (from ``PerMessageDeflateAgreement/makeDecompressor(role:)``)
    ///     iff permessage-deflate was negotiated; it allows RSV1 on data messages.
    public init(role: WebSocketRole, configuration: MessageDecoderConfiguration = .init(),
                decompressor: PerMessageDeflateDecompressor? = nil) {
        self.role = role
        self.configuration = configuration
        self.decompressor = decompressor
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
        guard case .header = phase, partialHeader.count == 0, messageOpcode == nil,
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
        if partialHeader.count == 0, let (header, size) = FrameHeader.parse(input) {
            input = UnsafeRawBufferPointer(rebasing: input[size...])
            return header
        }
        while true {
            let count = partialHeader.count
            let needed = count < 2 ? 2 : FrameHeader.sizeFromFirstTwoBytes(partialHeader.secondByte)
            if count == needed {
                // `needed` bytes make a whole header (its size was read from them).
                return partialHeader.take()
            }
            guard !input.isEmpty else { return nil }
            let n = min(needed - count, input.count)
            partialHeader.append(UnsafeRawBufferPointer(rebasing: input[..<n]))
            input = UnsafeRawBufferPointer(rebasing: input[n...])
        }
    }

    private mutating func startFrame(_ h: FrameHeader) throws(WebSocketProtocolError) {
        let op = h.opcode
        if h.rsv2 || h.rsv3 { throw .protocolError("reserved bits set") }
        if op.isReserved { throw .protocolError("reserved opcode \(op.rawValue)") }
        if h.rsv1 && !(decompressor != nil && (op == .text || op == .binary)) {
            if compressionUnavailable && (op == .text || op == .binary) {
                throw WebSocketProtocolError(closeCode: .internalError, reason: "cannot decompress: zlib refused its stream")
            }
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
        // Not from input: at most maxFrameSize (an Int), checked just above, so it converts.
        let length = Int(h.payloadLength)

        frameOpcode = op
        frameFin = h.fin
        frameKey = h.maskingKey
        frameRemaining = length
        frameOffset = 0

        if op.isControl {
            // Reserved at the first control frame (not up front: most connections stay
            // idle for long and an idle one should hold nothing), then kept.
            if control.capacity == 0 { control.reserveCapacity(FrameEncoder.maxControlPayload) }
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
        // Compared as a difference (message.count ≤ maxMessageSize here): a sum would
        // overflow for a peer's length near Int.max under limits of Int.max.
        if !messageCompressed && length > configuration.maxMessageSize - message.count {
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
        if let key {
            offset = Masking.append(key, chunk, to: &buffer, offset: offset)
        } else {
            buffer.append(contentsOf: chunk)
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
            _ = Masking.forEachPiece(key, of: chunk, offset: offset, pieceSize: 4096) { piece in
                do throws(WebSocketProtocolError) {
                    try decompressor.decompress(piece, into: &output, limit: limit)
                    return true
                } catch {
                    failure = error
                    return false
                }
            }
            offset += chunk.count
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

/// The bytes of a frame header that straddles two inputs (at most
/// `FrameHeader.maxEncodedSize`, 14), kept inline in the decoder: no heap storage for
/// the rare split header. Plain value.
struct PartialFrameHeader {
    private var storage: (UInt64, UInt64) = (0, 0)
    private var held: UInt8 = 0

    /// Bytes held.
    var count: Int { Int(held) }

    /// The second byte (valid once two are held): it tells the header's size.
    var secondByte: UInt8 { withUnsafeBytes(of: storage) { $0[1] } }

    /// Appends `bytes`; the total stays within the header's size.
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        // Not from input: takeHeader appends at most `needed - count` bytes, and `needed` ≤ 14.
        precondition(count + bytes.count <= FrameHeader.maxEncodedSize)
        let at = count
        withUnsafeMutableBytes(of: &storage) { dst in
            for k in 0..<bytes.count { dst[at + k] = bytes[k] }
        }
        held += UInt8(bytes.count)
    }

    /// The header held (nil if the bytes do not make one) and empties the storage.
    mutating func take() -> FrameHeader? {
        let n = count
        held = 0
        return withUnsafeBytes(of: storage) { FrameHeader.parse(UnsafeRawBufferPointer(rebasing: $0[..<n]))?.header }
    }
}
