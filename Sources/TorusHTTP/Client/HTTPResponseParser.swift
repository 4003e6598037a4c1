import HTTPTypes

/// How the body of a response is delimited (RFC 9112 §6.3). Plain value.
public enum HTTPResponseBodyFraming: Sendable, Hashable {
    /// No body: a response to HEAD, 1xx, 204, 304.
    case none
    /// Exactly this many bytes.
    case contentLength(Int)
    /// Chunked transfer coding (with optional trailers).
    case chunked
    /// Everything until the server closes the connection.
    case untilClose
}

/// A parsed response head. An owned value (allocated once per response).
public struct HTTPResponseHead: Sendable {
    public var version: HTTPVersion
    public var status: HTTPResponse.Status
    public var headerFields: HTTPFields
    /// How the body that follows is delimited.
    public var framing: HTTPResponseBodyFraming
    /// Whether the connection may carry another request after this response.
    public var keepAlive: Bool

    /// The swift-http-types view.
    public var response: HTTPResponse { HTTPResponse(status: status, headerFields: headerFields) }
}

/// Limits enforced by ``HTTPResponseParser``. Plain value.
public struct HTTPResponseLimits: Sendable, Hashable {
    /// Bytes of status line plus fields (and, separately, of the trailer section).
    public var maxHeadBytes: Int
    /// Field lines in the head (and in the trailer section).
    public var maxHeaderCount: Int
    /// Decoded body bytes (Content-Length or the sum of the chunks, or until close).
    public var maxBodyBytes: Int
    /// One chunk-size line including extensions.
    public var maxChunkLineLength: Int

    public init(maxHeadBytes: Int = 64 * 1024, maxHeaderCount: Int = 256,
                maxBodyBytes: Int = Int.max, maxChunkLineLength: Int = 4 * 1024) {
        self.maxHeadBytes = maxHeadBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineLength = maxChunkLineLength
    }

    public static let `default` = HTTPResponseLimits()
}

/// A protocol error in a response. After one, the parser is terminal and the
/// connection must be closed.
public enum HTTPResponseParseError: Error, Sendable, Hashable {
    case invalidStatusLine
    case invalidVersion
    case unsupportedVersion
    case invalidStatusCode
    case bareCR
    case headTooLarge
    case tooManyHeaders
    case invalidHeaderName
    case whitespaceBeforeColon
    case obsFold
    case invalidHeaderValue
    case invalidContentLength
    case conflictingContentLength
    case contentLengthWithTransferEncoding
    case invalidTransferEncoding
    case invalidChunkSize
    case invalidChunkExtension
    case invalidChunkTerminator
    case invalidTrailer
    case bodyTooLarge
    /// The connection ended in the middle of a response (or before its head).
    case prematureEnd
}

/// Incremental HTTP/1.1 response parser, independent of any I/O.
///
/// Push bytes in with ``parse(_:_:)`` as they arrive; events come in order through a
/// non-escaping handler. Responses may be split at any byte boundary. Before the
/// bytes of each response the caller says whether it answers a HEAD request
/// (``expectResponse(toHEAD:)``), since that decides whether a body follows. When
/// the peer closes, call ``finish(_:)``: a read-until-close body then ends, and an
/// incomplete response becomes ``HTTPResponseParseError/prematureEnd``.
///
/// Lines end with CRLF; a bare LF is accepted as a line end too (RFC 9112 §2.2 allows
/// a recipient to), a bare CR is not. Obsolete line folding, whitespace before the
/// colon, CL with TE, and differing Content-Length values are errors.
///
/// Ownership: a value type; it keeps no pointer into the input. `.body` slices point
/// into the caller's buffer and are valid only during the handler call. Not shared:
/// keep one per connection.
public struct HTTPResponseParser: Sendable {
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

    public enum Control: Sendable {
        case proceed
        /// Stop after this event; ``parse(_:_:)`` returns the bytes consumed so far.
        case pause
    }

