/// Incremental HTTP/1.1 request parser (RFC 9112), independent of any I/O.
///
/// Push bytes in with ``parse(_:_:)`` as they arrive; the parser reports ``Event``s in
/// order through a non-escaping handler. Requests may be pipelined (several in one
/// buffer) and may be split at any byte boundary: the events are the same either way
/// (except that body bytes may be delivered in more, smaller `.body` slices).
///
/// Reading a head: a head usually lies whole in the input that brings it (one read holds
/// a request, or several pipelined ones). Such a head is read in one pass: the head
/// validator (`HeadValidator`) walks the input itself, finding each line's end as it
/// checks the line, and the head's bytes are then copied into storage at once — rather
/// than scanned for CRLF CRLF and copied first, then walked again to validate. A head
/// split across inputs, or one that breaks a rule, is gathered by the scanner instead
/// (`scanHead`: strict CRLF and the size limits, checked as the bytes arrive)
/// and validated in storage by the same validator. The one-pass path only ever
/// accepts; on any doubt it leaves the head to the scanner, so both paths accept the
/// same heads, with the same results, and every error is found the one careful way, the
/// same however the input is split. (A head cut by the end of a read is looked at twice:
/// by the one-pass attempt, then by the scanner.)
///
/// Memory ownership:
/// - The input buffer belongs to the caller and is only read during the call. The parser
///   never keeps a pointer into it: head bytes are copied into the parser's own reusable
///   storage (capacity reserved once, kept across requests), and `.body` slices point into
///   the caller's buffer and are valid **only during the handler call**.
/// - ``RequestHead`` shares the parser's head storage copy-on-write (see its docs).
/// - On the steady-state path (heads not retained by the handler) parsing does not
///   allocate.
///
/// Errors: a protocol violation throws ``HTTPParseError`` and leaves the parser in a
/// terminal state in which every further call rethrows the same error. A request that is
/// not keep-alive also ends parsing: after its `.end` the parser ignores further input
/// (``isClosed``).
///
/// A value type with exclusive (`mutating`) access: keep one per connection, owned by
/// that connection's event loop; `Sendable` so connection state can be handed over.
public struct HTTPRequestParser: Sendable, MessageParsing {
    /// What the parser found in the input.
    public enum Event {
        /// A complete, validated request head. The body (if any) follows.
        case head(RequestHead)
        /// A piece of the (de-chunked) body. Points into the buffer passed to
        /// ``HTTPRequestParser/parse(_:_:)``; valid only during the handler call. Never empty.
        case body(UnsafeRawBufferPointer)
        /// The current request is complete (after trailers, if chunked).
        case end
    }

    /// The handler's answer to an event.
    public typealias Control = HTTPParserControl

    /// The limits this parser enforces.
    public let limits: HTTPLimits

    @usableFromInline var state = MessageParseState.head
    @usableFromInline var headStorage: [UInt8]
    @usableFromInline var spanStorage: [FieldSpan]

    // Head scanning (survives across calls while a head is incomplete).
    @usableFromInline var scanSawCR = false
    @usableFromInline var scanStarted = false
    @usableFromInline var scanLineLength = 0
    @usableFromInline var scanLineIndex = 0
    @usableFromInline var scanFirstSpace = -1
    @usableFromInline var scanTotal = 0

    @usableFromInline var body = BodyReader(chunked: ChunkedBodyDecoder(allowsBareLF: false, keepsTrailers: false))
    @usableFromInline var keepAliveAfterMessage = true

    /// Creates a parser.
    ///
    /// - Parameters:
    ///   - limits: The limits to enforce.
    ///   - initialHeadCapacity: Bytes of head storage reserved up front (capped at
    ///     `limits.maxHeadBytes`). The storage only grows when a larger head arrives and
    ///     then keeps its capacity, so a warm parser does not allocate. The default (2 KiB)
    ///     fits typical heads while keeping idle connections cheap; pass
    ///     `limits.maxHeadBytes` to never grow.
    public init(limits: HTTPLimits = .default, initialHeadCapacity: Int = 2048) {
        self.limits = limits
        self.headStorage = []
        self.headStorage.reserveCapacity(min(max(initialHeadCapacity, 64), limits.maxHeadBytes))
        self.spanStorage = []
        self.spanStorage.reserveCapacity(min(limits.maxHeaderCount, 256))
    }

