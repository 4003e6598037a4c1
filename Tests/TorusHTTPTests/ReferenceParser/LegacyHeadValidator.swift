@testable import TorusHTTP

// Test-only copy of the old `HeadValidator.swift` (see LegacyRequestParser.swift).

/// Offsets and flags extracted from a complete head; combined with the storage into a
/// ``RequestHead`` by the parser.
struct LegacyHeadInfo {
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
    var bodyFraming = HTTPBodyFraming.none
}

/// What a field section says about the body's framing, the connection and Host;
/// filled in by ``LegacyHeadValidator/validateFields(_:from:spans:limits:)`` for request
/// and response heads alike.
struct LegacyFieldSectionInfo {
    /// -1 when absent.
    var contentLength = -1
    var transferEncodingSeen = false
    var chunkedCount = 0
    var lastCodingIsChunked = false
    var otherCodingSeen = false
    var hostCount = 0
    /// Index into the spans of the (last) Host field, -1 if absent.
    var hostIndex = -1
    var connectionClose = false
    var connectionKeepAlive = false
    var connectionUpgrade = false
    var upgradeSeen = false
    var expectContinue = false
}

/// The one field validator of the codec. Validates a complete head (start line +
/// fields + empty line, all lines ending in CRLF — guaranteed by the scanners) held
/// in a parser's storage: ``validate(_:spans:limits:)`` a request head, and
/// ``validateFields(_:from:spans:limits:)`` the field section of any head (the
/// response parser's too). Pure functions of their input; they record field spans
/// into the caller's reusable array.
enum LegacyHeadValidator {
    static func validate(
        _ p: UnsafeBufferPointer<UInt8>,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) -> Result<LegacyHeadInfo, HTTPParseError> {
        var info = LegacyHeadInfo()
        var i = 0
        // (A complete head is never empty: the scanner ends it with CRLF CRLF.)
        guard let base = p.baseAddress else { return .failure(.invalidMethod) }

        // ---- Request line: method SP request-target SP HTTP-version CRLF
        while isTokenChar(p[i]) { i += 1 }
        guard p[i] == asciiSP || p[i] == asciiCR, i > 0 else { return .failure(.invalidMethod) }
        guard p[i] == asciiSP else { return .failure(.invalidRequestLine) }
        if i > limits.maxMethodLength { return .failure(.methodTooLong) }
        info.methodEnd = i
        info.method = classifyMethod(p, i)
        i += 1

        info.targetStart = i
        while isTargetChar(p[i]) { i += 1 }
        guard p[i] == asciiSP || p[i] == asciiCR else { return .failure(.invalidTarget) }
        info.targetEnd = i
        guard info.targetEnd > info.targetStart, p[i] == asciiSP else { return .failure(.invalidRequestLine) }
        if info.targetEnd - info.targetStart > limits.maxTargetLength { return .failure(.targetTooLong) }
        i += 1

        let versionStart = i
        if versionStart + 8 < p.count, p[versionStart + 8] == asciiCR,
            LegacyByteSearch.word(base, versionStart) == 0x312E_312F_5054_5448  // "HTTP/1.1", the usual case
        {
            info.version = .http11
            i += 8
        } else {
            if let error = classifyVersion(p, &i, &info) { return .failure(error) }
        }
        i += 2

        if let error = classifyTarget(p, &info) { return .failure(error) }

        let fields: LegacyFieldSectionInfo
        switch validateFields(p, from: i, spans: &spans, limits: limits) {
        case .failure(let error): return .failure(error)
        case .success(let f): fields = f
        }
        let contentLength = fields.contentLength
        info.hostIndex = fields.hostIndex

        // ---- Framing (RFC 9112 §6)
        if fields.transferEncodingSeen {
            if contentLength >= 0 { return .failure(.contentLengthWithTransferEncoding) }
            if info.version == .http10 { return .failure(.invalidTransferEncoding) }
            // Chunked not final: the body's length cannot be determined (RFC 9112 §6.3).
            if !fields.lastCodingIsChunked { return .failure(.invalidTransferEncoding) }
            if fields.otherCodingSeen { return .failure(.unsupportedTransferEncoding) }
            info.bodyFraming = .chunked
        } else if contentLength > 0 {
            if contentLength > limits.maxBodyBytes { return .failure(.bodyTooLarge) }
            info.bodyFraming = .contentLength(contentLength)
        }

        // ---- Host (RFC 9112 §3.2)
        if fields.hostCount > 1 { return .failure(.duplicateHost) }
        if fields.hostCount == 0 && info.version == .http11 { return .failure(.missingHost) }

        // ---- Connection semantics (RFC 9112 §9.3)
        info.keepAlive = fields.keepAlive(version: info.version)
        if info.version == .http11 { info.expectContinue = fields.expectContinue }
        info.isUpgrade = fields.connectionUpgrade && fields.upgradeSeen
        return .success(info)
    }

