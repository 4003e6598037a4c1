/// A protocol error detected by ``HTTPRequestParser`` or ``HTTPResponseParser``.
///
/// Plain value (no stored memory). For a request, every case maps to the status code
/// the server must answer with before closing the connection: 400, 413, 414, 431, 501
/// or 505. After throwing one of these a parser is in a terminal state (and a client
/// closes the connection).
public enum HTTPParseError: Error, Sendable, Hashable, CaseIterable {
    // Request line
    /// Request line is not `method SP request-target SP HTTP-version`.
    case invalidRequestLine
    /// Method contains a non-token character or is empty.
    case invalidMethod
    /// Method longer than ``HTTPLimits/maxMethodLength`` (501).
    case methodTooLong
    /// Request-target has invalid characters, a fragment, bad percent-encoding or an
    /// unrecognised form.
    case invalidTarget
    /// Request-target longer than ``HTTPLimits/maxTargetLength`` (414).
    case targetTooLong
    /// HTTP-version is not syntactically `HTTP/DIGIT.DIGIT`.
    case invalidVersion
    /// A response's status line is not `HTTP-version SP 3DIGIT [SP reason]`.
    case invalidStatusLine
    /// A response's status code is not three digits from 100.
    case invalidStatusCode
    /// Well-formed but not HTTP/1 (`HTTP/2.0`, `HTTP/0.9`) (505). A higher HTTP/1 minor
    /// version (`HTTP/1.9`) is not an error: it is served as HTTP/1.1.
    case unsupportedVersion

    // Framing of lines
    /// A CR not followed by LF.
    case bareCR
    /// An LF not preceded by CR (strict CRLF line endings only).
    case bareLF
    /// Head (or trailer section) larger than ``HTTPLimits/maxHeadBytes`` (431).
    case headTooLarge
    /// More than ``HTTPLimits/maxHeaderCount`` field lines (431).
    case tooManyHeaders

    // Fields
    /// Field name empty or containing a non-token character, or a line without colon.
    case invalidHeaderName
    /// Whitespace between field name and colon.
    case whitespaceBeforeColon
    /// Obsolete line folding (a field line starting with SP or HTAB).
    case obsFold
    /// NUL or another control character (other than HTAB) in a field value.
    case invalidHeaderValue
    /// HTTP/1.1 request without Host.
    case missingHost
    /// More than one Host field line.
    case duplicateHost
    /// Host value with characters not allowed in an authority.
    case invalidHost

    // Body framing
    /// Content-Length with a sign, junk, an empty element or an overflowing value.
    case invalidContentLength
    /// Several Content-Length values that differ.
    case conflictingContentLength
    /// Both Content-Length and Transfer-Encoding present (smuggling defence).
    case contentLengthWithTransferEncoding
    /// Transfer-Encoding syntactically invalid, `chunked` repeated, carrying
    /// parameters or not the final coding (RFC 9112 §6.3), or present in an HTTP/1.0 request.
    case invalidTransferEncoding
    /// Transfer-Encoding with a coding besides the final `chunked`, e.g. `gzip, chunked` (501).
    case unsupportedTransferEncoding
    /// Chunk size is not 1*HEXDIG or overflows.
    case invalidChunkSize
    /// Chunk extension with control characters or a chunk-size line that is too long.
    case invalidChunkExtension
    /// Chunk data not followed by CRLF.
    case invalidChunkTerminator
    /// Malformed trailer field line.
    case invalidTrailer
    /// Body larger than ``HTTPLimits/maxBodyBytes`` (413).
    case bodyTooLarge
    /// The connection ended in the middle of a response (or before its head).
    case prematureEnd

    /// The status code the server must respond with.
    public var statusCode: Int {
        switch self {
        case .methodTooLong, .unsupportedTransferEncoding: return 501
        case .targetTooLong: return 414
        case .unsupportedVersion: return 505
        case .headTooLarge, .tooManyHeaders: return 431
        case .bodyTooLarge: return 413
        default: return 400
        }
    }

    /// The standard reason phrase for ``statusCode``.
    public var reasonPhrase: String {
        switch statusCode {
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 431: return "Request Header Fields Too Large"
        case 501: return "Not Implemented"
        case 505: return "HTTP Version Not Supported"
        default: return "Bad Request"
        }
    }

    /// A short human-readable explanation, suitable as a plain-text response body.
    public var detail: String {
        switch self {
        case .invalidRequestLine: return "invalid request line"
        case .invalidMethod: return "invalid method"
        case .methodTooLong: return "method not implemented"
        case .invalidTarget: return "invalid request target"
        case .targetTooLong: return "request target too long"
        case .invalidVersion: return "invalid HTTP version"
        case .invalidStatusLine: return "invalid status line"
        case .invalidStatusCode: return "invalid status code"
        case .unsupportedVersion: return "HTTP version not supported"
        case .bareCR: return "bare CR in request"
        case .bareLF: return "bare LF in request"
        case .headTooLarge: return "request head too large"
        case .tooManyHeaders: return "too many header fields"
        case .invalidHeaderName: return "invalid header field name"
        case .whitespaceBeforeColon: return "whitespace before colon in header field"
        case .obsFold: return "obsolete line folding"
        case .invalidHeaderValue: return "invalid character in header field value"
        case .missingHost: return "missing Host header"
        case .duplicateHost: return "repeated Host header"
        case .invalidHost: return "invalid Host header"
        case .invalidContentLength: return "invalid Content-Length"
        case .conflictingContentLength: return "conflicting Content-Length values"
        case .contentLengthWithTransferEncoding: return "both Content-Length and Transfer-Encoding"
        case .invalidTransferEncoding: return "invalid Transfer-Encoding"
        case .unsupportedTransferEncoding: return "unsupported transfer coding"
        case .invalidChunkSize: return "invalid chunk size"
        case .invalidChunkExtension: return "invalid chunk extension"
        case .invalidChunkTerminator: return "invalid chunk terminator"
        case .invalidTrailer: return "invalid trailer field"
        case .bodyTooLarge: return "body too large"
        case .prematureEnd: return "connection closed in the middle of a message"
        }
    }
}