    /// A parser without head or field storage: its owner lends it storage with
    /// `adoptStorage` before parsing and takes it back with `surrenderStorage` once
    /// idle (a server connection between requests holds none). Parsing without
    /// adopted storage works too; it then allocates as the head arrives.
    init(limits: HTTPLimits, lendingStorage: Void) {
        self.limits = limits
        headStorage = []
        spanStorage = []
    }

    /// True while the parser holds head storage.
    var holdsStorage: Bool { headStorage.capacity > 0 }

    /// Lends the parser (empty) head and field storage. Only while it holds none.
    mutating func adoptStorage(head: consuming [UInt8], spans: consuming [FieldSpan]) {
        // Not from input: called once, by HTTPRequestWork.init, on a parser made without storage.
        precondition(headStorage.isEmpty && spanStorage.isEmpty)
        headStorage = head
        spanStorage = spans
    }

    /// Takes the head and field storage back, emptied, while no request is in
    /// progress (nil otherwise: a half-received head stays where it is).
    mutating func surrenderStorage() -> (head: [UInt8], spans: [FieldSpan])? {
        guard isIdle, holdsStorage else { return nil }
        var head: [UInt8] = []
        var spans: [FieldSpan] = []
        swap(&head, &headStorage)
        swap(&spans, &spanStorage)
        head.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
        return (head, spans)
    }

    /// `true` when no request is in progress (no partial head or body buffered): a
    /// good moment for a graceful close.
    public var isIdle: Bool { state == .head && scanTotal == 0 }

    /// `true` while a request head has begun but is not complete.
    public var isReadingHead: Bool { state == .head && scanTotal > 0 }

    /// `true` after a non-keep-alive request completed; further input is ignored.
    public var isClosed: Bool { state == .closed }

    /// The error that put the parser into its terminal state, if any.
    public var error: HTTPParseError? {
        if case .failed(let e) = state { return e }
        return nil
    }

    /// Parses `bytes`, reporting events to `handler` in order.
    ///
    /// - Parameters:
    ///   - bytes: Received bytes. Only read during this call; never retained.
    ///   - handler: Called for each event; `.body` pointers are valid only during the call.
    ///     Return ``HTTPParserControl/pause`` to stop early.
    /// - Returns: The number of bytes consumed: `bytes.count` unless the handler paused or
    ///   the connection is closed (non-keep-alive request finished).
    /// - Throws: ``HTTPParseError``; the parser is then terminal (see type docs).
    @discardableResult
    public mutating func parse(
        _ bytes: UnsafeRawBufferPointer,
        _ handler: (Event) -> Control
    ) throws(HTTPParseError) -> Int {
        try parseMessages(bytes, handler)
    }

    // MARK: - Messages

    @usableFromInline
    static func bodyEvent(_ bytes: UnsafeRawBufferPointer) -> Event { .body(bytes) }

    /// Emits `.end` and resets for the next request (or closes).
    @usableFromInline
    mutating func finishMessage(_ handler: (Event) -> Control) -> Control {
        if keepAliveAfterMessage {
            state = .head
            headStorage.removeAll(keepingCapacity: true)
            spanStorage.removeAll(keepingCapacity: true)
        } else {
            state = .closed
        }
        return handler(.end)
    }

    /// Validates the head the scanner gathered and reports it.
    @usableFromInline
    mutating func headComplete(_ handler: (Event) -> Control) throws(HTTPParseError) -> Control {
        report(try validateStoredHead(), handler)
    }

    /// Reports the validated head in `headStorage` and `spanStorage`, described by
    /// `info`; the body (if any) follows.
    @inline(__always) @usableFromInline
    mutating func report(_ info: HeadInfo, _ handler: (Event) -> Control) -> Control {
        let head = RequestHead(
            storage: headStorage, spans: spanStorage, methodEnd: info.methodEnd,
            targetStart: info.targetStart, targetEnd: info.targetEnd,
            pathStart: info.pathStart, pathEnd: info.pathEnd, queryStart: info.queryStart,
            authorityStart: info.authorityStart, authorityEnd: info.authorityEnd,
            hostIndex: info.hostIndex, method: info.method, version: info.version,
            targetForm: info.targetForm, keepAlive: info.keepAlive,
            expectContinue: info.expectContinue, isUpgrade: info.isUpgrade,
            bodyFraming: info.bodyFraming
        )
        keepAliveAfterMessage = info.keepAlive
        if info.bodyFraming == .none {
            state = .pendingEnd
        } else {
            body.start(info.bodyFraming)
            state = .body
        }
        return handler(.head(head))
    }

