/// Incremental HTTP/1.1 request parser (RFC 9112), independent of any I/O.
///
/// Push bytes in with ``parse(_:_:)`` as they arrive; the parser reports ``Event``s in
/// order through a non-escaping handler. Requests may be pipelined (several in one
/// buffer) and may be split at any byte boundary: the events are the same either way
/// (except that body bytes may be delivered in more, smaller `.body` slices).
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
public struct HTTPRequestParser: Sendable {
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
    public enum Control: Sendable {
        /// Keep parsing.
        case proceed
        /// Stop right after this event: ``HTTPRequestParser/parse(_:_:)`` returns the
        /// number of bytes consumed so far. Unconsumed bytes belong to the caller (e.g. the
        /// WebSocket codec after an accepted upgrade, or a copy kept for later). Calling
        /// `parse` again (possibly with an empty buffer) resumes, e.g. by emitting the
        /// `.end` of a bodiless request that was paused after its `.head`.
        case pause
    }

    @usableFromInline
    enum State: Equatable, Sendable {
        case head
        case fixedBody
        case chunkSize, chunkSizeWS, chunkExt, chunkSizeLF
        case chunkData, chunkDataCR, chunkDataLF
        case trailerLineStart, trailerName, trailerValue, trailerLineLF, trailerEndLF
        case pendingEnd
        case closed
        case failed(HTTPParseError)
    }

    /// The limits this parser enforces.
    public let limits: HTTPLimits

    @usableFromInline var state: State = .head
    @usableFromInline var headStorage: [UInt8]
    @usableFromInline var spanStorage: [FieldSpan]

    // Head scanning (survives across calls while a head is incomplete).
    @usableFromInline var scanSawCR = false
    @usableFromInline var scanStarted = false
    @usableFromInline var scanLineLength = 0
    @usableFromInline var scanLineIndex = 0
    @usableFromInline var scanFirstSpace = -1
    @usableFromInline var scanTotal = 0

    // Body decoding.
    /// Remaining bytes of a Content-Length body or the current chunk; the size accumulator
    /// while reading a chunk-size line.
    @usableFromInline var remaining = 0
    @usableFromInline var bodyTotal = 0
    /// Length of the current chunk-size line, or total trailer bytes.
    @usableFromInline var lineLength = 0
    @usableFromInline var trailerCount = 0
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

    /// `true` when no request is in progress (no partial head or body buffered): a
    /// good moment for a graceful close.
    public var isIdle: Bool { state == .head && scanTotal == 0 }

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
    ///     Return ``Control/pause`` to stop early.
    /// - Returns: The number of bytes consumed: `bytes.count` unless the handler paused or
    ///   the connection is closed (non-keep-alive request finished).
    /// - Throws: ``HTTPParseError``; the parser is then terminal (see type docs).
    @discardableResult
    public mutating func parse(
        _ bytes: UnsafeRawBufferPointer,
        _ handler: (Event) -> Control
    ) throws(HTTPParseError) -> Int {
        if case .failed(let e) = state { throw e }
        do throws(HTTPParseError) {
            return try parseAvailable(bytes, handler)
        } catch {
            state = .failed(error)
            throw error
        }
    }

    // MARK: - Driver

    @usableFromInline
    mutating func parseAvailable(
        _ bytes: UnsafeRawBufferPointer,
        _ handler: (Event) -> Control
    ) throws(HTTPParseError) -> Int {
        let n = bytes.count
        var i = 0
        while true {
            if state == .pendingEnd {
                if finishMessage(handler) == .pause { return i }
                continue
            }
            // i < n, so the buffer is non-empty and has a base address.
            guard state != .closed, i < n, let start = bytes.baseAddress else { return i }
            let base = start.assumingMemoryBound(to: UInt8.self)
            switch state {
            case .head:
                let (next, complete) = try scanHead(base, i, n)
                i = next
                if complete, try headComplete(handler) == .pause { return i }
            case .fixedBody, .chunkData:
                let take = min(remaining, n - i)
                remaining -= take
                let slice = UnsafeRawBufferPointer(start: base + i, count: take)
                i += take
                if remaining == 0 { state = state == .fixedBody ? .pendingEnd : .chunkDataCR }
                if handler(.body(slice)) == .pause { return i }
            case .failed(let e):
                throw e
            default:
                i = try chunkBytes(base, i, n)
            }
        }
    }