    /// Validates the field lines from `i` to the empty line ending the head, records
    /// their spans, and notes the fields that frame the body and steer the connection.
    static func validateFields(
        _ p: UnsafeBufferPointer<UInt8>, from start: Int,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) -> Result<LegacyFieldSectionInfo, HTTPParseError> {
        var info = LegacyFieldSectionInfo()
        var i = start
        let count = p.count
        guard let base = p.baseAddress else { return .success(info) }
        while p[i] != asciiCR {
            let lineStart = i
            // field-name = token, then ":" (no whitespace before it, no obs-fold).
            while isTokenChar(p[i]) { i += 1 }
            let nameEnd = i
            if p[i] != UInt8(ascii: ":") || nameEnd == lineStart {
                if nameEnd == lineStart && isOWS(p[i]) { return .failure(.obsFold) }
                if nameEnd > lineStart && isOWS(p[i]) { return .failure(.whitespaceBeforeColon) }
                return .failure(.invalidHeaderName)
            }
            i += 1
            while isOWS(p[i]) { i += 1 }
            let valueStart = i
            // The value runs to the line's CR (every line ends in CRLF); any other byte
            // that is not a field-value byte is invalid.
            i = LegacyByteSearch.firstNonFieldValue(base, i, count)
            guard i < count, p[i] == asciiCR else { return .failure(.invalidHeaderValue) }
            var valueEnd = i
            while valueEnd > valueStart && isOWS(p[valueEnd - 1]) { valueEnd -= 1 }
            i += 2

            spans.append(FieldSpan(nameStart: lineStart, nameEnd: nameEnd, valueStart: valueStart, valueEnd: valueEnd))
            if spans.count > limits.maxHeaderCount { return .failure(.tooManyHeaders) }

            switch nameEnd - lineStart {
            case 4 where legacyTokenEqualsLowercased(base, lineStart, "host"):
                info.hostCount += 1
                info.hostIndex = spans.count - 1
                for j in valueStart..<valueEnd where !isAuthorityChar(p[j]) {
                    return .failure(.invalidHost)
                }
            case 6 where legacyTokenEqualsLowercased(base, lineStart, "expect"):
                if legacyBytesEqualLowercased(p, valueStart, valueEnd, "100-continue") { info.expectContinue = true }
            case 7 where legacyTokenEqualsLowercased(base, lineStart, "upgrade"):
                info.upgradeSeen = true
            case 10 where legacyTokenEqualsLowercased(base, lineStart, "connection"):
                // The usual single-element values first (a value has no OWS at its ends).
                let length = valueEnd - valueStart
                if length == 10 && legacyTokenEqualsLowercased(base, valueStart, "keep-alive") {
                    info.connectionKeepAlive = true
                } else if length == 5 && legacyTokenEqualsLowercased(base, valueStart, "close") {
                    info.connectionClose = true
                } else {
                    forEachListElement(p, valueStart, valueEnd) { s, e in
                        if legacyBytesEqualLowercased(p, s, e, "close") {
                            info.connectionClose = true
                        } else if legacyBytesEqualLowercased(p, s, e, "keep-alive") {
                            info.connectionKeepAlive = true
                        } else if legacyBytesEqualLowercased(p, s, e, "upgrade") {
                            info.connectionUpgrade = true
                        }
                    }
                }
            case 14 where legacyTokenEqualsLowercased(base, lineStart, "content-length"):
                if let error = parseContentLength(p, valueStart, valueEnd, &info.contentLength) { return .failure(error) }
            case 17 where legacyTokenEqualsLowercased(base, lineStart, "transfer-encoding"):
                info.transferEncodingSeen = true
                if let error = parseTransferEncoding(
                    p, valueStart, valueEnd, &info.chunkedCount, &info.lastCodingIsChunked, &info.otherCodingSeen)
                {
                    return .failure(error)
                }
            default:
                break
            }
        }

        return .success(info)
    }

/// HTTP-version = "HTTP/" DIGIT "." DIGIT, from `i` to the request line's CR (where
    /// it leaves `i`).
    static func classifyVersion(_ p: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ info: inout LegacyHeadInfo) -> HTTPParseError? {
        let versionStart = i
        while p[i] != asciiCR { i += 1 }
        guard i - versionStart == 8,
            p[versionStart] == UInt8(ascii: "H"), p[versionStart + 1] == UInt8(ascii: "T"),
            p[versionStart + 2] == UInt8(ascii: "T"), p[versionStart + 3] == UInt8(ascii: "P"),
            p[versionStart + 4] == UInt8(ascii: "/"), isDigit(p[versionStart + 5]),
            p[versionStart + 6] == UInt8(ascii: "."), isDigit(p[versionStart + 7])
        else { return .invalidVersion }
        let major = p[versionStart + 5] - UInt8(ascii: "0")
        let minor = p[versionStart + 7] - UInt8(ascii: "0")
        // A higher minor version of HTTP/1 is answered as HTTP/1.1 (RFC 9110 §2.5);
        // other majors, and HTTP/0.x written with a version, are not HTTP/1.
        guard major == 1 else { return .unsupportedVersion }
        info.version = minor == 0 ? .http10 : .http11
        return nil
    }

