import HTTPTypes

/// A parsed response head. An owned value (allocated once per response).
public struct HTTPResponseHead: Sendable {
    /// `HTTP/1.0` or `HTTP/1.1` (a higher HTTP/1 minor version reads as 1.1).
    public var version: HTTPVersion
    public var status: HTTPResponse.Status
    public var headerFields: HTTPFields
    /// How the body that follows is delimited.
    public var framing: HTTPBodyFraming
    /// Whether the connection may carry another request after this response.
    public var keepAlive: Bool

    /// The swift-http-types view.
    public var response: HTTPResponse { HTTPResponse(status: status, headerFields: headerFields) }

    /// Every value of the field `name` (case-insensitive), in order; empty when absent
    /// or when `name` is not a valid field name.
    public func values(forHeader name: String) -> [String] {
        guard let fieldName = HTTPField.Name(name) else { return [] }
        return headerFields[values: fieldName]
    }
}

/// Incremental HTTP/1.1 response parser, independent of any I/O.
///
/// Push bytes in with ``parse(_:_:)`` as they arrive; events come in order through a
/// non-escaping handler. Responses may be split at any byte boundary. Before the
/// bytes of each response the caller says whether it answers a HEAD request
/// (``expectResponse(toHEAD:)``), since that decides whether a body follows. When
/// the peer closes, call ``finish(_:)``: a read-until-close body then ends, and an
/// incomplete response becomes ``HTTPParseError/prematureEnd``.
///
/// It shares the request parser's codec: the same field validator, limits
/// (``HTTPLimits/response`` by default), errors, framing and chunked decoder. Lines
/// end with CRLF; a bare LF is accepted as a line end too (RFC 9112 §2.2 allows a
/// recipient to), a bare CR is not. Obsolete line folding, whitespace before the
/// colon, CL with TE, and differing Content-Length values are errors.
///
/// Ownership: a value type; it keeps no pointer into the input (the head is copied
/// into its reusable storage). `.body` slices point into the caller's buffer and are
/// valid only during the handler call. Not shared: keep one per connection.
public struct HTTPResponseParser: Sendable, MessageParsing {
    public enum Event {
        /// An informational (1xx, not 101) response; the final one follows.
        case informational(HTTPResponseHead)
        /// The final response head.
        case head(HTTPResponseHead)
        /// A piece of the decoded body; valid only during the call. Never empty.
        case body(UnsafeRawBufferPointer)
        /// The response is complete (after trailers, when chunked).
        case end(trailers: HTTPFields)
    }

    /// The handler's answer to an event.
    public typealias Control = HTTPParserControl

    public let limits: HTTPLimits
    @usableFromInline var state = MessageParseState.head
    /// The head being gathered, every line ending in CRLF (a bare LF is stored as CRLF).
    var headStorage: [UInt8] = []
    var spans: [FieldSpan] = []
    var sawCR = false
    /// Bytes of the current head line so far.
    var lineLength = 0
    var nextIsHEAD = false
    var keepAliveAfter = true
    @usableFromInline var body = BodyReader(chunked: ChunkedBodyDecoder(allowsBareLF: true, keepsTrailers: true))

    public init(limits: HTTPLimits = .response) {
        self.limits = limits
        headStorage.reserveCapacity(min(1024, limits.maxHeadBytes))
    }

    /// Declares whether the next response answers a HEAD request (no body follows).
    public mutating func expectResponse(toHEAD: Bool) { nextIsHEAD = toHEAD }

    /// True between responses (nothing partial buffered).
    public var isIdle: Bool { state == .head && headStorage.isEmpty && !sawCR }
    /// True after a response after which the connection cannot be reused.
    public var isClosed: Bool { state == .closed }
    public var error: HTTPParseError? {
        if case .failed(let e) = state { return e }
        return nil
    }

    /// Parses `bytes`; returns how many were consumed (all, unless the handler paused
    /// or the parser closed).
    @discardableResult
    public mutating func parse(_ bytes: UnsafeRawBufferPointer,
                               _ handler: (Event) -> Control) throws(HTTPParseError) -> Int {
        try parseMessages(bytes, handler)
    }

    /// The peer closed the connection: ends a read-until-close body, or fails when a
    /// response was in progress. Idle or closed: nothing happens.
    public mutating func finish(_ handler: (Event) -> Control) throws(HTTPParseError) {
        switch state {
        case .failed(let e):
            throw e
        case .body where body.mode == .untilClose:
            state = .closed
            _ = handler(.end(trailers: HTTPFields()))
        case .pendingEnd:
            _ = try parse(UnsafeRawBufferPointer(start: nil, count: 0), handler)
        case .closed:
            break
        case .head where isIdle:
            break
        default:
            state = .failed(.prematureEnd)
            throw .prematureEnd
        }
    }

    // MARK: Messages

    @usableFromInline static func bodyEvent(_ bytes: UnsafeRawBufferPointer) -> Event { .body(bytes) }

    @usableFromInline mutating func finishMessage(_ handler: (Event) -> Control) throws(HTTPParseError) -> Control {
        let trailers = try takeTrailers()
        resetForNext()
        return handler(.end(trailers: trailers))
    }