    enum State: Sendable, Equatable {
        case head
        case fixedBody
        case untilClose
        case chunkSizeLine
        case chunkData
        case chunkDataEnd
        case trailers
        case pendingEnd
        /// After a response that ends the connection (101, not keep-alive): input is ignored.
        case closed
        case failed(HTTPResponseParseError)
    }

    public let limits: HTTPResponseLimits
    var state = State.head
    var line: [UInt8] = []
    var sawCR = false
    var lines: [[UInt8]] = []
    var headBytes = 0
    var remaining = 0
    var bodyTotal = 0
    var nextIsHEAD = false
    var keepAliveAfter = true
    var trailers = HTTPFields()

    public init(limits: HTTPResponseLimits = .default) {
        self.limits = limits
        line.reserveCapacity(256)
    }

    /// Declares whether the next response answers a HEAD request (no body follows).
    public mutating func expectResponse(toHEAD: Bool) { nextIsHEAD = toHEAD }

    /// True between responses (nothing partial buffered).
    public var isIdle: Bool { state == .head && headBytes == 0 && line.isEmpty && !sawCR }
    /// True after a response after which the connection cannot be reused.
    public var isClosed: Bool { state == .closed }
    public var error: HTTPResponseParseError? {
        if case .failed(let e) = state { return e }
        return nil
    }

    /// Parses `bytes`; returns how many were consumed (all, unless the handler paused
    /// or the parser closed).
    @discardableResult
    public mutating func parse(_ bytes: UnsafeRawBufferPointer,
                               _ handler: (Event) -> Control) throws(HTTPResponseParseError) -> Int {
        if case .failed(let e) = state { throw e }
        do throws(HTTPResponseParseError) {
            return try parseAvailable(bytes, handler)
        } catch {
            state = .failed(error)
            throw error
        }
    }

