@testable import TorusHTTP

// A test-only copy of the request parser as it was before the one-pass head parser
// (main at 8d8cacc: `HTTPRequestParser.swift`, `HeadValidator.swift`, `ByteSearch.swift`),
// kept verbatim where it decides anything (scanning, validation) and renamed `Legacy…`,
// so `DifferentialParserTests` can check that the library's parser accepts and rejects
// exactly what this one did. It uses the library's byte-class table (pinned to the
// grammar by `ByteClassTests`), `BodyReader`, `RequestHead` and error type, and drives
// them with its own copy of the message loop. Not part of the library.

/// The pre-one-pass request parser (see file comment). Reports the library's events.
struct LegacyRequestParser {
    typealias Event = HTTPRequestParser.Event
    typealias Control = HTTPParserControl

    let limits: HTTPLimits

    var state = MessageParseState.head
    var headStorage: [UInt8] = []
    var spanStorage: [FieldSpan] = []

    // Head scanning (survives across calls while a head is incomplete).
    var scanSawCR = false
    var scanStarted = false
    var scanLineLength = 0
    var scanLineIndex = 0
    var scanFirstSpace = -1
    var scanTotal = 0

    var body = BodyReader(chunked: ChunkedBodyDecoder(allowsBareLF: false, keepsTrailers: false))
    var keepAliveAfterMessage = true

    init(limits: HTTPLimits = .default) {
        self.limits = limits
    }

    var isClosed: Bool { state == .closed }

    /// The library's `MessageParsing.parseMessages`/`parseAvailable` as they were.
    mutating func parse(_ bytes: UnsafeRawBufferPointer, _ handler: (Event) -> Control) throws(HTTPParseError) -> Int {
        if case .failed(let e) = state { throw e }
        do throws(HTTPParseError) {
            return try parseAvailable(bytes, handler)
        } catch {
            state = .failed(error)
            throw error
        }
    }

    mutating func parseAvailable(_ bytes: UnsafeRawBufferPointer, _ handler: (Event) -> Control) throws(HTTPParseError) -> Int {
        let n = bytes.count
        var i = 0
        while true {
            if state == .pendingEnd {
                if finishMessage(handler) == .pause { return i }
                continue
            }
            guard state != .closed, i < n, let start = bytes.baseAddress else { return i }
            let base = start.assumingMemoryBound(to: UInt8.self)
            switch state {
            case .head:
                let (next, complete) = try scanHead(base, i, n)
                i = next
                if complete, try headComplete(handler) == .pause { return i }
            case .body:
                let (next, slice) = try body.read(base, i, n, limits: limits)
                i = next
                if body.isComplete { state = .pendingEnd }
                if let slice, handler(.body(slice)) == .pause { return i }
            case .failed(let e):
                throw e
            case .pendingEnd, .closed:
                return i
            }
        }
    }

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

    mutating func headComplete(_ handler: (Event) -> Control) throws(HTTPParseError) -> Control {
        let head = try processHead()
        keepAliveAfterMessage = head.keepAlive
        if head.bodyFraming == .none {
            state = .pendingEnd
        } else {
            body.start(head.bodyFraming)
            state = .body
        }
        return handler(.head(head))
    }

    // MARK: - Head scanning

    /// Finds the end of the head (CRLF CRLF), enforcing strict CRLF and the size limits
    /// early, and appends the scanned bytes to `headStorage`.
    ///
    /// Line bytes are skipped a run at a time (up to the next CR or LF, found eight bytes
    /// at a time by ``LegacyByteSearch``); only CR and LF are looked at one by one. The checks
    /// the request line gets before the head is complete (``checkRequestLineRun``) report
    /// the same error at the same byte as a byte-by-byte scan, however the input is split.
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
                    let runEnd = LegacyByteSearch.firstLineBreak(base, i, n)
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

    mutating func processHead() throws(HTTPParseError) -> RequestHead {
        let storage = headStorage
        var spans = spanStorage
        spanStorage = []
        let limits = self.limits
        let result = storage.withUnsafeBufferPointer { p in
            LegacyHeadValidator.validate(p, spans: &spans, limits: limits)
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
}
