/// Writes WebSocket frames (RFC 6455 section 5) into caller-provided memory.
///
/// Memory: the encoder owns nothing but its random-number source. The
/// `write…(into: UnsafeMutableRawBufferPointer)` functions borrow the caller's
/// buffer for the duration of the call; the `encode…(into: inout [UInt8])`
/// functions append to the caller's array. No pointer is kept across calls.
///
/// Role: a ``WebSocketRole/server`` sends unmasked frames; a
/// ``WebSocketRole/client`` masks every frame with a fresh key from
/// `SystemRandomNumberGenerator` (RFC 6455 5.3 requires unpredictable keys).
///
/// Threading: a value type with no shared state; use one per connection.
public struct FrameEncoder: Sendable {
    public let role: WebSocketRole
    /// Tests only: a fixed key makes client output deterministic.
    private let fixedMaskingKey: MaskingKey?

    public init(role: WebSocketRole) {
        self.role = role
        self.fixedMaskingKey = nil
    }

    /// Deterministic masking for test vectors. Never use on a real connection.
    init(role: WebSocketRole, fixedMaskingKey: MaskingKey) {
        self.role = role
        self.fixedMaskingKey = fixedMaskingKey
    }

    /// The largest close reason that fits a control frame (125 - 2 bytes of code).
    public static let maxCloseReasonBytes = 123
    /// The largest control frame payload (RFC 6455 5.5).
    public static let maxControlPayload = 125

    /// Header plus payload size of a frame sent by this encoder.
    public func frameSize(payloadLength: Int) -> Int {
        FrameHeader.encodedSize(payloadLength: UInt64(payloadLength), masked: role == .client) + payloadLength
    }

    /// The header this encoder would send; for a client it carries a fresh key.
    public func makeHeader(opcode: Opcode, fin: Bool = true, rsv1: Bool = false, payloadLength: Int) -> FrameHeader {
        // Not from input: lengths are counts of the sender's buffers.
        precondition(payloadLength >= 0)
        let key: MaskingKey? = role == .client ? (fixedMaskingKey ?? .random()) : nil
        return FrameHeader(fin: fin, rsv1: rsv1, opcode: opcode, maskingKey: key, payloadLength: UInt64(payloadLength))
    }

    /// Writes only the header into `buffer` (the payload is the caller's
    /// business). For a client, the caller must mask the payload with the
    /// returned key (``Masking/apply(_:to:offset:)``).
    public func writeHeader(opcode: Opcode, fin: Bool = true, rsv1: Bool = false, payloadLength: Int,
                            into buffer: UnsafeMutableRawBufferPointer) -> (size: Int, maskingKey: MaskingKey?) {
        let header = makeHeader(opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payloadLength)
        return (header.write(to: buffer), header.maskingKey)
    }

    /// Writes a whole frame (header, then the payload, masked for a client)
    /// into `buffer`, which must hold ``frameSize(payloadLength:)`` bytes.
    /// Returns the number of bytes written.
    public func writeFrame(opcode: Opcode, fin: Bool = true, rsv1: Bool = false,
                           payload: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let (size, key) = writeHeader(opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payload.count, into: buffer)
        // Not from input: callers (sendFrame, WebSocketFrame) size `buffer` with frameSize(payloadLength:).
        precondition(buffer.count >= size + payload.count, "buffer too small for frame")
        let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[size ..< size + payload.count])
        if let key {
            Masking.apply(key, from: payload, to: dst)
        } else if payload.count > 0 {
            dst.copyMemory(from: payload)
        }
        return size + payload.count
    }

    /// Appends a whole frame to `output`.
    public func encodeFrame(opcode: Opcode, fin: Bool = true, rsv1: Bool = false,
                            payload: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let start = output.count
        let header = makeHeader(opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payload.count)
        output.reserveCapacity(start + header.encodedSize + payload.count)
        withUnsafeTemporaryAllocation(byteCount: FrameHeader.maxEncodedSize, alignment: 1) { tmp in
            let n = header.write(to: tmp)
            output.append(contentsOf: UnsafeRawBufferPointer(rebasing: tmp[0..<n]))
        }
        if let key = header.maskingKey {
            Masking.append(key, payload, to: &output)
        } else {
            output.append(contentsOf: payload)
        }
    }

    /// Appends a whole frame to `output`.
    public func encodeFrame(opcode: Opcode, fin: Bool = true, rsv1: Bool = false,
                            payload: [UInt8], into output: inout [UInt8]) {
        payload.withUnsafeBytes { encodeFrame(opcode: opcode, fin: fin, rsv1: rsv1, payload: $0, into: &output) }
    }

    /// Appends a close frame. With `code == nil` the frame has an empty body
    /// (and `reason` is ignored). The reason is cut to at most 123 bytes, on a
    /// Unicode scalar boundary, so the frame stays a valid control frame.
    public func encodeClose(code: CloseCode?, reason: String = "", into output: inout [UInt8]) {
        guard let code else {
            encodeFrame(opcode: .close, payload: [], into: &output)
            return
        }
        var body: [UInt8] = [UInt8(code.rawValue >> 8), UInt8(truncatingIfNeeded: code.rawValue)]
        body.append(contentsOf: FrameEncoder.truncatedUTF8(reason, maxBytes: FrameEncoder.maxCloseReasonBytes))
        encodeFrame(opcode: .close, payload: body, into: &output)
    }

    /// Appends a ping frame; `payload` must be at most 125 bytes.
    public func encodePing(_ payload: [UInt8] = [], into output: inout [UInt8]) {
        // Not from input: API misuse; WebSocketConnection.ping(_:) refuses a payload over 125 bytes.
        precondition(payload.count <= FrameEncoder.maxControlPayload, "ping payload over 125 bytes")
        encodeFrame(opcode: .ping, payload: payload, into: &output)
    }

    /// Appends a pong frame; `payload` must be at most 125 bytes (echo the ping's).
    public func encodePong(_ payload: [UInt8] = [], into output: inout [UInt8]) {
        // Not from input: API misuse; a ping the decoder accepts carries at most 125 bytes.
        precondition(payload.count <= FrameEncoder.maxControlPayload, "pong payload over 125 bytes")
        encodeFrame(opcode: .pong, payload: payload, into: &output)
    }

    static func truncatedUTF8(_ s: String, maxBytes: Int) -> [UInt8] {
        var out: [UInt8] = []
        for scalar in s.unicodeScalars {
            let n = UTF8.width(scalar)
            if out.count + n > maxBytes { break }
            // Not from input: every Unicode scalar has a UTF-8 encoding; encode never returns nil here.
            out.append(contentsOf: UTF8.encode(scalar)!)
        }
        return out
    }
}
