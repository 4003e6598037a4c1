/// Offsets and flags extracted from a complete head; combined with the storage into a
/// ``RequestHead`` by the parser.
@usableFromInline
struct HeadInfo {
    var methodEnd = 0
    var targetStart = 0
    var targetEnd = 0
    var pathStart = 0
    var pathEnd = 0
    var queryStart = -1
    var authorityStart = -1
    var authorityEnd = -1
    var hostIndex = -1
    var method = HTTPMethodKind.other
    var version = HTTPVersion.http11
    var targetForm = RequestTargetForm.origin
    var keepAlive = true
    var expectContinue = false
    var isUpgrade = false
    var bodyFraming = RequestBodyFraming.none
}

/// Validates a complete head (request line + fields + empty line, all lines ending in
/// CRLF — guaranteed by the scanner) held in the parser's storage. Pure function of its
/// input; records field spans into the caller's reusable array.
@usableFromInline
enum HeadValidator {
    @usableFromInline
    static func validate(
        _ p: UnsafeBufferPointer<UInt8>,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) -> Result<HeadInfo, HTTPParseError> {
        var info = HeadInfo()
        var i = 0

        // ---- Request line: method SP request-target SP HTTP-version CRLF
        while p[i] != asciiSP && p[i] != asciiCR {
            guard isTokenChar(p[i]) else { return .failure(.invalidMethod) }
            i += 1
        }
        guard i > 0 else { return .failure(.invalidMethod) }
        guard p[i] == asciiSP else { return .failure(.invalidRequestLine) }
        if i > limits.maxMethodLength { return .failure(.methodTooLong) }
        info.methodEnd = i
        info.method = classifyMethod(p, i)
        i += 1

        info.targetStart = i
        while p[i] != asciiSP && p[i] != asciiCR {
            guard isTargetChar(p[i]) else { return .failure(.invalidTarget) }
            i += 1
        }
        info.targetEnd = i
        guard info.targetEnd > info.targetStart, p[i] == asciiSP else { return .failure(.invalidRequestLine) }
        if info.targetEnd - info.targetStart > limits.maxTargetLength { return .failure(.targetTooLong) }
        i += 1

        let versionStart = i
        while p[i] != asciiCR { i += 1 }
        if i - versionStart == 8,
            p[versionStart] == UInt8(ascii: "H"), p[versionStart + 1] == UInt8(ascii: "T"),
            p[versionStart + 2] == UInt8(ascii: "T"), p[versionStart + 3] == UInt8(ascii: "P"),
            p[versionStart + 4] == UInt8(ascii: "/"), isDigit(p[versionStart + 5]),
            p[versionStart + 6] == UInt8(ascii: "."), isDigit(p[versionStart + 7])
        {
            let major = p[versionStart + 5] - UInt8(ascii: "0")
            let minor = p[versionStart + 7] - UInt8(ascii: "0")
            guard major == 1, minor <= 1 else { return .failure(.unsupportedVersion) }
            info.version = HTTPVersion(major: major, minor: minor)
        } else {
            return .failure(.invalidVersion)
        }
        i += 2

        if let error = classifyTarget(p, &info) { return .failure(error) }

        // ---- Field lines
        var contentLength = -1
        var transferEncodingSeen = false
        var chunkedCount = 0
        var lastCodingIsChunked = false
        var otherCodingSeen = false
        var hostCount = 0
        var connectionClose = false
        var connectionKeepAlive = false
        var connectionUpgrade = false
        var upgradeSeen = false
        var expectContinue = false

        while p[i] != asciiCR {
            let lineStart = i
            if isOWS(p[i]) { return .failure(.obsFold) }
            while p[i] != UInt8(ascii: ":") {
                let b = p[i]
                if isTokenChar(b) {
                    i += 1
                } else if isOWS(b) {
                    return .failure(.whitespaceBeforeColon)
                } else {
                    return .failure(.invalidHeaderName)
                }
            }
            let nameEnd = i
            guard nameEnd > lineStart else { return .failure(.invalidHeaderName) }
            i += 1
            while isOWS(p[i]) { i += 1 }
            let valueStart = i
            while p[i] != asciiCR {
                guard isFieldValueChar(p[i]) else { return .failure(.invalidHeaderValue) }
                i += 1
            }
            var valueEnd = i
            while valueEnd > valueStart && isOWS(p[valueEnd - 1]) { valueEnd -= 1 }
            i += 2

            spans.append(FieldSpan(nameStart: lineStart, nameEnd: nameEnd, valueStart: valueStart, valueEnd: valueEnd))
            if spans.count > limits.maxHeaderCount { return .failure(.tooManyHeaders) }

            switch nameEnd - lineStart {
            case 4 where bytesEqualLowercased(p, lineStart, nameEnd, "host"):
                hostCount += 1
                info.hostIndex = spans.count - 1
                for j in valueStart..<valueEnd where !isAuthorityChar(p[j]) {
                    return .failure(.invalidHost)
                }
            case 6 where bytesEqualLowercased(p, lineStart, nameEnd, "expect"):
                if bytesEqualLowercased(p, valueStart, valueEnd, "100-continue") { expectContinue = true }
            case 7 where bytesEqualLowercased(p, lineStart, nameEnd, "upgrade"):
                upgradeSeen = true
            case 10 where bytesEqualLowercased(p, lineStart, nameEnd, "connection"):
                forEachListElement(p, valueStart, valueEnd) { s, e in
                    if bytesEqualLowercased(p, s, e, "close") {
                        connectionClose = true
                    } else if bytesEqualLowercased(p, s, e, "keep-alive") {
                        connectionKeepAlive = true
                    } else if bytesEqualLowercased(p, s, e, "upgrade") {
                        connectionUpgrade = true
                    }
                }
            case 14 where bytesEqualLowercased(p, lineStart, nameEnd, "content-length"):
                if let error = parseContentLength(p, valueStart, valueEnd, &contentLength) { return .failure(error) }
            case 17 where bytesEqualLowercased(p, lineStart, nameEnd, "transfer-encoding"):
                transferEncodingSeen = true
                if let error = parseTransferEncoding(
                    p, valueStart, valueEnd, &chunkedCount, &lastCodingIsChunked, &otherCodingSeen)
                {
                    return .failure(error)
                }
            default:
                break
            }
        }

        // ---- Framing (RFC 9112 §6)
        if transferEncodingSeen {
            if contentLength >= 0 { return .failure(.contentLengthWithTransferEncoding) }
            if info.version == .http10 { return .failure(.invalidTransferEncoding) }
            if otherCodingSeen || !lastCodingIsChunked {
                return .failure(chunkedCount == 0 && !otherCodingSeen ? .invalidTransferEncoding : .unsupportedTransferEncoding)
            }
            info.bodyFraming = .chunked
        } else if contentLength > 0 {
            if contentLength > limits.maxBodyBytes { return .failure(.bodyTooLarge) }
            info.bodyFraming = .contentLength(contentLength)
        }

        // ---- Host (RFC 9112 §3.2)
        if hostCount > 1 { return .failure(.duplicateHost) }
        if hostCount == 0 && info.version == .http11 { return .failure(.missingHost) }

        // ---- Connection semantics (RFC 9112 §9.3)
        if info.version == .http11 {
            info.keepAlive = !connectionClose
            info.expectContinue = expectContinue
        } else {
            info.keepAlive = connectionKeepAlive && !connectionClose
        }
        info.isUpgrade = connectionUpgrade && upgradeSeen
        return .success(info)
    }

