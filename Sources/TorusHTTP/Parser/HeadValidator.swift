/// Offsets and flags extracted from a complete head; combined with the storage into a
/// ``RequestHead`` by the parser.
@usableFromInline
struct HeadInfo: Sendable {
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
    /// The head's length: the index after its empty line.
    var headLength = 0
}

/// What a field section says about the body's framing, the connection and Host;
/// filled in by ``HeadValidator/validateFields(_:from:spans:limits:)`` for request
/// and response heads alike.
@usableFromInline
struct FieldSectionInfo {
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
    /// The index after the empty line that ends the section.
    var end = 0
}

/// The one head validator of the codec: ``validate(_:spans:limits:)`` checks a request
/// head, ``validateFields(_:from:spans:limits:)`` the field section of any head (the
/// response parser's too). Pure functions of their input; they record field spans into
/// the caller's reusable array.
///
/// They find each line's end themselves and check its CR LF, and read only inside the
/// ``HeadBytes`` they are given, so they accept exactly the same heads whether they run
/// over a parser's storage — a complete head, which the scanner saw end in CRLF CRLF —
/// or over raw input that may end anywhere: the request parser reads a head that way,
/// in one pass (see ``HTTPRequestParser/readWholeHead(_:_:_:_:)``). Each line is read
/// the same way: a word-at-a-time search finds its first byte that cannot belong to it
/// (the request line's CR or LF, a field line's first byte that is no field-value
/// byte: its CR, or a byte that breaks a rule); the byte loops that follow all stop
/// there at the latest, so they need no bounds checks of their own.
///
/// Over a complete head the first rule broken decides the error, in the order the
/// checks are written: the request line, the target, the fields line by line, then
/// framing, Host and the connection. Over raw input a failure only means "not like
/// this" — the bytes may have ended before the head (``endsEarly``) — and the caller
/// then scans the head the careful way.
@usableFromInline
enum HeadValidator {
    /// The verdict when the bytes end inside the head. Never over a complete head (it
    /// ends in CRLF CRLF); over raw input the caller does not report it.
    @usableFromInline static let endsEarly = HTTPParseError.headTooLarge

    /// Validates the complete request head in `p` (a parser's storage).
    @usableFromInline
    static func validate(
        _ p: UnsafeBufferPointer<UInt8>,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) throws(HTTPParseError) -> HeadInfo {
        guard let base = p.baseAddress else { throw endsEarly }
        return try validate(HeadBytes(base, count: p.count), spans: &spans, limits: limits)
    }

    /// Validates the request head at the start of `b`; on success `headLength` is the
    /// index after its empty line. `spans` must be empty.
    @usableFromInline
    static func validate(
        _ b: HeadBytes,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) throws(HTTPParseError) -> HeadInfo {
        var info = HeadInfo()
        let base = b.base
        let p = b.buffer

        // ---- Request line: method SP request-target SP HTTP-version CRLF
        // Its bytes run to its first CR or LF, which ends the method and target loops.
        let lineEnd = ByteSearch.firstLineBreak(base, 0, b.count)
        guard lineEnd < b.count else { throw endsEarly }
        var i = 0
        if lineEnd >= 3 && limits.maxMethodLength >= 3
            && UnsafeRawPointer(base).loadUnaligned(as: UInt32.self) == UInt32(littleEndian: 0x2054_4547)  // "GET "
        {
            // The usual method: what the loop and checks below would find.
            info.methodEnd = 3
            info.method = .get
            i = 4
        } else {
            while isTokenChar(base[i]) { i &+= 1 }
            guard base[i] == asciiSP || base[i] == asciiCR, i > 0 else { throw .invalidMethod }
            guard base[i] == asciiSP else { throw .invalidRequestLine }
            if i > limits.maxMethodLength { throw .methodTooLong }
            info.methodEnd = i
            info.method = classifyMethod(p, i)
            i += 1
        }

        // The target; "%" and "?" are noted on the way, for classifyTarget.
        info.targetStart = i
        var question = -1
        var percentSeen = false
        while true {
            let c = base[i]
            if isPlainTargetChar(c) {
                i &+= 1
            } else if c == UInt8(ascii: "?") {
                if question < 0 { question = i }
                i &+= 1
            } else if c == UInt8(ascii: "%") {
                percentSeen = true
                i &+= 1
            } else {
                break
            }
        }
        guard base[i] == asciiSP || base[i] == asciiCR else { throw .invalidTarget }
        info.targetEnd = i
        guard info.targetEnd > info.targetStart, base[i] == asciiSP else { throw .invalidRequestLine }
        if info.targetEnd - info.targetStart > limits.maxTargetLength { throw .targetTooLong }
        i += 1

        // HTTP-version = "HTTP/" DIGIT "." DIGIT, then the line's CR LF.
        if i + 8 < b.count, b[i + 8] == asciiCR,
            ByteSearch.word(base, i) == 0x312E_312F_5054_5448  // "HTTP/1.1", the usual case
        {
            info.version = .http11
        } else {
            if let error = classifyVersion(b, i, &info) { throw error }
        }
        i += 8
        guard b[i + 1] == asciiLF else { throw .bareCR }
        i += 2

        if let error = classifyTarget(p, &info, question: question, percentSeen: percentSeen) {
            throw error
        }

        let fields = try validateFields(b, from: i, spans: &spans, limits: limits)
        let contentLength = fields.contentLength
        info.hostIndex = fields.hostIndex
        info.headLength = fields.end

        // ---- Framing (RFC 9112 §6)
        if fields.transferEncodingSeen {
            if contentLength >= 0 { throw .contentLengthWithTransferEncoding }
            if info.version == .http10 { throw .invalidTransferEncoding }
            // Chunked not final: the body's length cannot be determined (RFC 9112 §6.3).
            if !fields.lastCodingIsChunked { throw .invalidTransferEncoding }
            if fields.otherCodingSeen { throw .unsupportedTransferEncoding }
            info.bodyFraming = .chunked
        } else if contentLength > 0 {
            if contentLength > limits.maxBodyBytes { throw .bodyTooLarge }
            info.bodyFraming = .contentLength(contentLength)
        }

        // ---- Host (RFC 9112 §3.2)
        if fields.hostCount > 1 { throw .duplicateHost }
        if fields.hostCount == 0 && info.version == .http11 { throw .missingHost }

        // ---- Connection semantics (RFC 9112 §9.3)
        info.keepAlive = fields.keepAlive(version: info.version)
        if info.version == .http11 { info.expectContinue = fields.expectContinue }
        info.isUpgrade = fields.connectionUpgrade && fields.upgradeSeen
        return info
    }