        static func classifyMethod(_ p: UnsafeBufferPointer<UInt8>, _ end: Int) -> HTTPMethodKind {
        func eq(_ s: StaticString) -> Bool {
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
    static func classifyTarget(_ p: UnsafeBufferPointer<UInt8>, _ info: inout LegacyHeadInfo) -> HTTPParseError? {
        let start = info.targetStart
        let end = info.targetEnd

        // Percent-encoding must be %HH everywhere; on the way, note the first "?" (never
        // inside a %HH, and never in the scheme or authority of an absolute-form target,
        // so it is where the path of any form ends).
        var k = start
        var question = end
        while k < end {
            let c = p[k]
            if c == UInt8(ascii: "%") {
                guard k + 2 < end, hexValue(p[k + 1]) != nil, hexValue(p[k + 2]) != nil else { return .invalidTarget }
                k += 3
            } else {
                if c == UInt8(ascii: "?") && question == end { question = k }
                k += 1
            }
        }

        func splitPathQuery(from s: Int) {
            info.pathStart = s
            info.pathEnd = question
            info.queryStart = question < end ? question + 1 : -1
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
            let isChunked = legacyBytesEqualLowercased(p, tokenStart, j, "chunked")
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

extension LegacyFieldSectionInfo {
    /// Whether the connection stays open after the message (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    func keepAlive(version: HTTPVersion) -> Bool {
        version == .http11 ? !connectionClose : connectionKeepAlive && !connectionClose
    }
}

// The old word comparisons (`ByteClasses.swift`).

/// Case-insensitive comparison of raw bytes with an ASCII string whose letters are lowercase.
func legacyBytesEqualLowercased(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ lower: StaticString) -> Bool {
    let n = lower.utf8CodeUnitCount
    guard end - start == n else { return false }
    let s = lower.utf8Start
    var i = 0
    while i < n {
        if asciiLower(p[start + i]) != s[i] { return false }
        i += 1
    }
    return true
}

/// Case-insensitive comparison of the `lower.utf8CodeUnitCount` bytes at `base + start`
/// with `lower`, a string of at least 4 lowercase letters, digits and "-"; the caller has
/// checked the length and that the bytes are tchar or field-value bytes (a validated
/// field name or value: no CTL but HTAB). Compares whole words with every byte ORed
/// with 0x20, which is exact for such bytes: only "A"…"Z" and "a"…"z" map onto a
/// lowercase letter (each onto its own), and onto "-" or a digit only that byte itself
/// (the other byte that would, 0x0D or 0x10…0x19, is a CTL other than HTAB).
func legacyTokenEqualsLowercased(_ base: UnsafePointer<UInt8>, _ start: Int, _ lower: StaticString) -> Bool {
    let n = lower.utf8CodeUnitCount
    assert(n >= 4)
    let s = UnsafeRawPointer(lower.utf8Start)
    let p = UnsafeRawPointer(base + start)
    if n >= 8 {
        // Two overlapping words cover 8…16 bytes.
        let fold: UInt64 = 0x2020_2020_2020_2020
        return p.loadUnaligned(as: UInt64.self) | fold == s.loadUnaligned(as: UInt64.self)
            && p.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) | fold
                == s.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self)
            && (n <= 16 || legacyBytesFoldEqual(p + 8, s + 8, n - 16))
    }
    let fold: UInt32 = 0x2020_2020
    return p.loadUnaligned(as: UInt32.self) | fold == s.loadUnaligned(as: UInt32.self)
        && p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) | fold
            == s.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
}

/// The middle of a comparison longer than 16 bytes (`transfer-encoding`), byte by byte.
func legacyBytesFoldEqual(_ p: UnsafeRawPointer, _ s: UnsafeRawPointer, _ count: Int) -> Bool {
    var k = 0
    while k < count {
        if p.load(fromByteOffset: k, as: UInt8.self) | 0x20 != s.load(fromByteOffset: k, as: UInt8.self) { return false }
        k += 1
    }
    return true
}
