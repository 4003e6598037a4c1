import HTTPTypes

/// Serializes HTTP/1.1 responses into a caller-provided, reusable `[UInt8]`.
///
/// Memory: the output array belongs to the caller, who keeps it with its capacity (clear
/// it with `removeAll(keepingCapacity: true)` after the bytes are written to the socket);
/// the serializer only appends to it. The serializer itself owns its ``HTTPDateCache``
/// and up to four composed fixed answers of at most 4 KiB each. Not thread-safe: one
/// per event loop.
public struct HTTPResponseSerializer: Sendable {
    /// The cached `Date` value; refreshed (at most one formatting per second) by each
    /// `write…` call that emits a Date field.
    public var dateCache: HTTPDateCache

    /// Creates a serializer with a date cache set to the current time.
    public init() {
        dateCache = HTTPDateCache()
    }

    /// Creates a serializer with an explicit date cache (e.g. a fixed time in tests).
    /// - Parameters:
    ///   - dateCache: the cache whose `Date` value responses carry.
    ///   - refreshDate: when `false`, the cache is never refreshed from the clock.
    public init(dateCache: HTTPDateCache, refreshDate: Bool = true) {
        self.dateCache = dateCache
        self.refreshDate = refreshDate
    }

    @usableFromInline var refreshDate = true

    /// Whole fixed answers for the current second (the common case of ``write(_:keepAlive:requestVersion:isHeadRequest:into:)``).
    @usableFromInline var composed = ComposedAnswers()

    @usableFromInline
    mutating func appendDateField(to out: inout [UInt8], endingHead: Bool = false) {
        if refreshDate { dateCache.update() }
        dateCache.appendField(to: &out, endingHead: endingHead)
    }

    // MARK: General path