    /// Gathers head bytes until the empty line; returns the index after them and
    /// whether the head is complete.
    @usableFromInline mutating func scanHead(_ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int) throws(HTTPParseError) -> (Int, Bool) {
        var i = from
        while i < n {
            let b = base[i]
            i += 1
            if b == asciiLF {
                sawCR = false
                if lineLength == 0 {
                    if headStorage.isEmpty { continue }  // leading empty lines are ignored
                    headStorage.append(asciiCR)
                    headStorage.append(asciiLF)
                    return (i, true)
                }
                headStorage.append(asciiCR)
                headStorage.append(asciiLF)
                lineLength = 0
                continue
            }
            if sawCR { throw .bareCR }
            if b == asciiCR {
                sawCR = true
                continue
            }
            headStorage.append(b)
            lineLength += 1
            if headStorage.count + 2 > limits.maxHeadBytes { throw .headTooLarge }
        }
        return (i, false)
    }

    private mutating func takeTrailers() throws(HTTPParseError) -> HTTPFields {
        guard body.mode == .chunked, !body.chunked.trailerBytes.isEmpty else { return HTTPFields() }
        var bytes = body.chunked.trailerBytes
        bytes.append(asciiCR)
        bytes.append(asciiLF)
        body.chunked.trailerBytes.removeAll(keepingCapacity: true)
        return try Self.fields(bytes, from: 0, spans: &spans, limits: limits).fields
    }

    private mutating func resetForNext() {
        headStorage.removeAll(keepingCapacity: true)
        lineLength = 0
        nextIsHEAD = false
        state = keepAliveAfter ? .head : .closed
    }

    /// Validates the field section of `bytes` from `start` with the shared validator.
    private static func fields(_ bytes: [UInt8], from start: Int, spans: inout [FieldSpan],
                               limits: HTTPLimits) throws(HTTPParseError) -> (fields: HTTPFields, info: FieldSectionInfo) {
        spans.removeAll(keepingCapacity: true)
        let info = try bytes.withUnsafeBufferPointer { p throws(HTTPParseError) in
            try HeadValidator.validateFields(p, from: start, spans: &spans, limits: limits)
        }
        let spans = spans
        guard let fields = bytes.withUnsafeBytes({ FieldSpan.httpFields($0, spans) }) else { throw .invalidHeaderName }
        return (fields, info)
    }

    @usableFromInline mutating func headComplete(_ handler: (Event) -> Control) throws(HTTPParseError) -> Control {
        var lineEnd = 0
        while headStorage[lineEnd] != asciiCR { lineEnd += 1 }
        let (version, status) = try Self.statusLine(headStorage[..<lineEnd])
        let (fields, info) = try Self.fields(headStorage, from: lineEnd + 2, spans: &spans, limits: limits)
        headStorage.removeAll(keepingCapacity: true)
        lineLength = 0

        var keepAlive = info.keepAlive(version: version)
        let framing: HTTPBodyFraming
        let code = status.code
        if code >= 100 && code < 200 {
            framing = .none
            if code == 101 { keepAlive = false }
        } else if nextIsHEAD || code == 204 || code == 304 {
            framing = .none
        } else if info.transferEncodingSeen {
            if info.contentLength >= 0 { throw .contentLengthWithTransferEncoding }
            if version == .http10 { throw .invalidTransferEncoding }
            if info.lastCodingIsChunked {
                framing = .chunked
            } else {
                framing = .untilClose
                keepAlive = false
            }
        } else if info.contentLength >= 0 {
            framing = .contentLength(info.contentLength)
        } else {
            framing = .untilClose
            keepAlive = false
        }
        let head = HTTPResponseHead(version: version, status: status, headerFields: fields,
                                    framing: framing, keepAlive: keepAlive)
        if code >= 100 && code < 200 && code != 101 {
            return handler(.informational(head))
        }
        keepAliveAfter = keepAlive
        if case .contentLength(let n) = framing, n > limits.maxBodyBytes { throw .bodyTooLarge }
        if framing == .none || framing == .contentLength(0) {
            state = .pendingEnd
        } else {
            body.start(framing)
            state = .body
        }
        return handler(.head(head))
    }

    /// `HTTP/x.y SP 3DIGIT [SP reason]`.
    static func statusLine(_ l: ArraySlice<UInt8>) throws(HTTPParseError) -> (HTTPVersion, HTTPResponse.Status) {
        let l = Array(l)
        guard l.count >= 12, l[8] == asciiSP else { throw .invalidStatusLine }
        guard l[0] == UInt8(ascii: "H"), l[1] == UInt8(ascii: "T"), l[2] == UInt8(ascii: "T"),
              l[3] == UInt8(ascii: "P"), l[4] == UInt8(ascii: "/"), l[6] == UInt8(ascii: "."),
              isDigit(l[5]), isDigit(l[7]) else { throw .invalidVersion }
        guard l[5] == UInt8(ascii: "1") else { throw .unsupportedVersion }
        let version: HTTPVersion = l[7] == UInt8(ascii: "0") ? .http10 : .http11
        guard isDigit(l[9]), isDigit(l[10]), isDigit(l[11]) else { throw .invalidStatusCode }
        let code = Int(l[9] - 0x30) * 100 + Int(l[10] - 0x30) * 10 + Int(l[11] - 0x30)
        guard code >= 100 else { throw .invalidStatusCode }
        var reason = ""
        if l.count > 12 {
            guard l[12] == asciiSP else { throw .invalidStatusCode }
            let r = l[13...]
            guard r.allSatisfy({ isFieldValueChar($0) }) else { throw .invalidStatusLine }
            reason = String(decoding: r, as: UTF8.self)
        }
        // Not from input: three digits, checked above, make 100...999, the range Status(code:)
        // requires (it traps outside it).
        return (version, HTTPResponse.Status(code: code, reasonPhrase: reason))
    }
}
