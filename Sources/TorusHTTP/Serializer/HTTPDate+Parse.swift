extension HTTPDate {
    /// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since the
    /// epoch; nil for anything else (obsolete formats are not accepted: a failed parse
    /// only means a conditional request is served in full). The year must be four
    /// digits (RFC 9110 §5.6.7): a longer one from a peer would overflow the arithmetic.
    public static func parse(_ value: String) -> Int? {
        let parts = value.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", parts[0].hasSuffix(","),
              parts[3].utf8.count == 4, parts[3].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let day = Int(parts[1]), let year = Int(parts[3]),
              let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
                .firstIndex(of: String(parts[2])) else { return nil }
        let time = parts[4].split(separator: ":")
        guard time.count == 3, let h = Int(time[0]), let m = Int(time[1]), let s = Int(time[2]),
              (1...31).contains(day), (0..<24).contains(h), (0..<60).contains(m), (0...60).contains(s)
        else { return nil }
        return daysFromCivil(year, month + 1, day) * 86400 + h * 3600 + m * 60 + s
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}
