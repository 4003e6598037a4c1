extension Array where Element == UInt8 {
    /// Appends the ASCII decimal representation of a non-negative integer without allocating.
    @inlinable
    mutating func appendDecimal(_ value: Int) {
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
        precondition(value >= 0)
        let hex: StaticString = "0123456789abcdef"
        var shift = (Int.bitWidth - value.leadingZeroBitCount + 3) / 4 * 4 - 4
        if shift < 0 { shift = 0 }
        while shift >= 0 {
            append(hex.utf8Start[(value >> shift) & 0xF])
            shift -= 4
        }
    }

    @inlinable
    mutating func appendStatic(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
}
