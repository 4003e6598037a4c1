// Character classes from RFC 9110 / RFC 3986, as branch-only functions (no tables,
// so no lazy global initialisation on the hot path).

@usableFromInline let asciiCR: UInt8 = 0x0D
@usableFromInline let asciiLF: UInt8 = 0x0A
@usableFromInline let asciiSP: UInt8 = 0x20
@usableFromInline let asciiHTAB: UInt8 = 0x09

/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
@inline(__always) @usableFromInline
func isTokenChar(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
        UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
        UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// field-vchar / SP / HTAB, including obs-text (0x80–0xFF). Rejects NUL, other CTLs and DEL.
@inline(__always) @usableFromInline
func isFieldValueChar(_ b: UInt8) -> Bool {
    b == asciiHTAB || (b >= 0x20 && b != 0x7F)
}

@inline(__always) @usableFromInline
func isOWS(_ b: UInt8) -> Bool { b == asciiSP || b == asciiHTAB }

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
func isTargetChar(_ b: UInt8) -> Bool {
    b > 0x20 && b < 0x7F && b != UInt8(ascii: "#")
}

/// Characters allowed in a Host value / authority: unreserved, sub-delims, ":", "[", "]", "%".
@inline(__always) @usableFromInline
func isAuthorityChar(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"),
        UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("),
        UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"),
        UInt8(ascii: "="), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "%"):
        return true
    default:
        return false
    }
}

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
