/// What a ``MessageDecoder`` produces: a complete data message or a control frame.
///
/// Memory: every case owns its bytes (arrays are reference-counted, copy on
/// write). A `.text`/`.binary` array shares storage with the decoder's
/// reassembly buffer: drop it before the next message starts and the decoder
/// reuses that storage; keep it and the decoder allocates a fresh buffer (the
/// message you kept never changes). `Sendable`.
public enum WebSocketEvent: Hashable, Sendable {
    /// A complete text message; the bytes are valid UTF-8.
    case text([UInt8])
    /// A complete binary message.
    case binary([UInt8])
    /// A ping; answer with a pong carrying the same payload (at most 125 bytes).
    case ping([UInt8])
    /// A pong (solicited or not).
    case pong([UInt8])
    /// A close frame. `code` is `nil` when the frame had no body (report it
    /// as 1005 locally; echo an empty close). `reason` is valid UTF-8.
    /// The decoder ignores everything after it.
    case close(code: CloseCode?, reason: String)
}
