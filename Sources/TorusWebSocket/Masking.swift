/// The 32-bit masking key of a client-to-server frame (RFC 6455 section 5.3).
///
/// A plain value: owns no memory, `Sendable`. ``rawValue`` holds the four key
/// bytes in network order (the first byte on the wire is the most significant).
public struct MaskingKey: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8) {
        rawValue = UInt32(b0) << 24 | UInt32(b1) << 16 | UInt32(b2) << 8 | UInt32(b3)
    }

    /// A fresh key from the given generator. RFC 6455 requires keys that the
    /// application cannot predict, so use a cryptographically strong one
    /// (`SystemRandomNumberGenerator` is).
    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> MaskingKey {
        MaskingKey(rawValue: UInt32.random(in: .min ... .max, using: &generator))
    }

    /// A fresh key from `SystemRandomNumberGenerator`.
    public static func random() -> MaskingKey {
        var g = SystemRandomNumberGenerator()
        return random(using: &g)
    }

    /// Key byte `i` (0...3) as it appears on the wire.
    @inline(__always)
    public func byte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: rawValue >> (24 - 8 * UInt32(i & 3))) }
}

/// XOR masking and unmasking (masking is an involution: the same call undoes it).
///
/// Works on caller-owned memory only and keeps nothing: the functions borrow
/// the buffers for the duration of the call. Bulk data is processed eight bytes
/// at a time with unaligned 64-bit loads and stores, so any buffer address works.
/// `offset` is the position of the first byte within the frame payload (only
/// `offset % 4` matters); each function returns the offset of the byte after the
/// last one processed, to pass to the next call for the same frame.
public enum Masking {
    /// The key's bytes starting at payload position `offset`, repeated to 8
    /// bytes, in memory order for an unaligned `UInt64` load/store.
    @inline(__always)
    static func mask64(_ key: MaskingKey, offset: Int) -> UInt64 {
        let shift = UInt32(offset & 3) * 8
        let rotated = shift == 0 ? key.rawValue : (key.rawValue << shift) | (key.rawValue >> (32 - shift))
        let memoryOrder = UInt64(rotated.bigEndian)
        return memoryOrder | memoryOrder << 32
    }

    /// Masks (or unmasks) `buffer` in place. Always inlined, like the copying form.
    @inline(__always)
    @discardableResult
    public static func apply(_ key: MaskingKey, to buffer: UnsafeMutableRawBufferPointer, offset: Int = 0) -> Int {
        apply(key, from: UnsafeRawBufferPointer(buffer), to: buffer, offset: offset)
    }

    /// Copies `source` into the start of `destination` while masking (or
    /// unmasking) it. `destination` must hold at least `source.count` bytes; the
    /// two must not overlap partially (identical is fine). Always inlined: its
    /// callers (a whole frame unmasked in place, a frame encoded) run once per
    /// message, where the call and the registers saved around it cost as much as
    /// masking a small payload.
    @inline(__always)
    @discardableResult
    public static func apply(_ key: MaskingKey, from source: UnsafeRawBufferPointer,
                             to destination: UnsafeMutableRawBufferPointer, offset: Int = 0) -> Int {
        // Not from input: the one caller, FrameEncoder.writeFrame, passes a destination of the
        // payload's size.
        precondition(destination.count >= source.count, "masking destination too small")
        guard let src = source.baseAddress, let dst = destination.baseAddress, source.count > 0 else { return offset }
        let count = source.count
        let m = mask64(key, offset: offset)
        var i = 0
        while i + 8 <= count {
            let v = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            dst.storeBytes(of: v ^ m, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            dst.storeBytes(of: src.load(fromByteOffset: i, as: UInt8.self) ^ key.byte(offset + i),
                           toByteOffset: i, as: UInt8.self)
            i += 1
        }
        return offset + count
    }

    /// Appends `source` to `output`, masked (or unmasked). Returns the offset after it.
    @discardableResult
    static func append(_ key: MaskingKey, _ source: UnsafeRawBufferPointer, to output: inout [UInt8],
                       offset: Int = 0) -> Int {
        let start = output.count
        output.append(contentsOf: source)
        return output.withUnsafeMutableBytes {
            apply(key, to: UnsafeMutableRawBufferPointer(rebasing: $0[start...]), offset: offset)
        }
    }

    /// Masks (or unmasks) `source`, which is not ours to modify, through a stack
    /// buffer of at most `pieceSize` bytes, handing each masked piece to `body` in
    /// order; stops when `body` returns false. Returns whether every piece was taken.
    @inline(__always)
    static func forEachPiece(_ key: MaskingKey, of source: UnsafeRawBufferPointer, offset: Int = 0,
                             pieceSize: Int, _ body: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: min(pieceSize, source.count), alignment: 8) { tmp -> Bool in
            var done = 0
            while done < source.count {
                let n = min(pieceSize, source.count - done)
                let piece = UnsafeMutableRawBufferPointer(rebasing: tmp[..<n])
                apply(key, from: UnsafeRawBufferPointer(rebasing: source[done ..< done + n]), to: piece,
                      offset: offset + done)
                guard body(UnsafeRawBufferPointer(piece)) else { return false }
                done += n
            }
            return true
        }
    }
}