    /// Appends a status line and header section.
    ///
    /// Writes, in order: `HTTP/1.1 code reason`, the fields of `response` except
    /// Content-Length and Transfer-Encoding (framing is taken from `framing` only: for a
    /// response to HEAD pass the length the GET body would have; a chunked body is
    /// sent with ``ChunkFraming``), `Date`
    /// (unless present in the fields), the framing field, and a Connection field when
    /// needed: `close` if `!keepAlive`, `keep-alive` for a kept-alive HTTP/1.0 client. If
    /// `response` carries its own Connection field (e.g. `Upgrade` on a 101) no automatic
    /// one is added. Field values are already legalized by swift-http-types (no CR/LF), so
    /// no header injection is possible.
    public mutating func writeHead(
        _ response: HTTPResponse,
        framing: HTTPBodyFraming,
        keepAlive: Bool,
        requestVersion: HTTPVersion = .http11,
        into out: inout [UInt8]
    ) {
        out.appendStatic("HTTP/1.1 ")
        out.appendDecimal(response.status.code)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: response.status.reasonPhrase.utf8)
        out.appendStatic("\r\n")
        var hasDate = false
        var hasConnection = false
        for field in response.headerFields {
            if field.name == .contentLength || field.name == .transferEncoding { continue }
            if field.name == .date { hasDate = true }
            if field.name == .connection { hasConnection = true }
            out.append(contentsOf: field.name.rawName.utf8)
            out.appendStatic(": ")
            out.append(contentsOf: field.value.utf8)
            out.appendStatic("\r\n")
        }
        if !hasDate { appendDateField(to: &out) }
        switch framing {
        case .none, .untilClose:
            // No framing field: 1xx, 204 and 304 never have a body; a body until the
            // close needs `keepAlive: false`.
            break
        case .contentLength(let n):
            out.appendStatic("Content-Length: ")
            out.appendDecimal(n)
            out.appendStatic("\r\n")
        case .chunked:
            out.appendStatic("Transfer-Encoding: chunked\r\n")
        }
        if !hasConnection {
            if !keepAlive {
                out.appendStatic("Connection: close\r\n")
            } else if requestVersion == .http10 {
                out.appendStatic("Connection: keep-alive\r\n")
            }
        }
        out.appendStatic("\r\n")
    }

    /// Appends a complete response: head with `Content-Length: body.count`, then the body
    /// (omitted when `isHeadRequest`).
    public mutating func writeResponse(
        _ response: HTTPResponse,
        body: some Collection<UInt8>,
        keepAlive: Bool,
        requestVersion: HTTPVersion = .http11,
        isHeadRequest: Bool = false,
        into out: inout [UInt8]
    ) {
        writeHead(response, framing: .contentLength(body.count), keepAlive: keepAlive,
                  requestVersion: requestVersion, into: &out)
        if !isHeadRequest { out.append(contentsOf: body) }
    }

    // MARK: Fast path

    /// Appends a precomputed response: its fixed prefix, the cached Date, a Connection field
    /// if needed, and the body (unless `isHeadRequest`). No allocation once `out` has capacity.
    /// A kept-alive HTTP/1.1 answer to anything but HEAD, up to 4 KiB, is one copy of the
    /// whole answer composed for the current second (kept for the last four
    /// such responses); others are three copies (prefix, Date and the empty line, body).
    @inlinable
    public mutating func write(
        _ fixed: PrecomputedResponse,
        keepAlive: Bool = true,
        requestVersion: HTTPVersion = .http11,
        isHeadRequest: Bool = false,
        into out: inout [UInt8]
    ) {
        if refreshDate { dateCache.update() }
        let keptAlive11 = keepAlive && requestVersion != .http10
        if keptAlive11 && !isHeadRequest, let answer = composed.answer(fixed, date: dateCache) {
            out.append(contentsOf: answer)
            return
        }
        out.appendBytes(of: fixed.bytes, 0..<fixed.bodyStart)
        if keptAlive11 {
            dateCache.appendField(to: &out, endingHead: true)
        } else {
            dateCache.appendField(to: &out, endingHead: false)
            out.appendStatic(keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n")
        }
        if !isHeadRequest { out.appendBytes(of: fixed.bytes, fixed.bodyStart..<fixed.bytes.count) }
    }

    /// The whole answer ``write(_:keepAlive:requestVersion:isHeadRequest:into:)`` would
    /// append, when that is one cached copy (kept alive, HTTP/1.1, not to HEAD, up to
    /// 4 KiB); nil otherwise. The bytes lie in this serializer's cache, valid until its
    /// next call: the caller copies them at once (into a connection's write queue,
    /// without the intermediate array).
    @inlinable
    mutating func composedAnswer(
        _ fixed: PrecomputedResponse, keepAlive: Bool, requestVersion: HTTPVersion, isHeadRequest: Bool
    ) -> UnsafeRawBufferPointer? {
        guard keepAlive && requestVersion != .http10 && !isHeadRequest else { return nil }
        if refreshDate { dateCache.update() }
        return composed.answer(fixed, date: dateCache)
    }

    // MARK: Interim responses

    /// Appends `HTTP/1.1 100 Continue\r\n\r\n` (answer to ``RequestHead/expectContinue``).
    public static func writeContinue(into out: inout [UInt8]) {
        out.appendStatic("HTTP/1.1 100 Continue\r\n\r\n")
    }

    // MARK: Errors

    /// The complete response for a parse error, without Date:
    /// `HTTP/1.1 <code> <reason>\r\nContent-Type: text/plain\r\nContent-Length: N\r\nConnection: close\r\n\r\n<detail>`.
    /// Allocates a new array (error path only); the connection must be closed after it.
    public static func errorResponse(for error: HTTPParseError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160)
        appendError(error, date: nil, into: &out)
        return out
    }

    /// Appends the response for a parse error, including the cached Date field.
    public mutating func writeErrorResponse(for error: HTTPParseError, into out: inout [UInt8]) {
        if refreshDate { dateCache.update() }
        Self.appendError(error, date: dateCache, into: &out)
    }

    static func appendError(_ error: HTTPParseError, date: HTTPDateCache?, into out: inout [UInt8]) {
        let body = error.detail.utf8
        out.appendStatic("HTTP/1.1 ")
        out.appendDecimal(error.statusCode)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: error.reasonPhrase.utf8)
        out.appendStatic("\r\n")
        if let date { date.appendField(to: &out, endingHead: false) }
        out.appendStatic("Content-Type: text/plain\r\nContent-Length: ")
        out.appendDecimal(body.count)
        out.appendStatic("\r\nConnection: close\r\n\r\n")
        out.append(contentsOf: body)
    }
}

extension HTTPParseError {
    /// The response status as a swift-http-types value.
    public var status: HTTPResponse.Status {
        HTTPResponse.Status(code: statusCode, reasonPhrase: reasonPhrase)
    }
}
