/// Comparison of secrets (HMAC proofs, token hashes) whose time does not depend on
/// where the inputs first differ: every secret comparison in the hub goes through it.
public enum ConstantTime {
    /// True when `a` and `b` hold the same bytes. Runs over every byte of the longer
    /// input whatever the contents; only the lengths (which are public: proofs and
    /// hashes have a fixed size) may shorten it.
    public static func equals<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
        var difference: UInt8 = a.count == b.count ? 0 : 1
        var ia = a.startIndex
        var ib = b.startIndex
        for _ in 0..<max(a.count, b.count) {
            let x: UInt8 = ia != a.endIndex ? a[ia] : 0
            let y: UInt8 = ib != b.endIndex ? b[ib] : 0
            difference |= x ^ y
            if ia != a.endIndex { a.formIndex(after: &ia) }
            if ib != b.endIndex { b.formIndex(after: &ib) }
        }
        return difference == 0
    }
}
