@testable import TorusHTTP

// Test-only copy of the old `ByteSearch.swift` (see LegacyRequestParser.swift).

/// Word-at-a-time (SWAR) searches over head bytes: eight bytes per step instead of one,
/// for the long runs of ordinary bytes in a head (field values, paths, the scanner's
/// search for the end of a line).
///
/// Each search loads unaligned 64-bit words only while all eight bytes lie inside the
/// range it was given (`from..<end`, which the caller guarantees is readable), finishes
/// byte by byte, and confirms every candidate byte it finds with an exact test, so the
/// bit tricks only ever make it skip bytes that certainly do not match. Plain functions
/// over borrowed pointers; nothing is kept.
enum LegacyByteSearch {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highs: UInt64 = 0x8080_8080_8080_8080

    /// Nonzero iff some byte of `w` is below `n` (`n` ≤ 0x80); its lowest set bit marks the
    /// first such byte (higher bits may be false positives).
    static func bytesBelow(_ w: UInt64, _ n: UInt8) -> UInt64 {
        (w &- ones &* UInt64(n)) & ~w & highs
    }

    /// Nonzero iff some byte of `w` equals `b`.
    static func bytesEqual(_ w: UInt64, _ b: UInt8) -> UInt64 {
        bytesBelow(w ^ (ones &* UInt64(b)), 1)
    }

    static func word(_ base: UnsafePointer<UInt8>, _ at: Int) -> UInt64 {
        UInt64(littleEndian: UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self))
    }

    /// The index of the first CR or LF in `base[from..<end]`, or `end`.
    static func firstLineBreak(_ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i + 8 <= end {
            // CR (0x0D) and LF (0x0A) are below 0x0E; so are NUL…HTAB, VT and FF, rare in
            // a head. The lowest flagged byte is exact: a line break, or go on after it.
            let m = bytesBelow(word(base, i), 0x0E)
            if m == 0 {
                i += 8
                continue
            }
            let k = i + m.trailingZeroBitCount >> 3
            if base[k] == asciiCR || base[k] == asciiLF { return k }
            i = k + 1
        }
        while i < end {
            if base[i] == asciiCR || base[i] == asciiLF { return i }
            i += 1
        }
        return end
    }

    /// The index of the first byte in `base[from..<end]` that is not a field-value byte
    /// (``isFieldValueChar(_:)``: the CR ending a value, or an invalid byte), or `end`.
    static func firstNonFieldValue(_ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i + 8 <= end {
            // Bytes below 0x20 (CTLs, HTAB, CR) or DEL are candidates; the lowest flagged
            // byte is exact (each mask's is, so their union's is): HTAB is a value byte,
            // any other ends the value.
            let w = word(base, i)
            let m = bytesBelow(w, 0x20) | bytesEqual(w, 0x7F)
            if m == 0 {
                i += 8
                continue
            }
            let k = i + m.trailingZeroBitCount >> 3
            if base[k] != asciiHTAB { return k }
            i = k + 1
        }
        while i < end {
            if !isFieldValueChar(base[i]) { return i }
            i += 1
        }
        return end
    }
}
