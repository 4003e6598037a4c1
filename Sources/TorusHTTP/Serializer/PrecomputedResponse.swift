import HTTPTypes

/// A response whose status line, fields and body are fixed, serialized once at creation
/// (e.g. the `/plaintext` benchmark answer). Owns one immutable array (the prefix, then
/// the body) that is shared, never copied, when written; safe to share between event
/// loops.
///
/// The prefix holds the status line, the given fields and `Content-Length`; ``HTTPResponseSerializer/write(_:keepAlive:requestVersion:isHeadRequest:into:)``
/// adds `Date`, `Connection` when needed, the empty line and the body.
public struct PrecomputedResponse: Sendable {
    /// The prefix, then the body.
    @usableFromInline let bytes: [UInt8]
    /// Where the body starts in `bytes`.
    @usableFromInline let bodyStart: Int

    /// Precomputes a response. Content-Length, Transfer-Encoding, Connection and Date in
    /// `headerFields` are ignored (they are written by the serializer).
    public init(status: HTTPResponse.Status = .ok, headerFields: HTTPFields = [:], body: [UInt8]) {
        var out: [UInt8] = []
        out.appendStatic("HTTP/1.1 ")
        out.appendDecimal(status.code)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: status.reasonPhrase.utf8)
        out.appendStatic("\r\n")
        for field in headerFields {
            if field.name == .contentLength || field.name == .transferEncoding || field.name == .connection
                || field.name == .date
            {
                continue
            }
            out.append(contentsOf: field.name.rawName.utf8)
            out.appendStatic(": ")
            out.append(contentsOf: field.value.utf8)
            out.appendStatic("\r\n")
        }
        out.appendStatic("Content-Length: ")
        out.appendDecimal(body.count)
        out.appendStatic("\r\n")
        bodyStart = out.count
        out.append(contentsOf: body)
        bytes = out
    }

    /// Convenience: a text body with the given Content-Type.
    public init(status: HTTPResponse.Status = .ok, contentType: String, body: String, headerFields: HTTPFields = [:]) {
        var fields = headerFields
        fields[.contentType] = contentType
        self.init(status: status, headerFields: fields, body: Array(body.utf8))
    }
}
