// Character classes from RFC 9110 / RFC 3986: one 256-entry table (`ByteClass`), looked
// up once per byte, so every scanning loop of the codec is a load, a mask and a branch.

@usableFromInline let asciiCR: UInt8 = 0x0D
@usableFromInline let asciiLF: UInt8 = 0x0A
@usableFromInline let asciiSP: UInt8 = 0x20
@usableFromInline let asciiHTAB: UInt8 = 0x09

/// The classes of a byte, as bits of one table entry.
///
/// The table is a `StaticString` literal, so it lives in read-only data: no allocation and
/// no lazy global initialisation (no `swift_once`) on the hot path. Its 256 entries are all
/// below 0x80, so the literal is plain ASCII and each entry is exactly one UTF-8 byte
/// (`ByteClassTests` checks every entry against the grammar).
@usableFromInline
enum ByteClass {
    /// tchar (RFC 9110 §5.6.2).
    @usableFromInline static let token: UInt8 = 0x01
    /// field-vchar / SP / HTAB, including obs-text; not NUL, other CTLs or DEL.
    @usableFromInline static let fieldValue: UInt8 = 0x02
    /// Allowed in a request-target besides `%HH` (see ``isTargetChar(_:)``).
    @usableFromInline static let target: UInt8 = 0x04
    /// Allowed in a Host value / authority.
    @usableFromInline static let authority: UInt8 = 0x08
    /// OWS: SP or HTAB.
    @usableFromInline static let ows: UInt8 = 0x10
    /// A target byte other than `%` and `?`: what the request-target loop skips
    /// without a second look.
    @usableFromInline static let plainTarget: UInt8 = 0x20

    /// The table's bytes (256 entries, in read-only data for the life of the process).
    @inline(__always) @usableFromInline
    static var table: UnsafePointer<UInt8> { entries.utf8Start }

    /// The table as a literal: entry `b` is the class bits of byte `b`.
    @inline(__always) @usableFromInline
    static var entries: StaticString {
        """
        \u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{12}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\
        \u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\
        \u{12}\u{2F}\u{26}\u{3}\u{2F}\u{F}\u{2F}\u{2F}\u{2E}\u{2E}\u{2F}\u{2F}\u{2E}\u{2F}\u{2F}\u{26}\
        \u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2E}\u{2E}\u{26}\u{2E}\u{26}\u{6}\
        \u{26}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\
        \u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2E}\u{26}\u{2E}\u{27}\u{2F}\
        \u{27}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\
        \u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{2F}\u{26}\u{27}\u{26}\u{2F}\u{0}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\
        \u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}\u{2}
        """
    }

    /// The class bits of `b`.
    @inline(__always) @usableFromInline
    static func of(_ b: UInt8) -> UInt8 { table[Int(b)] }
}

/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
@inline(__always) @usableFromInline
func isTokenChar(_ b: UInt8) -> Bool { ByteClass.of(b) & ByteClass.token != 0 }

/// field-vchar / SP / HTAB, including obs-text (0x80–0xFF). Rejects NUL, other CTLs and DEL.
@inline(__always) @usableFromInline
func isFieldValueChar(_ b: UInt8) -> Bool { ByteClass.of(b) & ByteClass.fieldValue != 0 }

/// OWS: SP or HTAB.
@inline(__always) @usableFromInline
func isOWS(_ b: UInt8) -> Bool { ByteClass.of(b) & ByteClass.ows != 0 }

@inline(__always) @usableFromInline
func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(b &- UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(b &- UInt8(ascii: "a") &+ 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(b &- UInt8(ascii: "A") &+ 10)
    default: return nil
    }
}

@inline(__always) @usableFromInline
func asciiLower(_ b: UInt8) -> UInt8 {
    (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) ? b | 0x20 : b
}

@inline(__always) @usableFromInline
func isAlpha(_ b: UInt8) -> Bool {
    let l = b | 0x20
    return l >= UInt8(ascii: "a") && l <= UInt8(ascii: "z")
}

@inline(__always) @usableFromInline
func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

/// Characters allowed in a request-target besides `%HH`: unreserved, sub-delims, ":",
/// "@", "/", "?" — plus the commonly sent but technically unsafe `"<>\^`{|}[]`, which are
/// tolerated (routing decodes them). CTLs, SP, DEL, `#` and non-ASCII are rejected.
@inline(__always) @usableFromInline
func isTargetChar(_ b: UInt8) -> Bool { ByteClass.of(b) & ByteClass.target != 0 }

/// ``isTargetChar(_:)`` but not `%` or `?`.
@inline(__always) @usableFromInline
func isPlainTargetChar(_ b: UInt8) -> Bool { ByteClass.of(b) & ByteClass.plainTarget != 0 }

/// Characters allowed in a Host value / authority: unreserved, sub-delims, ":", "[", "]", "%".
@inline(__always) @usableFromInline
func isAuthorityChar(_ b: UInt8) -> Bool { ByteClass.of(b) & ByteClass.authority != 0 }

/// Case-insensitive comparison of raw bytes with an ASCII string whose letters are lowercase.
@inline(__always) @usableFromInline
func bytesEqualLowercased(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ lower: StaticString) -> Bool {
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
@inline(__always) @usableFromInline
func tokenEqualsLowercased(_ base: UnsafePointer<UInt8>, _ start: Int, _ lower: StaticString) -> Bool {
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
            && (n <= 16 || bytesFoldEqual(p + 8, s + 8, n - 16))
    }
    let fold: UInt32 = 0x2020_2020
    return p.loadUnaligned(as: UInt32.self) | fold == s.loadUnaligned(as: UInt32.self)
        && p.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self) | fold
            == s.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self)
}

/// The middle of a comparison longer than 16 bytes (`transfer-encoding`), byte by byte.
@inline(__always) @usableFromInline
func bytesFoldEqual(_ p: UnsafeRawPointer, _ s: UnsafeRawPointer, _ count: Int) -> Bool {
    var k = 0
    while k < count {
        if p.load(fromByteOffset: k, as: UInt8.self) | 0x20 != s.load(fromByteOffset: k, as: UInt8.self) { return false }
        k += 1
    }
    return true
}