    static func classifyMethod(_ p: UnsafeBufferPointer<UInt8>, _ end: Int) -> HTTPMethodKind {
        @inline(__always) func eq(_ s: StaticString) -> Bool {
            guard s.utf8CodeUnitCount == end else { return false }
            let u = s.utf8Start
            for k in 0..<end where p[k] != u[k] { return false }
            return true
        }
        switch end {
        case 3:
            if eq("GET") { return .get }
            if eq("PUT") { return .put }
        case 4:
            if eq("POST") { return .post }
            if eq("HEAD") { return .head }
        case 5:
            if eq("PATCH") { return .patch }
            if eq("TRACE") { return .trace }
        case 6:
            if eq("DELETE") { return .delete }
        case 7:
            if eq("OPTIONS") { return .options }
            if eq("CONNECT") { return .connect }
        default:
            break
        }
        return .other
    }

    /// Determines the target form, the path/query/authority ranges, and validates
    /// percent-encoding.
    static func classifyTarget(_ p: UnsafeBufferPointer<UInt8>, _ info: inout HeadInfo) -> HTTPParseError? {
        let start = info.targetStart
        let end = info.targetEnd

        // Percent-encoding must be %HH everywhere.
        var k = start
        while k < end {
            if p[k] == UInt8(ascii: "%") {
                guard k + 2 < end, hexValue(p[k + 1]) != nil, hexValue(p[k + 2]) != nil else { return .invalidTarget }
                k += 3
            } else {
                k += 1
            }
        }

        func splitPathQuery(from s: Int) {
            info.pathStart = s
            var q = s
            while q < end && p[q] != UInt8(ascii: "?") { q += 1 }
            info.pathEnd = q
            info.queryStart = q < end ? q + 1 : -1
        }

        if info.method == .connect {
            // authority-form only: host:port
            var sawColon = false
            for j in start..<end {
                if p[j] == UInt8(ascii: ":") { sawColon = true }
                if !isAuthorityChar(p[j]) { return .invalidTarget }
            }
            guard sawColon else { return .invalidTarget }
            info.targetForm = .authority
            info.authorityStart = start
            info.authorityEnd = end
            info.pathStart = end
            info.pathEnd = end
            return nil
        }

        switch p[start] {
        case UInt8(ascii: "/"):
            info.targetForm = .origin
            splitPathQuery(from: start)
            return nil
        case UInt8(ascii: "*"):
            guard end - start == 1, info.method == .options else { return .invalidTarget }
            info.targetForm = .asterisk
            info.pathStart = start
            info.pathEnd = end
            return nil
        default:
            // absolute-form: scheme "://" authority [path-abempty] ["?" query]
            guard isAlpha(p[start]) else { return .invalidTarget }
            var j = start + 1
            while j < end, isAlpha(p[j]) || isDigit(p[j]) || p[j] == UInt8(ascii: "+") || p[j] == UInt8(ascii: "-")
                || p[j] == UInt8(ascii: ".")
            {
                j += 1
            }
            guard j + 3 <= end, p[j] == UInt8(ascii: ":"), p[j + 1] == UInt8(ascii: "/"), p[j + 2] == UInt8(ascii: "/")
            else { return .invalidTarget }
            let authorityStart = j + 3
            var a = authorityStart
            while a < end && p[a] != UInt8(ascii: "/") && p[a] != UInt8(ascii: "?") {
                guard isAuthorityChar(p[a]) else { return .invalidTarget }
                a += 1
            }
            guard a > authorityStart else { return .invalidTarget }
            info.targetForm = .absolute
            info.authorityStart = authorityStart
            info.authorityEnd = a
            splitPathQuery(from: a)
            return nil
        }
    }

