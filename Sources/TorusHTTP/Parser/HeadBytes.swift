/// Bytes of a head, read with a bound: a read at or past `count` gives NUL.
///
/// The head validator reads through this view, so it can run over bytes nobody has
/// checked yet — the request parser's one-pass path hands it the input as received,
/// which may end anywhere, even in the middle of the head — without ever reading
/// outside them. NUL is accepted by no rule of a head (it is no token, target, OWS,
/// field-value, CR or LF byte), so a head cut short by `count` is simply not accepted:
/// every loop of the validator stops at the end, and what follows fails. Over a
/// complete head (a parser's storage, whose scanner saw it end in CRLF CRLF) the
/// validator never reaches the end, and the view reads like the buffer itself.
///
/// A borrowed pointer, valid only while its owner's buffer is; nothing is kept.
@usableFromInline
struct HeadBytes {
    @usableFromInline let base: UnsafePointer<UInt8>
    /// Readable bytes from `base` (never negative).
    @usableFromInline let count: Int

    @inline(__always) @usableFromInline
    init(_ base: UnsafePointer<UInt8>, count: Int) {
        self.base = base
        self.count = max(count, 0)
    }

    /// The byte at `i` (≥ 0), or NUL at or past the end.
    @inline(__always) @usableFromInline
    subscript(_ i: Int) -> UInt8 { i < count ? base[i] : 0 }

    /// The bytes as a buffer, for the helpers that take ranges already inside them.
    @inline(__always) @usableFromInline
    var buffer: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }
}