    /// Validates the field lines of `p` from `start` to the empty line ending the
    /// head (a parser's storage: a complete head).
    @usableFromInline
    static func validateFields(
        _ p: UnsafeBufferPointer<UInt8>, from start: Int,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) throws(HTTPParseError) -> FieldSectionInfo {
        guard let base = p.baseAddress else { throw endsEarly }
        return try validateFields(HeadBytes(base, count: p.count), from: start, spans: &spans, limits: limits)
    }

    /// Validates the field lines from `start` to the empty line ending the head, records
    /// their spans, and notes the fields that frame the body and steer the connection;
    /// `end` is the index after the empty line.
    @usableFromInline
    static func validateFields(
        _ b: HeadBytes, from start: Int,
        spans: inout [FieldSpan],
        limits: HTTPLimits
    ) throws(HTTPParseError) -> FieldSectionInfo {
        var info = FieldSectionInfo()
        var i = start
        let p = b.buffer
        let base = b.base
        while true {
            let lineStart = i
            // The line's first byte that is no field-value byte: its CR, or a byte that
            // breaks a rule. Name, colon, OWS and value are field-value bytes, so every
            // loop below stops there at the latest.
            let stop = ByteSearch.firstNonFieldValue(base, i, b.count)
            guard stop < b.count else { throw endsEarly }
            if stop == lineStart && base[stop] == asciiCR { break }  // the empty line
            // field-name = token, then ":" (no whitespace before it, no obs-fold). A
            // well-known name up to the line's first colon is a token by construction;
            // any other name is checked byte by byte.
            let colon = ByteSearch.first(UInt8(ascii: ":"), base, lineStart, stop)
            let name = colon < stop ? WellKnownFieldName.of(base, lineStart, length: colon &- lineStart) : .other
            var nameEnd = colon
            if name == .other {
                nameEnd = ByteSearch.firstOutside(ByteClass.token, base, lineStart, stop)
                if base[nameEnd] != UInt8(ascii: ":") || nameEnd == lineStart {
                    if nameEnd == lineStart && isOWS(base[nameEnd]) { throw .obsFold }
                    if nameEnd > lineStart && isOWS(base[nameEnd]) { throw .whitespaceBeforeColon }
                    throw .invalidHeaderName
                }
            }
            i = nameEnd &+ 1
            while isOWS(base[i]) { i &+= 1 }
            let valueStart = i
            // The value runs to the line's CR LF.
            i = stop
            guard base[i] == asciiCR else { throw .invalidHeaderValue }
            guard b[i + 1] == asciiLF else { throw .bareCR }
            var valueEnd = i
            while valueEnd > valueStart && isOWS(base[valueEnd &- 1]) { valueEnd &-= 1 }
            i += 2
            spans.append(FieldSpan(nameStart: lineStart, nameEnd: nameEnd, valueStart: valueStart, valueEnd: valueEnd))
            if spans.count > limits.maxHeaderCount { throw .tooManyHeaders }

            switch name {
            case .host:
                info.hostCount += 1
                info.hostIndex = spans.count - 1
                if ByteSearch.firstOutside(ByteClass.authority, base, valueStart, valueEnd) < valueEnd {
                    throw .invalidHost
                }
            case .expect:
                if bytesEqualLowercased(p, valueStart, valueEnd, "100-continue") { info.expectContinue = true }
            case .upgrade:
                info.upgradeSeen = true
            case .connection:
                // The usual single-element values first (a value has no OWS at its ends).
                let length = valueEnd - valueStart
                if length == 10 && tokenEqualsLowercased(base, valueStart, "keep-alive") {
                    info.connectionKeepAlive = true
                } else if length == 5 && tokenEqualsLowercased(base, valueStart, "close") {
                    info.connectionClose = true
                } else {
                    forEachListElement(p, valueStart, valueEnd) { s, e in
                        if bytesEqualLowercased(p, s, e, "close") {
                            info.connectionClose = true
                        } else if bytesEqualLowercased(p, s, e, "keep-alive") {
                            info.connectionKeepAlive = true
                        } else if bytesEqualLowercased(p, s, e, "upgrade") {
                            info.connectionUpgrade = true
                        }
                    }
                }
            case .contentLength:
                if let error = parseContentLength(p, valueStart, valueEnd, &info.contentLength) { throw error }
            case .transferEncoding:
                info.transferEncodingSeen = true
                if let error = parseTransferEncoding(
                    p, valueStart, valueEnd, &info.chunkedCount, &info.lastCodingIsChunked, &info.otherCodingSeen)
                {
                    throw error
                }
            case .common, .other:
                break
            }
        }

        guard b[i + 1] == asciiLF else { throw .bareCR }
        info.end = i + 2
        return info
    }

