extension Array where Element == UInt8 {
    /// Appends the ASCII decimal representation of a non-negative integer without allocating.
    @inlinable
    mutating func appendDecimal(_ value: Int) {
        // Not from input: callers pass status codes (HTTPTypes keeps them in 0...999)
        // and byte counts or range lengths, which are never negative.
        precondition(value >= 0)
        var divisor = 1
        while divisor <= value / 10 { divisor *= 10 }
        while divisor > 0 {
            append(UInt8(truncatingIfNeeded: 48 + (value / divisor) % 10))
            divisor /= 10
        }
    }

    /// Appends the lowercase hexadecimal representation of a non-negative integer.
    @inlinable
    mutating func appendHex(_ value: Int) {
        // Not from input: the only caller is ChunkFraming.writeHeader (a chunk's size > 0).
        precondition(value >= 0)
        let hex: StaticString = "0123456789abcdef"
        var shift = (Int.bitWidth - value.leadingZeroBitCount + 3) / 4 * 4 - 4
        if shift < 0 { shift = 0 }
        while shift >= 0 {
            append(hex.utf8Start[(value >> shift) & 0xF])
            shift -= 4
        }
    }

    /// Appends `source[range]` as one copy through its buffer: no `ArraySlice` (which
    /// retains and releases `source`'s storage and appends through the generic
    /// sequence path). `range` must lie within `source`.
    @inlinable
    mutating func appendBytes(of source: [UInt8], _ range: Range<Int>) {
        source.withUnsafeBufferPointer { all in
            append(contentsOf: UnsafeBufferPointer(rebasing: all[range]))
        }
    }

    @inlinable
    mutating func appendStatic(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
}
