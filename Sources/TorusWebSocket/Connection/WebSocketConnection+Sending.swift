import Torus

/// The kind of a data message (for fragmented sending).
public enum WebSocketMessageKind: Sendable, Hashable {
    case text
    case binary

    var opcode: Opcode { self == .text ? .text : .binary }
}

extension WebSocketConnection {
    /// Whether a data frame may be queued now.
    var canSendData: Bool { connection.isOpen && !closeSent }

    // MARK: Callback face (loop thread)

    /// Queues a text message (compressed when permessage-deflate was negotiated and it
    /// is not tiny). Returns false when the connection is closing or a fragmented
    /// message is being sent. Loop thread only.
    @discardableResult
    public func send(text: String) -> Bool {
        var s = text
        return s.withUTF8 { sendMessage(opcode: .text, payload: UnsafeRawBufferPointer($0)) }
    }

    /// Queues a binary message. Loop thread only.
    @discardableResult
    public func send(binary: [UInt8]) -> Bool {
        binary.withUnsafeBytes { sendMessage(opcode: .binary, payload: $0) }
    }

    /// Queues a binary message (or text: the bytes must then be valid UTF-8) from
    /// borrowed bytes, copied into the write queue. Loop thread only.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer, as kind: WebSocketMessageKind = .binary) -> Bool {
        sendMessage(opcode: kind.opcode, payload: bytes)
    }

    /// Queues a message. Loop thread only.
    @discardableResult
    public func send(_ message: WebSocketMessage) -> Bool {
        switch message {
        case .text(let s): send(text: s)
        case .binary(let b): send(binary: b)
        }
    }

    /// Queues one frame of a fragmented message (never compressed): the first call
    /// starts a `kind` message, later calls continue it, `isFinal` ends it. Until then
    /// other data messages are refused. For text, the whole message must be UTF-8.
    @discardableResult
    public func send(fragment bytes: UnsafeRawBufferPointer, of kind: WebSocketMessageKind, isFinal: Bool) -> Bool {
        guard canSendData else { return false }
        if let current = sendingFragmented, current != kind.opcode { return false }
        let opcode = sendingFragmented == nil ? kind.opcode : .continuation
        sendingFragmented = isFinal ? nil : kind.opcode
        return sendFrame(opcode: opcode, fin: isFinal, rsv1: false, payload: bytes)
    }

    @discardableResult
    public func send(fragment bytes: [UInt8], of kind: WebSocketMessageKind, isFinal: Bool) -> Bool {
        bytes.withUnsafeBytes { send(fragment: $0, of: kind, isFinal: isFinal) }
    }

    /// Queues a frame encoded once for many connections (a broadcast) without copying
    /// it. Server side only (client frames are masked per frame). Loop thread only.
    @discardableResult
    public func send(_ frame: WebSocketFrame) -> Bool {
        guard role == .server, canSendData, sendingFragmented == nil else { return false }
        return connection.send(frame.bytes)
    }

    /// Sends a ping (payload at most 125 bytes). Loop thread only.
    @discardableResult
    public func ping(_ payload: [UInt8] = []) -> Bool {
        guard canSendData, payload.count <= FrameEncoder.maxControlPayload else { return false }
        return payload.withUnsafeBytes { sendFrame(opcode: .ping, fin: true, rsv1: false, payload: $0) }
    }

    // MARK: Encoding

    /// Queues a data message, compressed when permessage-deflate was agreed and it is
    /// not tiny. Inlined into the `send` forms (one call less per message); the
    /// compressing path stays out of line.
    @inline(__always)
    func sendMessage(opcode: Opcode, payload: UnsafeRawBufferPointer) -> Bool {
        // `canSendData` without asking the connection (a call into another module): an
        // uncompressed frame goes straight to the connection, which refuses it itself
        // once it stops accepting writes (and then writes nothing).
        guard !closeSent, sendingFragmented == nil else { return false }
        if let negotiated, negotiated.deflate != nil, payload.count >= configuration.compressionThreshold {
            return sendCompressed(opcode: opcode, payload: payload, negotiated: negotiated)
        }
        return sendFrame(opcode: opcode, fin: true, rsv1: false, payload: payload)
    }

    /// `sendMessage` with permessage-deflate: compresses when the connection still
    /// accepts data and the compressor could be made; otherwise sends uncompressed.
    @inline(never)
    private func sendCompressed(opcode: Opcode, payload: UnsafeRawBufferPointer,
                                negotiated: WebSocketNegotiated) -> Bool {
        if canSendData, let compressor = negotiated.compressor {
            negotiated.compressed.removeAll(keepingCapacity: true)
            compressor.compress(payload, into: &negotiated.compressed)
            let ok = negotiated.compressed.withUnsafeBytes { sendFrame(opcode: opcode, fin: true, rsv1: true, payload: $0) }
            // One huge message should not pin its buffer for the connection's lifetime.
            if negotiated.compressed.capacity > 1 << 20 { negotiated.compressed = [] }
            return ok
        }
        return sendFrame(opcode: opcode, fin: true, rsv1: false, payload: payload)
    }

    /// Writes one frame into the write queue. A frame up to half an outbound chunk is
    /// encoded in place, header and (masked, for a client) payload in one go; a larger
    /// one goes through `sendLargeFrame`.
    func sendFrame(opcode: Opcode, fin: Bool, rsv1: Bool, payload: UnsafeRawBufferPointer) -> Bool {
        let encoder = self.encoder
        let size = encoder.frameSize(payloadLength: payload.count)
        guard size <= connection.reservableBytes / 2 else {
            return sendLargeFrame(opcode: opcode, fin: fin, rsv1: rsv1, payload: payload)
        }
        return connection.send(reserving: size) {
            encoder.writeFrame(opcode: opcode, fin: fin, rsv1: rsv1, payload: payload, into: $0)
        }
    }

    /// A frame over half an outbound chunk: queued as its header, then the payload in
    /// pieces (a client masks each through a stack buffer). Out of line, so that the
    /// small frames' path carries none of its stack buffer.
    @inline(never)
    private func sendLargeFrame(opcode: Opcode, fin: Bool, rsv1: Bool, payload: UnsafeRawBufferPointer) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: FrameHeader.maxEncodedSize, alignment: 8) { header -> Bool in
            let (size, key) = encoder.writeHeader(opcode: opcode, fin: fin, rsv1: rsv1,
                                                  payloadLength: payload.count, into: header)
            guard connection.send(UnsafeRawBufferPointer(rebasing: header[..<size])) else { return false }
            guard payload.count > 0 else { return true }
            guard let key else { return connection.send(payload) }
            return Masking.forEachPiece(key, of: payload, pieceSize: 16 << 10) { connection.send($0) }
        }
    }
}

/// A frame encoded once and sent to many server-side connections without copying
/// (the write queues share its bytes). Unmasked, FIN set, uncompressed (RSV1
/// clear), which is valid on every connection whether or not it negotiated
/// permessage-deflate. Immutable; `Sendable`.
public struct WebSocketFrame: Sendable {
    public let bytes: SharedBytes

    /// A whole unmasked data frame carrying `payload`.
    public init(kind: WebSocketMessageKind, payload: UnsafeRawBufferPointer) {
        let encoder = FrameEncoder(role: .server)
        let size = encoder.frameSize(payloadLength: payload.count)
        bytes = SharedBytes(capacity: size) { dst in
            encoder.writeFrame(opcode: kind.opcode, payload: payload, into: dst)
        }
    }

    public init(text: String) {
        var s = text
        self = s.withUTF8 { WebSocketFrame(kind: .text, payload: UnsafeRawBufferPointer($0)) }
    }

    public init(binary: [UInt8]) {
        self = binary.withUnsafeBytes { WebSocketFrame(kind: .binary, payload: $0) }
    }

    /// Header plus payload size.
    public var count: Int { bytes.count }
}