    /// HTTP-version = "HTTP/" DIGIT "." DIGIT: the eight bytes at `v`, followed by the
    /// request line's CR. (A version of another length ends at another byte, which then
    /// is no CR, or holds a CR where a fixed byte should be: invalid either way.)
    static func classifyVersion(_ b: HeadBytes, _ v: Int, _ info: inout HeadInfo) -> HTTPParseError? {
        guard b[v + 8] == asciiCR,
            b[v] == UInt8(ascii: "H"), b[v + 1] == UInt8(ascii: "T"),
            b[v + 2] == UInt8(ascii: "T"), b[v + 3] == UInt8(ascii: "P"),
            b[v + 4] == UInt8(ascii: "/"), isDigit(b[v + 5]),
            b[v + 6] == UInt8(ascii: "."), isDigit(b[v + 7])
        else { return .invalidVersion }
        let major = b[v + 5] - UInt8(ascii: "0")
        let minor = b[v + 7] - UInt8(ascii: "0")
        // A higher minor version of HTTP/1 is answered as HTTP/1.1 (RFC 9110 §2.5);
        // other majors, and HTTP/0.x written with a version, are not HTTP/1.
        guard major == 1 else { return .unsupportedVersion }
        info.version = minor == 0 ? .http10 : .http11
        return nil
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
    /// `question` is the index of the target's first "?" (-1: none); `percentSeen`
    /// whether it holds a "%".
    static func classifyTarget(
        _ p: UnsafeBufferPointer<UInt8>, _ info: inout HeadInfo, question firstQuestion: Int, percentSeen: Bool
    ) -> HTTPParseError? {
        let start = info.targetStart
        let end = info.targetEnd

        // Percent-encoding must be %HH everywhere. The first "?" is never inside a %HH
        // (that is hex digits), nor in the scheme or authority of an absolute-form
        // target, so it is where the path of any form ends.
        if percentSeen {
            var k = start
            while k < end {
                if p[k] == UInt8(ascii: "%") {
                    guard k + 2 < end, hexValue(p[k + 1]) != nil, hexValue(p[k + 2]) != nil else { return .invalidTarget }
                    k += 3
                } else {
                    k += 1
                }
            }
        }
        let question = firstQuestion < 0 ? end : firstQuestion

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

extension FieldSectionInfo {
    /// Whether the connection stays open after the message (RFC 9112 §9.3): HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    func keepAlive(version: HTTPVersion) -> Bool {
        version == .http11 ? !connectionClose : connectionKeepAlive && !connectionClose
    }
}
