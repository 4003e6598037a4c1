/// How the body of an HTTP/1 message is delimited (RFC 9112 §6.3). Plain value.
///
/// The one framing type of the codec: request and response parsers report it, and
/// the response serializer writes the framing field from it.
public enum HTTPBodyFraming: Sendable, Hashable {
    /// No body: a bodiless request, a response to HEAD, 1xx, 204 and 304.
    case none
    /// Exactly this many bytes follow the head (a request's is always > 0).
    case contentLength(Int)
    /// Chunked transfer coding (with optional trailers).
    case chunked
    /// Everything until the connection closes (responses only; never reused).
    case untilClose
}