    /// Calls `body` with the trimmed range of every non-empty comma-separated element.
    /// (Quoted strings are not special-cased: fine for the token lists it is used on.)
    static func forEachListElement(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ body: (Int, Int) -> Void) {
        var s = start
        while s < end {
            var e = s
            while e < end && p[e] != UInt8(ascii: ",") { e += 1 }
            var a = s
            var b = e
            while a < b && isOWS(p[a]) { a += 1 }
            while b > a && isOWS(p[b - 1]) { b -= 1 }
            if b > a { body(a, b) }
            s = e + 1
        }
    }

    /// `Content-Length = 1*DIGIT`; also accepts a comma-separated list and repeated field
    /// lines as long as every value is identical (RFC 9110 §8.6 allows merging those);
    /// differing values → `conflictingContentLength`; signs, junk, empty elements or
    /// overflow → `invalidContentLength`.
    static func parseContentLength(
        _ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ current: inout Int
    ) -> HTTPParseError? {
        var j = start
        while true {
            while j < end && isOWS(p[j]) { j += 1 }
            let digitsStart = j
            var value = 0
            while j < end && isDigit(p[j]) {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (v, o2) = m.addingReportingOverflow(Int(p[j] - UInt8(ascii: "0")))
                if o1 || o2 { return .invalidContentLength }
                value = v
                j += 1
            }
            guard j > digitsStart else { return .invalidContentLength }
            while j < end && isOWS(p[j]) { j += 1 }
            if current >= 0 && current != value { return .conflictingContentLength }
            current = value
            if j == end { return nil }
            guard p[j] == UInt8(ascii: ",") else { return .invalidContentLength }
            j += 1
        }
    }

    /// Transfer-Encoding list: tokens (optionally with parameters). Records whether
    /// `chunked` appears (more than once → error), whether it is last, and whether any
    /// other coding appears (→ 501 later).
    static func parseTransferEncoding(
        _ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int,
        _ chunkedCount: inout Int, _ lastIsChunked: inout Bool, _ otherSeen: inout Bool
    ) -> HTTPParseError? {
        var j = start
        var sawElement = false
        while j < end {
            while j < end && isOWS(p[j]) { j += 1 }
            if j == end { break }
            if p[j] == UInt8(ascii: ",") {
                j += 1
                continue
            }
            let tokenStart = j
            while j < end && isTokenChar(p[j]) { j += 1 }
            guard j > tokenStart else { return .invalidTransferEncoding }
            let isChunked = bytesEqualLowercased(p, tokenStart, j, "chunked")
            while j < end && isOWS(p[j]) { j += 1 }
            sawElement = true
            if j < end && p[j] == UInt8(ascii: ";") {
                // A coding with parameters: `chunked` takes none; others are unsupported anyway.
                if isChunked { return .invalidTransferEncoding }
                otherSeen = true
                lastIsChunked = false
                return nil
            }
            guard j == end || p[j] == UInt8(ascii: ",") else { return .invalidTransferEncoding }
            if isChunked {
                if chunkedCount > 0 { return .invalidTransferEncoding }
                chunkedCount += 1
                lastIsChunked = true
            } else {
                otherSeen = true
                lastIsChunked = false
            }
        }
        return sawElement ? nil : .invalidTransferEncoding
    }
}
