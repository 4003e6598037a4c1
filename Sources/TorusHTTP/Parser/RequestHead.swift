/// Byte offsets of one field line inside ``RequestHead``'s storage.
@usableFromInline
struct FieldSpan: Sendable {
    @usableFromInline var nameStart: Int32
    @usableFromInline var nameEnd: Int32
    @usableFromInline var valueStart: Int32
    @usableFromInline var valueEnd: Int32

    @inlinable init(nameStart: Int, nameEnd: Int, valueStart: Int, valueEnd: Int) {
        self.nameStart = Int32(truncatingIfNeeded: nameStart)
        self.nameEnd = Int32(truncatingIfNeeded: nameEnd)
        self.valueStart = Int32(truncatingIfNeeded: valueStart)
        self.valueEnd = Int32(truncatingIfNeeded: valueEnd)
    }
}

/// A parsed, validated request head (request line + header fields).
///
/// Memory: the head's bytes live in an `[UInt8]` that is *shared copy-on-write with the
/// parser's reusable head storage*; all accessors read byte ranges out of it. Holding a
/// `RequestHead` is always safe (it is a value), and it never points into the receive
/// buffers passed to ``HTTPRequestParser/parse(_:_:)``. If a `RequestHead` is still alive
/// when the parser starts the next request, the parser's storage is copied once (the head
/// keeps the old bytes), so for zero allocations drop it before the request's `.end` or
/// convert it with ``makeHTTPRequest(scheme:)``. Accessors returning `String` allocate;
/// the `…Equals` and `with…` accessors do not.
public struct RequestHead: Sendable {
    @usableFromInline var storage: [UInt8]
    @usableFromInline var spans: [FieldSpan]
    @usableFromInline let methodEnd: Int32
    @usableFromInline let targetStart: Int32
    @usableFromInline let targetEnd: Int32
    @usableFromInline let pathStart: Int32
    @usableFromInline let pathEnd: Int32
    /// -1 when there is no `?`.
    @usableFromInline let queryStart: Int32
    /// -1 when the target carries no authority (origin and asterisk forms).
    @usableFromInline let authorityStart: Int32
    @usableFromInline let authorityEnd: Int32
    /// Index into `spans` of the Host field, -1 if absent.
    @usableFromInline let hostIndex: Int32

    /// The request method, classified without allocation.
    public let method: HTTPMethodKind
    /// The request's protocol version (1.0 or 1.1).
    public let version: HTTPVersion
    /// The form of the request-target.
    public let targetForm: RequestTargetForm
    /// Whether the connection stays open after this request: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (and no `close`).
    public let keepAlive: Bool
    /// `Expect: 100-continue` on an HTTP/1.1 request (ignored for HTTP/1.0, RFC 9110 §10.1.1).
    public let expectContinue: Bool
    /// `Connection: upgrade` together with an `Upgrade` field.
    public let isUpgrade: Bool
    /// How the body that follows is framed: `.none`, `.contentLength(n)` with n > 0, or
    /// `.chunked` (never `.untilClose`).
    public let bodyFraming: HTTPBodyFraming

    @usableFromInline
    init(
        storage: [UInt8], spans: [FieldSpan], methodEnd: Int, targetStart: Int, targetEnd: Int,
        pathStart: Int, pathEnd: Int, queryStart: Int, authorityStart: Int, authorityEnd: Int,
        hostIndex: Int, method: HTTPMethodKind, version: HTTPVersion, targetForm: RequestTargetForm,
        keepAlive: Bool, expectContinue: Bool, isUpgrade: Bool, bodyFraming: HTTPBodyFraming
    ) {
        self.storage = storage
        self.spans = spans
        self.methodEnd = Int32(truncatingIfNeeded: methodEnd)
        self.targetStart = Int32(truncatingIfNeeded: targetStart)
        self.targetEnd = Int32(truncatingIfNeeded: targetEnd)
        self.pathStart = Int32(truncatingIfNeeded: pathStart)
        self.pathEnd = Int32(truncatingIfNeeded: pathEnd)
        self.queryStart = Int32(truncatingIfNeeded: queryStart)
        self.authorityStart = Int32(truncatingIfNeeded: authorityStart)
        self.authorityEnd = Int32(truncatingIfNeeded: authorityEnd)
        self.hostIndex = Int32(truncatingIfNeeded: hostIndex)
        self.method = method
        self.version = version
        self.targetForm = targetForm
        self.keepAlive = keepAlive
        self.expectContinue = expectContinue
        self.isUpgrade = isUpgrade
        self.bodyFraming = bodyFraming
    }

    /// The same head in storage of its own, exactly as large as its bytes and fields:
    /// for a head kept long after its request (a WebSocket's upgrade request), which
    /// would otherwise pin the parser's head and field storage, reserved for the largest
    /// head, for the life of the connection.
    public func compacted() -> RequestHead {
        var copy = self
        copy.storage = storage.withUnsafeBufferPointer { Array($0) }
        copy.spans = spans.withUnsafeBufferPointer { Array($0) }
        return copy
    }

    // MARK: Framing shortcuts

    /// The Content-Length, if the body is length-delimited (`0` is reported as `0`
    /// even though ``bodyFraming`` is then `.none`).
    public var contentLength: Int? {
        switch bodyFraming {
        case .contentLength(let n): return n
        case .none: return hasZeroContentLength ? 0 : nil
        case .chunked, .untilClose: return nil
        }
    }

    /// Whether the body uses chunked transfer coding.
    public var isChunked: Bool { bodyFraming == .chunked }

    /// Whether a body follows the head.
    public var hasBody: Bool { bodyFraming != .none }

