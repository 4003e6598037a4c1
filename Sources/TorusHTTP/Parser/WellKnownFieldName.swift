/// The field names the head validator recognises with one word comparison, instead of
/// testing their bytes one by one: those whose values it interprets (Host, the framing
/// and connection fields, Expect, Upgrade) and those nearly every request carries.
///
/// A name matched here is a valid field name (letters and "-"), so its bytes need no
/// other check. Plain value.
enum WellKnownFieldName: Sendable {
    case host, connection, contentLength, transferEncoding, expect, upgrade
    /// A common name the validator gives no meaning (Accept, User-Agent, Cookie, …).
    case common
    /// Not a well-known name: its bytes are checked one by one.
    case other

    /// Which well-known name the `length` bytes at `base + start` spell, ignoring ASCII
    /// case, or `.other`. The bytes must be field-value bytes (every byte of a field
    /// line before its first non-field-value byte is), for which
    /// ``tokenEqualsLowercased(_:_:_:)`` compares exactly.
    static func of(_ base: UnsafePointer<UInt8>, _ start: Int, length: Int) -> WellKnownFieldName {
        @inline(__always) func spells(_ name: StaticString) -> Bool { tokenEqualsLowercased(base, start, name) }
        switch length {
        case 4:
            return spells("host") ? .host : .other
        case 6:
            return spells("accept") || spells("cookie") || spells("origin") ? .common : spells("expect") ? .expect : .other
        case 7:
            return spells("referer") ? .common : spells("upgrade") ? .upgrade : .other
        case 10:
            return spells("connection") ? .connection : spells("user-agent") ? .common : .other
        case 12:
            return spells("content-type") ? .common : .other
        case 13:
            return spells("cache-control") || spells("authorization") || spells("if-none-match") ? .common : .other
        case 14:
            if spells("content-length") { return .contentLength }
            return spells("sec-fetch-dest") || spells("sec-fetch-mode") || spells("sec-fetch-site")
                || spells("sec-fetch-user") ? .common : .other
        case 15:
            return spells("accept-encoding") || spells("accept-language") ? .common : .other
        case 17:
            return spells("transfer-encoding") ? .transferEncoding : spells("if-modified-since") ? .common : .other
        case 25:
            return spells("upgrade-insecure-requests") ? .common : .other
        default:
            return .other
        }
    }
}
