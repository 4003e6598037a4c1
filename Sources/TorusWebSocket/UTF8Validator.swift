/// Incremental UTF-8 validator (RFC 3629), a deterministic finite automaton in
/// the style of Bjoern Hoehrmann's decoder.
///
/// It rejects at the *first* byte that cannot start or continue a well-formed
/// sequence: overlong forms (C0, C1, E0 80..9F, F0 80..8F), UTF-16 surrogates
/// (ED A0..BF), code points above U+10FFFF (F4 90.., F5..FF) and stray
/// continuation bytes. Input can arrive in any number of pieces (a sequence may
/// straddle fragments or receive buffers); ``finish()`` reports a sequence
/// left truncated at the end of a message.
///
/// Memory: owns one byte of state; borrows the input only during ``validate(_:)-(UnsafeRawBufferPointer)``.
/// A value type; use one per message stream.
public struct UTF8Validator: Sendable, Hashable {
    @usableFromInline
    typealias State = UInt8

    // States. `accept` must be 0, `reject` is absorbing.
    @usableFromInline static let accept: State = 0
    static let need1: State = 1   // one continuation byte 80..BF left
    static let need2: State = 2   // two continuation bytes left
    static let need3: State = 3   // three continuation bytes left
    static let afterE0: State = 4 // next must be A0..BF (no overlong 3-byte)
    static let afterED: State = 5 // next must be 80..9F (no surrogates)
    static let afterF0: State = 6 // next must be 90..BF (no overlong 4-byte)
    static let afterF4: State = 7 // next must be 80..8F (<= U+10FFFF)
    @usableFromInline static let reject: State = 8
    static let stateCount = 9

    /// transitions[state << 8 | byte] -> next state.
    static let transitions: [State] = {
        var t = [State](repeating: reject, count: stateCount * 256)
        func set(_ s: State, _ bytes: ClosedRange<Int>, _ next: State) {
            for b in bytes { t[Int(s) << 8 | b] = next }
        }
        set(accept, 0x00...0x7F, accept)
        set(accept, 0xC2...0xDF, need1)
        set(accept, 0xE0...0xE0, afterE0)
        set(accept, 0xE1...0xEC, need2)
        set(accept, 0xED...0xED, afterED)
        set(accept, 0xEE...0xEF, need2)
        set(accept, 0xF0...0xF0, afterF0)
        set(accept, 0xF1...0xF3, need3)
        set(accept, 0xF4...0xF4, afterF4)
        set(need1, 0x80...0xBF, accept)
        set(need2, 0x80...0xBF, need1)
        set(need3, 0x80...0xBF, need2)
        set(afterE0, 0xA0...0xBF, need1)
        set(afterED, 0x80...0x9F, need1)
        set(afterF0, 0x90...0xBF, need2)
        set(afterF4, 0x80...0x8F, need2)
        return t
    }()

    @usableFromInline var state: State = UTF8Validator.accept

    public init() {}

    /// False once an invalid byte has been seen (it stays false until ``reset()``).
    public var isValid: Bool { state != UTF8Validator.reject }

    /// True when the input so far is valid and ends on a character boundary.
    public var isComplete: Bool { state == UTF8Validator.accept }

    /// Feeds more bytes. Returns `false` as soon as the input so far is not a
    /// prefix of valid UTF-8 (and stops looking at the rest of `bytes`).
    @discardableResult
    public mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var s = state
        guard s != UTF8Validator.reject else { return false }
        guard let base = bytes.baseAddress else { return true }
        let count = bytes.count
        var i = 0
        if s == UTF8Validator.accept {
            // Pure ASCII (the common case) never touches the table.
            i = UTF8Validator.asciiPrefix(base, count)
            if i == count { return true }
        }
        UTF8Validator.transitions.withUnsafeBufferPointer { table in
            while i < count {
                if s == UTF8Validator.accept {
                    // Between characters: skip the ASCII run.
                    i += UTF8Validator.asciiPrefix(base + i, count - i)
                    if i == count { break }
                }
                s = table[Int(s) << 8 | Int(base.load(fromByteOffset: i, as: UInt8.self))]
                if s == UTF8Validator.reject { break }
                i += 1
            }
        }
        state = s
        return s != UTF8Validator.reject
    }

    /// The length of the ASCII run at the start of `base` (8 bytes at a time).
    @inline(__always)
    static func asciiPrefix(_ base: UnsafeRawPointer, _ count: Int) -> Int {
        var i = 0
        while i + 8 <= count, base.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
            i += 8
        }
        while i < count, base.load(fromByteOffset: i, as: UInt8.self) < 0x80 {
            i += 1
        }
        return i
    }

    /// Feeds more bytes from any contiguous byte collection.
    @discardableResult
    public mutating func validate(_ bytes: some Sequence<UInt8>) -> Bool {
        if let r = bytes.withContiguousStorageIfAvailable({ validate(UnsafeRawBufferPointer($0)) }) { return r }
        return validate(Array(bytes))
    }

    /// Ends the current message: returns whether everything fed since the last
    /// reset was valid *and* complete, then resets for the next message.
    public mutating func finish() -> Bool {
        let ok = state == UTF8Validator.accept
        state = UTF8Validator.accept
        return ok
    }

    /// Forgets everything, ready for a new message.
    public mutating func reset() { state = UTF8Validator.accept }

    /// One-shot check of a complete byte sequence. Inlined: a pure ASCII sequence
    /// (the common case, such as a small text message checked in place) is settled
    /// by the ASCII scan alone, with no call and no state.
    @inline(__always)
    public static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let ascii = asciiPrefix(base, bytes.count)
        if ascii == bytes.count { return true }
        var v = UTF8Validator()
        return v.validate(UnsafeRawBufferPointer(rebasing: bytes[ascii...])) && v.isComplete
    }
}