    /// Reads a head: at its start, in one pass (``readWholeHead(_:_:_:_:)``) when it lies
    /// whole in this input and is valid; otherwise the careful way: the scanner gathers
    /// it, across as many inputs as it takes, and the validator checks it in storage.
    @usableFromInline
    mutating func readHead(
        _ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int, _ handler: (Event) -> Control
    ) throws(HTTPParseError) -> (Int, Control?) {
        if scanTotal == 0, let read = readWholeHead(base, from, n, handler) { return (read.0, read.1) }
        // The careful way, as MessageParsing's default readHead.
        let (next, complete) = try scanHead(base, from, n)
        return (next, complete ? try headComplete(handler) : nil)
    }

    // MARK: - Head in one pass

    /// Reads a head that lies whole in `base[from..<n]` in one pass and reports it:
    /// validation finds the line ends as it goes, then the head's bytes are copied into
    /// `headStorage` at once. Returns the index after the head and the handler's
    /// answer, or nil — the head is not complete in this input, or breaks a rule — and
    /// then nothing has changed: ``scanHead(_:_:_:)`` scans it the careful way (which
    /// reports an error at the same byte however the input is split), and the validator
    /// meets the head again, in storage.
    ///
    /// Only at the start of a head (nothing scanned yet). It accepts exactly what the
    /// scanner and the validator together would: the validator reads the input through
    /// ``HeadBytes`` (never past `n`) and checks each line's CR LF itself, and the bytes
    /// it may look at end where the scanner would stop with `headTooLarge`; the field
    /// count, method and target limits are the validator's own (the scanner's early
    /// checks of them never refuse a head the validator accepts).
    @inline(__always) @usableFromInline
    mutating func readWholeHead(
        _ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int, _ handler: (Event) -> Control
    ) -> (Int, Control)? {
        // Empty lines before the request line are skipped (RFC 9112 §2.2) and counted
        // against the head limit, as the scanner does.
        var start = from
        while start + 1 < n && base[start] == asciiCR && base[start + 1] == asciiLF { start += 2 }
        // The scanner lets a head through when each byte but its final LF keeps the
        // total within maxHeadBytes: at most maxHeadBytes + 1 bytes in all.
        let bytes = HeadBytes(base + start, count: min(n - start, limits.maxHeadBytes + 1 - (start - from)))
        do throws(HTTPParseError) {
            let info = try HeadValidator.validate(bytes, spans: &spanStorage, limits: limits)
            headStorage.append(contentsOf: UnsafeBufferPointer(start: base + start, count: info.headLength))
            return (start + info.headLength, report(info, handler))
        } catch {
            spanStorage.removeAll(keepingCapacity: true)
            return nil
        }
    }

    // MARK: - Head scanning

