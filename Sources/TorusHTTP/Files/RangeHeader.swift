/// Outcome of evaluating a `Range` header against a representation size.
public enum ByteRangeResult: Sendable, Hashable {
    /// No usable Range (absent, malformed, other unit, several ranges, or an empty
    /// file with a suffix range): send the full representation with 200.
    case full
    /// Send 206 with these bytes (half-open) and `Content-Range: bytes a-b/size`.
    case partial(Range<Int>)
    /// Send 416 with `Content-Range: bytes */size`.
    case unsatisfiable
}

/// `Range: bytes=…` parsing (RFC 9110 §14.1–14.2) for a single range. Stateless.
///
/// Supported: `bytes=a-b` (b clamped to size-1), `bytes=a-`, `bytes=-n` (last n bytes,
/// the whole file when n ≥ size). A first-pos ≥ size or `-0` is unsatisfiable (416).
/// Syntactically invalid values, `b < a`, units other than `bytes` and multi-range
/// requests are ignored (→ ``ByteRangeResult/full``) as the RFC permits.
public enum RangeHeader {
    /// Evaluates a Range header value against `fileSize`; `nil` → ``ByteRangeResult/full``.
    public static func evaluate(_ value: String?, fileSize: Int) -> ByteRangeResult {
        guard var value else { return .full }
        return value.withUTF8 { evaluate(UnsafeRawBufferPointer($0), fileSize: fileSize) }
    }

    /// Evaluates raw header value bytes (e.g. from ``RequestHead/withHeaderValue(named:_:)``).
    public static func evaluate(_ value: UnsafeRawBufferPointer, fileSize: Int) -> ByteRangeResult {
        let p = value
        var i = 0
        var end = p.count
        while i < end && isOWS(p[i]) { i += 1 }
        while end > i && isOWS(p[end - 1]) { end -= 1 }
        guard end - i >= 6,
            asciiLower(p[i]) == UInt8(ascii: "b"), asciiLower(p[i + 1]) == UInt8(ascii: "y"),
            asciiLower(p[i + 2]) == UInt8(ascii: "t"), asciiLower(p[i + 3]) == UInt8(ascii: "e"),
            asciiLower(p[i + 4]) == UInt8(ascii: "s"), p[i + 5] == UInt8(ascii: "=")
        else { return .full }
        i += 6

        // Exactly one non-empty list element.
        var specStart = -1
        var specEnd = -1
        var elements = 0
        p.withMemoryRebound(to: UInt8.self) { bytes in
            HeadValidator.forEachListElement(bytes, i, end) { a, b in
                elements += 1
                specStart = a
                specEnd = b
            }
        }
        // Multiple ranges are not supported: ignored (the whole file is sent).
        guard elements == 1 else { return .full }

        // Saturating decimal parse of p[from..<to]; nil when empty or non-digit.
        func number(_ from: Int, _ to: Int) -> Int? {
            guard to > from else { return nil }
            var v = 0
            for k in from..<to {
                guard isDigit(p[k]) else { return nil }
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (n, o2) = m.addingReportingOverflow(Int(p[k] - UInt8(ascii: "0")))
                v = (o1 || o2) ? Int.max : n
            }
            return v
        }

        var dash = specStart
        while dash < specEnd && p[dash] != UInt8(ascii: "-") { dash += 1 }
        guard dash < specEnd else { return .full }

        if dash == specStart {
            guard let suffix = number(dash + 1, specEnd) else { return .full }
            if suffix == 0 { return .unsatisfiable }
            if fileSize == 0 { return .full }
            return .partial(max(0, fileSize - suffix)..<fileSize)
        }
        guard let first = number(specStart, dash) else { return .full }
        let last: Int?
        if dash + 1 == specEnd {
            last = nil
        } else {
            guard let l = number(dash + 1, specEnd) else { return .full }
            guard l >= first else { return .full }
            last = l
        }
        guard first < fileSize else { return .unsatisfiable }
        let upper = last.map { min($0, fileSize - 1) + 1 } ?? fileSize
        return .partial(first..<upper)
    }

    /// `Content-Range` value for a 206: `bytes first-last/size`.
    public static func contentRange(_ range: Range<Int>, fileSize: Int) -> String {
        "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(fileSize)"
    }

    /// `Content-Range` value for a 416: `bytes */size`.
    public static func unsatisfiedContentRange(fileSize: Int) -> String {
        "bytes */\(fileSize)"
    }
}
