/// Word-at-a-time (SWAR) searches over head bytes: eight bytes per step instead of one,
/// for the long runs of ordinary bytes in a head (field values, paths, the scanner's
/// search for the end of a line).
///
/// Each search loads unaligned 64-bit words only while all eight bytes lie inside the
/// range it was given (`from..<end`, which the caller guarantees is readable), finishes
/// byte by byte, and confirms every candidate byte it finds with an exact test, so the
/// bit tricks only ever make it skip bytes that certainly do not match. Plain functions
/// over borrowed pointers; nothing is kept. Indices stay within `from...end` (a
/// buffer's bounds), so their arithmetic wraps (`&+`) without ever overflowing: no
/// overflow checks in the loops.
@usableFromInline
enum ByteSearch {
    @usableFromInline static let ones: UInt64 = 0x0101_0101_0101_0101
    @usableFromInline static let highs: UInt64 = 0x8080_8080_8080_8080

    /// Nonzero iff some byte of `w` is below `n` (`n` ≤ 0x80); its lowest set bit marks the
    /// first such byte (higher bits may be false positives).
    @inline(__always) @usableFromInline
    static func bytesBelow(_ w: UInt64, _ n: UInt8) -> UInt64 {
        (w &- ones &* UInt64(n)) & ~w & highs
    }

    /// Nonzero iff some byte of `w` equals `b`.
    @inline(__always) @usableFromInline
    static func bytesEqual(_ w: UInt64, _ b: UInt8) -> UInt64 {
        bytesBelow(w ^ (ones &* UInt64(b)), 1)
    }

    @inline(__always) @usableFromInline
    static func word(_ base: UnsafePointer<UInt8>, _ at: Int) -> UInt64 {
        UInt64(littleEndian: UnsafeRawPointer(base + at).loadUnaligned(as: UInt64.self))
    }

    /// The index of the first CR or LF in `base[from..<end]`, or `end`.
    @inline(__always) @usableFromInline
    static func firstLineBreak(_ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i &+ 8 <= end {
            // CR (0x0D) and LF (0x0A) are below 0x0E; so are NUL…HTAB, VT and FF, rare in
            // a head. The lowest flagged byte is exact: a line break, or go on after it.
            let m = bytesBelow(word(base, i), 0x0E)
            if m == 0 {
                i &+= 8
                continue
            }
            let k = i &+ m.trailingZeroBitCount >> 3
            if base[k] == asciiCR || base[k] == asciiLF { return k }
            i = k &+ 1
        }
        while i < end {
            if base[i] == asciiCR || base[i] == asciiLF { return i }
            i &+= 1
        }
        return end
    }

    /// Flags the bytes of `w` below 0x20 (CTLs, HTAB, CR) or equal to DEL: `w - 0x20`
    /// and `(w ^ 0x7F) - 1` per byte, each masked with "high bit clear in `w`". Each
    /// mask's lowest flagged byte is exact (a borrow into a byte comes only from a
    /// flagged byte below it), so their union's is; higher flags may be false.
    @inline(__always) @usableFromInline
    static func nonFieldValueCandidates(_ w: UInt64) -> UInt64 {
        ((w &- ones &* 0x20) | ((w ^ (ones &* 0x7F)) &- ones)) & ~w & highs
    }

    /// The index of the first byte in `base[from..<end]` that is not a field-value byte
    /// (``isFieldValueChar(_:)``: the CR ending a value, or an invalid byte), or `end`.
    ///
    /// Sixteen bytes a step while they last (field lines are long: a User-Agent, an
    /// Accept list, cookies), then eight, then one. A flagged HTAB is a value byte: the
    /// search goes on after it.
    @inline(__always) @usableFromInline
    static func firstNonFieldValue(_ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i &+ 16 <= end {
            let m0 = nonFieldValueCandidates(word(base, i))
            let m1 = nonFieldValueCandidates(word(base, i &+ 8))
            if m0 | m1 == 0 {
                i &+= 16
                continue
            }
            let k = m0 != 0 ? i &+ m0.trailingZeroBitCount >> 3 : i &+ 8 &+ m1.trailingZeroBitCount >> 3
            if base[k] != asciiHTAB { return k }
            i = k &+ 1
        }
        while i &+ 8 <= end {
            let m = nonFieldValueCandidates(word(base, i))
            if m == 0 {
                i &+= 8
                continue
            }
            let k = i &+ m.trailingZeroBitCount >> 3
            if base[k] != asciiHTAB { return k }
            i = k &+ 1
        }
        while i < end {
            if !isFieldValueChar(base[i]) { return i }
            i &+= 1
        }
        return end
    }

    /// The index of the first byte equal to `byte` in `base[from..<end]`, or `end`.
    @inline(__always) @usableFromInline
    static func first(_ byte: UInt8, _ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        var i = from
        while i &+ 8 <= end {
            // The lowest flagged byte is exact.
            let m = bytesEqual(word(base, i), byte)
            if m != 0 { return i &+ m.trailingZeroBitCount >> 3 }
            i &+= 8
        }
        while i < end && base[i] != byte { i &+= 1 }
        return i
    }

    /// The index of the first byte in `base[from..<end]` whose class bits (``ByteClass``)
    /// lack `cls`, a single class bit, or `end`. Four bytes a step while they last — the
    /// AND of their class bits has `cls` only if all four have it — then one.
    @inline(__always) @usableFromInline
    static func firstOutside(_ cls: UInt8, _ base: UnsafePointer<UInt8>, _ from: Int, _ end: Int) -> Int {
        let table = ByteClass.table
        var i = from
        while i &+ 4 <= end {
            let all = table[Int(base[i])] & table[Int(base[i &+ 1])] & table[Int(base[i &+ 2])] & table[Int(base[i &+ 3])]
            if all & cls == 0 { break }
            i &+= 4
        }
        while i < end && table[Int(base[i])] & cls != 0 { i &+= 1 }
        return i
    }
}