    /// Finds the end of the head (CRLF CRLF), enforcing strict CRLF and the size limits
    /// early, and appends the scanned bytes to `headStorage`.
    ///
    /// Line bytes are skipped a run at a time (up to the next CR or LF, found eight bytes
    /// at a time by ``ByteSearch``); only CR and LF are looked at one by one. The checks
    /// the request line gets before the head is complete (``checkRequestLineRun``) report
    /// the same error at the same byte as a byte-by-byte scan, however the input is split.
    @usableFromInline
    mutating func scanHead(_ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int) throws(HTTPParseError) -> (Int, Bool) {
        var i = from
        var segmentStart = from
        var sawCR = scanSawCR
        var started = scanStarted
        var lineLength = scanLineLength
        var lineIndex = scanLineIndex
        var firstSpace = scanFirstSpace
        var total = scanTotal
        let maxHead = limits.maxHeadBytes
        var complete = false

        while i < n {
            var b = base[i]
            if !sawCR {
                if b == asciiCR {
                    i += 1
                    total += 1
                    sawCR = true
                    if !started { segmentStart = i }
                    if total > maxHead { throw .headTooLarge }
                    guard i < n else { break }
                    // The byte after the CR, usually its LF: handled below at once.
                    b = base[i]
                } else if b == asciiLF {
                    throw .bareLF
                } else {
                    // A run of line bytes, up to the next CR or LF or the end of the input.
                    let runEnd = ByteSearch.firstLineBreak(base, i, n)
                    started = true
                    if lineIndex == 0 {
                        try checkRequestLineRun(base, i, runEnd, &firstSpace, lineLength: lineLength, total: total)
                    }
                    lineLength += runEnd - i
                    total += runEnd - i
                    i = runEnd
                    if total > maxHead { throw .headTooLarge }
                    continue
                }
            }
            // After a CR: its LF ends a line.
            i += 1
            total += 1
            guard b == asciiLF else { throw .bareCR }
            sawCR = false
            if !started {
                // Ignored empty line before the request line.
                segmentStart = i
            } else if lineLength == 0 {
                complete = true
                break
            } else {
                lineIndex += 1
                lineLength = 0
                if lineIndex - 1 > limits.maxHeaderCount { throw .tooManyHeaders }
            }
            if total > maxHead { throw .headTooLarge }
        }

        if i > segmentStart {
            headStorage.append(contentsOf: UnsafeBufferPointer(start: base + segmentStart, count: i - segmentStart))
        }
        if complete {
            scanSawCR = false
            scanStarted = false
            scanLineLength = 0
            scanLineIndex = 0
            scanFirstSpace = -1
            scanTotal = 0
        } else {
            scanSawCR = sawCR
            scanStarted = started
            scanLineLength = lineLength
            scanLineIndex = lineIndex
            scanFirstSpace = firstSpace
            scanTotal = total
        }
        return (i, complete)
    }

    /// The early checks of request-line bytes `base[from..<end]` (no CR or LF among
    /// them), which follow `lineLength` bytes of the line and `total` bytes of the head:
    /// the method is a token of at most `maxMethodLength` bytes, the target stays within
    /// `maxTargetLength` (with room for the version), the head within `maxHeadBytes`.
    /// Throws the error a byte-by-byte check would meet first; records the first space.
    @inline(__always) @usableFromInline
    func checkRequestLineRun(
        _ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int, _ firstSpace: inout Int,
        lineLength: Int, total: Int
    ) throws(HTTPParseError) {
        var q = from
        var length = lineLength
        var tot = total
        // The method, byte by byte (a handful of bytes).
        while q < end && firstSpace < 0 {
            let c = base[q]
            if c == asciiSP {
                firstSpace = length
            } else if !isTokenChar(c) {
                throw .invalidMethod
            } else if length >= limits.maxMethodLength {
                throw .methodTooLong
            }
            q += 1
            length += 1
            tot += 1
            if tot > limits.maxHeadBytes { throw .headTooLarge }
        }
        guard q < end else { return }
        // After the first space only the lengths are checked: the k-th byte of the rest
        // (from 0) is too far into the target once k > maxTargetLength + 10 + firstSpace
        // - length, and puts the head over its limit once k ≥ maxHeadBytes - tot; the
        // target check comes first for the same byte.
        let remaining = end - q
        let targetLimit = max(0, limits.maxTargetLength + 11 + firstSpace - length)
        let headLimit = max(0, limits.maxHeadBytes - tot)
        if targetLimit < remaining || headLimit < remaining {
            throw targetLimit <= headLimit ? .targetTooLong : .headTooLarge
        }
    }

    // MARK: - Head validation

    /// Validates the head the scanner gathered in `headStorage`.
    @usableFromInline
    mutating func validateStoredHead() throws(HTTPParseError) -> HeadInfo {
        let storage = headStorage
        var spans = spanStorage
        spanStorage = []
        defer { spanStorage = spans }
        let limits = self.limits
        return try storage.withUnsafeBufferPointer { p throws(HTTPParseError) in
            try HeadValidator.validate(p, spans: &spans, limits: limits)
        }
    }
}