    /// The peer closed the connection: ends a read-until-close body, or fails when a
    /// response was in progress. Idle or closed: nothing happens.
    public mutating func finish(_ handler: (Event) -> Control) throws(HTTPResponseParseError) {
        switch state {
        case .failed(let e):
            throw e
        case .untilClose:
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

    // MARK: Driver

    mutating func parseAvailable(_ bytes: UnsafeRawBufferPointer,
                                 _ handler: (Event) -> Control) throws(HTTPResponseParseError) -> Int {
        let n = bytes.count
        var i = 0
        while true {
            if state == .pendingEnd {
                let t = trailers
                trailers = HTTPFields()
                resetForNext()
                if handler(.end(trailers: t)) == .pause { return i }
                continue
            }
            // i < n, so the buffer is non-empty and has a base address.
            guard state != .closed, i < n, let start = bytes.baseAddress else { return i }
            let base = start.assumingMemoryBound(to: UInt8.self)
            switch state {
            case .fixedBody, .chunkData, .untilClose:
                let take = state == .untilClose ? n - i : min(remaining, n - i)
                try countBody(take)
                let slice = UnsafeRawBufferPointer(start: base + i, count: take)
                i += take
                if state != .untilClose {
                    remaining -= take
                    if remaining == 0 { state = state == .fixedBody ? .pendingEnd : .chunkDataEnd }
                }
                if handler(.body(slice)) == .pause { return i }
            case .head, .chunkSizeLine, .chunkDataEnd, .trailers:
                // Line-oriented states: gather one line.
                while i < n {
                    let b = base[i]
                    i += 1
                    if b == 0x0A {
                        let complete = line
                        line.removeAll(keepingCapacity: true)
                        sawCR = false
                        if try lineComplete(complete, handler) == .pause { return i }
                        break
                    }
                    if sawCR { throw .bareCR }
                    if b == 0x0D {
                        sawCR = true
                    } else {
                        line.append(b)
                    }
                    try checkLineLength()
                }
            case .pendingEnd, .closed, .failed:
                return i
            }
        }
    }

    private mutating func countBody(_ n: Int) throws(HTTPResponseParseError) {
        bodyTotal += n
        if bodyTotal > limits.maxBodyBytes { throw .bodyTooLarge }
    }

    private mutating func checkLineLength() throws(HTTPResponseParseError) {
        switch state {
        case .head, .trailers:
            if headBytes + line.count + 2 > limits.maxHeadBytes { throw .headTooLarge }
        case .chunkSizeLine:
            if line.count > limits.maxChunkLineLength { throw .invalidChunkExtension }
        case .chunkDataEnd:
            if !line.isEmpty { throw .invalidChunkTerminator }
        default:
            break
        }
    }

    private mutating func resetForNext() {
        lines.removeAll(keepingCapacity: true)
        headBytes = 0
        bodyTotal = 0
        remaining = 0
        nextIsHEAD = false
        state = keepAliveAfter ? .head : .closed
    }

    private mutating func lineComplete(_ l: [UInt8], _ handler: (Event) -> Control) throws(HTTPResponseParseError) -> Control {
        switch state {
        case .head:
            if l.isEmpty {
                if lines.isEmpty { return .proceed }  // tolerate leading empty lines
                return try headComplete(handler)
            }
            headBytes += l.count + 2
            if lines.count > limits.maxHeaderCount { throw .tooManyHeaders }
            lines.append(l)
            return .proceed
        case .chunkSizeLine:
            remaining = try Self.chunkSize(l)
            if remaining == 0 {
                state = .trailers
                headBytes = 0
                lines.removeAll(keepingCapacity: true)
            } else {
                state = .chunkData
            }
            return .proceed
        case .chunkDataEnd:
            guard l.isEmpty else { throw .invalidChunkTerminator }
            state = .chunkSizeLine
            return .proceed
        case .trailers:
            if l.isEmpty {
                for field in lines {
                    guard let f = try? Self.field(field) else { throw .invalidTrailer }
                    trailers.append(f)
                }
                state = .pendingEnd
                return .proceed
            }
            headBytes += l.count + 2
            if lines.count >= limits.maxHeaderCount { throw .tooManyHeaders }
            lines.append(l)
            return .proceed
        default:
            return .proceed
        }
    }

    private mutating func headComplete(_ handler: (Event) -> Control) throws(HTTPResponseParseError) -> Control {
        let (version, status) = try Self.statusLine(lines[0])
        var fields = HTTPFields()
        var contentLength: Int?
        var transferEncoding: [String] = []
        var connectionTokens: [String] = []
        for raw in lines.dropFirst() {
            let field = try Self.field(raw)
            fields.append(field)
            switch field.name {
            case .contentLength:
                for part in field.value.split(separator: ",", omittingEmptySubsequences: false) {
                    let v = part.trimmingOWS
                    guard !v.isEmpty, v.utf8.count <= 18, v.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                          let n = Int(v) else { throw .invalidContentLength }
                    if let c = contentLength, c != n { throw .conflictingContentLength }
                    contentLength = n
                }
            case .transferEncoding:
                for part in field.value.split(separator: ",") {
                    let v = part.trimmingOWS.lowercased()
                    guard !v.isEmpty else { throw .invalidTransferEncoding }
                    transferEncoding.append(v)
                }
            case .connection:
                connectionTokens += field.value.split(separator: ",").map { $0.trimmingOWS.lowercased() }
            default:
                break
            }
        }
        var keepAlive = version == .http11 ? !connectionTokens.contains("close") : connectionTokens.contains("keep-alive")
        let framing: HTTPResponseBodyFraming
        let code = status.code
        if code >= 100 && code < 200 {
            framing = .none
            if code == 101 { keepAlive = false }
        } else if nextIsHEAD || code == 204 || code == 304 {
            framing = .none
        } else if !transferEncoding.isEmpty {
            if contentLength != nil { throw .contentLengthWithTransferEncoding }
            if version == .http10 { throw .invalidTransferEncoding }
            if transferEncoding.last == "chunked" {
                guard transferEncoding.filter({ $0 == "chunked" }).count == 1 else { throw .invalidTransferEncoding }
                framing = .chunked
            } else {
                framing = .untilClose
                keepAlive = false
            }
        } else if let contentLength {
            framing = .contentLength(contentLength)
        } else {
            framing = .untilClose
            keepAlive = false
        }
        let head = HTTPResponseHead(version: version, status: status, headerFields: fields,
                                    framing: framing, keepAlive: keepAlive)
        lines.removeAll(keepingCapacity: true)
        headBytes = 0
        if code >= 100 && code < 200 && code != 101 {
            return handler(.informational(head))
        }
        keepAliveAfter = keepAlive
        switch framing {
        case .none: state = .pendingEnd
        case .contentLength(let n):
            if n > limits.maxBodyBytes { throw .bodyTooLarge }
            remaining = n
            state = n == 0 ? .pendingEnd : .fixedBody
        case .chunked: state = .chunkSizeLine
        case .untilClose: state = .untilClose
        }
        return handler(.head(head))
    }

    // MARK: Pieces

    static func statusLine(_ l: [UInt8]) throws(HTTPResponseParseError) -> (HTTPVersion, HTTPResponse.Status) {
        // HTTP/x.y SP 3DIGIT SP reason
        guard l.count >= 12, l[8] == 0x20 else { throw .invalidStatusLine }
        guard l[0] == 0x48, l[1] == 0x54, l[2] == 0x54, l[3] == 0x50, l[4] == 0x2F, l[6] == 0x2E,
              isDigit(l[5]), isDigit(l[7]) else { throw .invalidVersion }
        let version = HTTPVersion(major: l[5] - 0x30, minor: l[7] - 0x30)
        guard version.major == 1 else { throw .unsupportedVersion }
        guard isDigit(l[9]), isDigit(l[10]), isDigit(l[11]) else { throw .invalidStatusCode }
        let code = Int(l[9] - 0x30) * 100 + Int(l[10] - 0x30) * 10 + Int(l[11] - 0x30)
        guard code >= 100 else { throw .invalidStatusCode }
        var reason = ""
        if l.count > 12 {
            guard l[12] == 0x20 else { throw .invalidStatusCode }
            let r = l[13...]
            guard r.allSatisfy({ isFieldValueChar($0) }) else { throw .invalidStatusLine }
            reason = String(decoding: r, as: UTF8.self)
        }
        return (version, HTTPResponse.Status(code: code, reasonPhrase: reason))
    }

    static func field(_ l: [UInt8]) throws(HTTPResponseParseError) -> HTTPField {
        if isOWS(l[0]) { throw .obsFold }
        guard let colon = l.firstIndex(of: UInt8(ascii: ":")) else { throw .invalidHeaderName }
        guard colon > 0 else { throw .invalidHeaderName }
        if isOWS(l[colon - 1]) { throw .whitespaceBeforeColon }
        let nameBytes = l[..<colon]
        guard nameBytes.allSatisfy(isTokenChar) else { throw .invalidHeaderName }
        var start = colon + 1
        var end = l.count
        while start < end && isOWS(l[start]) { start += 1 }
        while end > start && isOWS(l[end - 1]) { end -= 1 }
        let value = l[start..<end]
        guard value.allSatisfy(isFieldValueChar) else { throw .invalidHeaderValue }
        guard let name = HTTPField.Name(String(decoding: nameBytes, as: UTF8.self)) else { throw .invalidHeaderName }
        return HTTPField(name: name, value: value)
    }

    static func chunkSize(_ l: [UInt8]) throws(HTTPResponseParseError) -> Int {
        var size = 0
        var i = 0
        while i < l.count, let h = hexValue(l[i]) {
            guard size < (1 << 56) else { throw .invalidChunkSize }
            size = size << 4 | h
            i += 1
        }
        guard i > 0 else { throw .invalidChunkSize }
        while i < l.count && isOWS(l[i]) { i += 1 }
        if i < l.count {
            guard l[i] == UInt8(ascii: ";") else { throw .invalidChunkSize }
            guard l[i...].allSatisfy(isFieldValueChar) else { throw .invalidChunkExtension }
        }
        return size
    }
}

extension Substring {
    var trimmingOWS: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}