    @usableFromInline var hasZeroContentLength: Bool {
        withHeaderValue(named: "content-length") { _ in true } ?? false
    }

    // MARK: Raw byte access

    @inlinable
    func withBytes<R>(_ start: Int32, _ end: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw[Int(start)..<Int(end)]))
        }
    }

    @inlinable
    func string(_ start: Int32, _ end: Int32) -> String {
        withBytes(start, end) { String(decoding: $0, as: UTF8.self) }
    }

    @inlinable
    func equals(_ start: Int32, _ end: Int32, _ s: String, caseInsensitive: Bool) -> Bool {
        withBytes(start, end) { bytes in
            var i = 0
            for c in s.utf8 {
                guard i < bytes.count else { return false }
                let b = bytes[i]
                if caseInsensitive ? asciiLower(b) != asciiLower(c) : b != c { return false }
                i += 1
            }
            return i == bytes.count
        }
    }

    // MARK: Method and target

    /// The method token as a `String` (allocates unless short).
    public var methodString: String { string(0, methodEnd) }

    /// Case-sensitive comparison of the method token (methods are case-sensitive).
    public func methodEquals(_ method: String) -> Bool { equals(0, methodEnd, method, caseInsensitive: false) }

    /// The raw request-target exactly as received.
    public var target: String { string(targetStart, targetEnd) }

    /// Compares the raw request-target with `target`.
    public func targetEquals(_ target: String) -> Bool { equals(targetStart, targetEnd, target, caseInsensitive: false) }

    /// The path component: for origin-form the part before `?`; for absolute-form the part
    /// after the authority (`""` when the URI has no path); `*` for asterisk-form; `""` for
    /// authority-form.
    public var path: String { string(pathStart, pathEnd) }

    /// Compares the path component (no percent-decoding) with `path`, without allocating.
    public func pathEquals(_ path: String) -> Bool { equals(pathStart, pathEnd, path, caseInsensitive: false) }

    /// Whether the path component starts with `prefix`.
    public func pathHasPrefix(_ prefix: String) -> Bool {
        withBytes(pathStart, pathEnd) { bytes in
            var i = 0
            for c in prefix.utf8 {
                guard i < bytes.count, bytes[i] == c else { return false }
                i += 1
            }
            return true
        }
    }

    /// Calls `body` with the raw bytes of the path component (valid only during the call).
    public func withPathBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withBytes(pathStart, pathEnd, body)
    }

    /// The query (after `?`, without it), or `nil` when the target has no `?`.
    public var query: String? {
        queryStart < 0 ? nil : string(queryStart, pathEndOfQuery)
    }

    @usableFromInline var pathEndOfQuery: Int32 { targetEnd }

    /// The authority from an absolute-form or authority-form target, else `nil`.
    public var targetAuthority: String? {
        authorityStart < 0 ? nil : string(authorityStart, authorityEnd)
    }

    /// The Host field value, if present.
    public var host: String? {
        hostIndex < 0 ? nil : headerValue(at: Int(hostIndex))
    }

    // MARK: Header fields

    /// Number of header field lines.
    public var headerCount: Int { spans.count }

    /// Name of the field line at `index`, as received (original case).
    public func headerName(at index: Int) -> String {
        string(spans[index].nameStart, spans[index].nameEnd)
    }

    /// Value of the field line at `index`, without leading/trailing whitespace.
    public func headerValue(at index: Int) -> String {
        string(spans[index].valueStart, spans[index].valueEnd)
    }

    @inlinable
    func firstIndex(named name: String) -> Int? {
        var i = 0
        while i < spans.count {
            if equals(spans[i].nameStart, spans[i].nameEnd, name, caseInsensitive: true) { return i }
            i += 1
        }
        return nil
    }

    /// The value of the first field called `name` (case-insensitive), or `nil`.
    public func header(named name: String) -> String? {
        firstIndex(named: name).map { headerValue(at: $0) }
    }

    /// All values of fields called `name`, in order (case-insensitive name match).
    public func headers(named name: String) -> [String] {
        var result: [String] = []
        for i in spans.indices where equals(spans[i].nameStart, spans[i].nameEnd, name, caseInsensitive: true) {
            result.append(headerValue(at: i))
        }
        return result
    }

    /// Whether a field called `name` is present.
    public func containsHeader(named name: String) -> Bool { firstIndex(named: name) != nil }

    /// Compares the first value of field `name` with `value` (ASCII case-insensitive
    /// when `caseInsensitive`), without allocating. `false` when the field is absent.
    public func headerValueEquals(named name: String, _ value: String, caseInsensitive: Bool = false) -> Bool {
        guard let i = firstIndex(named: name) else { return false }
        return equals(spans[i].valueStart, spans[i].valueEnd, value, caseInsensitive: caseInsensitive)
    }

    /// Calls `body` with the raw bytes of the first value of field `name` (valid only during
    /// the call), or returns `nil` when the field is absent.
    public func withHeaderValue<R>(named name: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard let i = firstIndex(named: name) else { return nil }
        return try withBytes(spans[i].valueStart, spans[i].valueEnd, body)
    }

    /// Calls `body` for every field line with raw name and value bytes (valid only during
    /// the call), in received order.
    public func forEachHeader(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try storage.withUnsafeBytes { raw in
            for s in spans {
                try body(
                    UnsafeRawBufferPointer(rebasing: raw[Int(s.nameStart)..<Int(s.nameEnd)]),
                    UnsafeRawBufferPointer(rebasing: raw[Int(s.valueStart)..<Int(s.valueEnd)])
                )
            }
        }
    }
}