    /// Emits `.end` and resets for the next request (or closes).
    @usableFromInline
    mutating func finishMessage(_ handler: (Event) -> Control) -> Control {
        if keepAliveAfterMessage {
            state = .head
            headStorage.removeAll(keepingCapacity: true)
            spanStorage.removeAll(keepingCapacity: true)
            bodyTotal = 0
            remaining = 0
        } else {
            state = .closed
        }
        return handler(.end)
    }

    @usableFromInline
    mutating func headComplete(_ handler: (Event) -> Control) throws(HTTPParseError) -> Control {
        let head = try processHead()
        keepAliveAfterMessage = head.keepAlive
        switch head.bodyFraming {
        case .none:
            state = .pendingEnd
        case .contentLength(let length):
            remaining = length
            state = .fixedBody
        case .chunked:
            remaining = 0
            lineLength = 0
            state = .chunkSize
        }
        return handler(.head(head))
    }

    // MARK: - Head scanning

    /// Finds the end of the head (CRLF CRLF), enforcing strict CRLF and the size limits
    /// early, and appends the scanned bytes to `headStorage`.
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
            let b = base[i]
            i += 1
            total += 1
            if sawCR {
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
            } else if b == asciiCR {
                sawCR = true
                if !started { segmentStart = i }
            } else if b == asciiLF {
                throw .bareLF
            } else {
                started = true
                if lineIndex == 0 {
                    if firstSpace < 0 {
                        if b == asciiSP {
                            firstSpace = lineLength
                        } else if !isTokenChar(b) {
                            throw .invalidMethod
                        } else if lineLength >= limits.maxMethodLength {
                            throw .methodTooLong
                        }
                    } else if lineLength - firstSpace > limits.maxTargetLength + 10 {
                        throw .targetTooLong
                    }
                    lineLength += 1
                } else {
                    // Field line: nothing to check before the next CR or LF, so skip the
                    // run of ordinary bytes in a tight loop (the head-size check below
                    // still fires inside the same run as a byte-wise scan would).
                    var j = i
                    while j < n {
                        let c = base[j]
                        if c == asciiCR || c == asciiLF { break }
                        j += 1
                    }
                    lineLength += 1 + (j - i)
                    total += j - i
                    i = j
                }
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

    // MARK: - Head validation

    @usableFromInline
    mutating func processHead() throws(HTTPParseError) -> RequestHead {
        let storage = headStorage
        var spans = spanStorage
        spanStorage = []
        let limits = self.limits
        let result = storage.withUnsafeBufferPointer { p in
            HeadValidator.validate(p, spans: &spans, limits: limits)
        }
        spanStorage = spans
        switch result {
        case .failure(let error):
            throw error
        case .success(let info):
            return RequestHead(
                storage: storage, spans: spans, methodEnd: info.methodEnd,
                targetStart: info.targetStart, targetEnd: info.targetEnd,
                pathStart: info.pathStart, pathEnd: info.pathEnd, queryStart: info.queryStart,
                authorityStart: info.authorityStart, authorityEnd: info.authorityEnd,
                hostIndex: info.hostIndex, method: info.method, version: info.version,
                targetForm: info.targetForm, keepAlive: info.keepAlive,
                expectContinue: info.expectContinue, isUpgrade: info.isUpgrade,
                bodyFraming: info.bodyFraming
            )
        }
    }

    // MARK: - Chunked decoding (byte-wise for size lines and trailers)

    @usableFromInline
    mutating func chunkBytes(_ base: UnsafePointer<UInt8>, _ from: Int, _ n: Int) throws(HTTPParseError) -> Int {
        var i = from
        while i < n {
            let b = base[i]
            i += 1
            switch state {
            case .chunkSize:
                if let h = hexValue(b) {
                    lineLength += 1
                    if lineLength > limits.maxChunkLineLength { throw .invalidChunkSize }
                    let (times16, o1) = remaining.multipliedReportingOverflow(by: 16)
                    let (size, o2) = times16.addingReportingOverflow(h)
                    if o1 || o2 { throw .invalidChunkSize }
                    if size > limits.maxBodyBytes - bodyTotal { throw .bodyTooLarge }
                    remaining = size
                } else if lineLength == 0 {
                    throw .invalidChunkSize
                } else if b == asciiCR {
                    state = .chunkSizeLF
                } else if b == UInt8(ascii: ";") {
                    state = .chunkExt
                } else if isOWS(b) {
                    state = .chunkSizeWS
                } else {
                    throw .invalidChunkSize
                }
            case .chunkSizeWS:
                lineLength += 1
                if lineLength > limits.maxChunkLineLength { throw .invalidChunkExtension }
                if b == UInt8(ascii: ";") {
                    state = .chunkExt
                } else if !isOWS(b) {
                    throw .invalidChunkSize
                }
            case .chunkExt:
                lineLength += 1
                if lineLength > limits.maxChunkLineLength { throw .invalidChunkExtension }
                if b == asciiCR {
                    state = .chunkSizeLF
                } else if b == asciiLF {
                    throw .bareLF
                } else if !isFieldValueChar(b) {
                    throw .invalidChunkExtension
                }
            case .chunkSizeLF:
                guard b == asciiLF else { throw .bareCR }
                if remaining == 0 {
                    lineLength = 0
                    trailerCount = 0
                    state = .trailerLineStart
                } else {
                    bodyTotal += remaining
                    state = .chunkData
                    return i
                }
            case .chunkDataCR:
                guard b == asciiCR else { throw .invalidChunkTerminator }
                state = .chunkDataLF
            case .chunkDataLF:
                guard b == asciiLF else { throw .invalidChunkTerminator }
                lineLength = 0
                remaining = 0
                state = .chunkSize
            case .trailerLineStart, .trailerName, .trailerValue, .trailerLineLF, .trailerEndLF:
                lineLength += 1
                if lineLength > limits.maxHeadBytes { throw .headTooLarge }
                try trailerByte(b)
                if state == .pendingEnd { return i }
            default:
                preconditionFailure("chunkBytes in state \(state)")
            }
        }
        return i
    }

    @usableFromInline
    mutating func trailerByte(_ b: UInt8) throws(HTTPParseError) {
        switch state {
        case .trailerLineStart:
            if b == asciiCR {
                state = .trailerEndLF
            } else if b == asciiLF {
                throw .bareLF
            } else if isOWS(b) {
                throw .obsFold
            } else if isTokenChar(b) {
                trailerCount += 1
                if trailerCount > limits.maxHeaderCount { throw .tooManyHeaders }
                state = .trailerName
            } else {
                throw .invalidTrailer
            }
        case .trailerName:
            if b == UInt8(ascii: ":") {
                state = .trailerValue
            } else if isOWS(b) {
                throw .whitespaceBeforeColon
            } else if !isTokenChar(b) {
                throw .invalidTrailer
            }
        case .trailerValue:
            if b == asciiCR {
                state = .trailerLineLF
            } else if b == asciiLF {
                throw .bareLF
            } else if !isFieldValueChar(b) {
                throw .invalidHeaderValue
            }
        case .trailerLineLF:
            guard b == asciiLF else { throw .bareCR }
            state = .trailerLineStart
        case .trailerEndLF:
            guard b == asciiLF else { throw .bareCR }
            state = .pendingEnd
        default:
            preconditionFailure("trailerByte in state \(state)")
        }
    }
}
