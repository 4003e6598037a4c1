import CZlib

/// Compresses outgoing messages for permessage-deflate (RFC 7692 7.2.1):
/// raw DEFLATE, each message ended with a sync flush whose trailing
/// `00 00 ff ff` is removed.
///
/// Memory: owns a heap-allocated zlib stream (zlib requires a fixed address)
/// and its window; `deinit` calls `deflateEnd` and frees it, deterministically
/// when the last reference goes. Input is borrowed during ``compress(_:into:)``
/// only; output is appended to the caller's array.
///
/// Threading: not `Sendable`; confine to the connection's loop.
///
/// Window bits 8: zlib refuses `windowBits` 8 for raw deflate (and for the
/// zlib format it silently uses 9). When the negotiated window is 8, this
/// compressor runs zlib with 9 *and* the `Z_RLE` strategy, which only emits
/// matches at distance 1, so the output never refers further back than the
/// 256-byte window the peer allowed. Compression of such messages is weaker.
public final class PerMessageDeflateCompressor {
    private let stream: UnsafeMutablePointer<z_stream>
    /// Reset after every message (our side's `no_context_takeover`).
    public let noContextTakeover: Bool
    /// The window the peer allows us (8...15).
    public let windowBits: Int

    /// A compressor; traps when zlib refuses its stream (out of memory, or a `level` or
    /// `memoryLevel` zlib does not accept). Where that must not trap (a connection),
    /// use ``make(windowBits:noContextTakeover:level:memoryLevel:)``.
    public convenience init(windowBits: Int = 15, noContextTakeover: Bool = false, level: Int32 = -1,
                            memoryLevel: Int32 = 8) {
        guard let stream = Self.openStream(windowBits: windowBits, level: level, memoryLevel: memoryLevel) else {
            // Not from input: connections use make(...), which returns nil (they then send uncompressed).
            preconditionFailure("zlib refused a deflate stream (level \(level), memory level \(memoryLevel))")
        }
        self.init(stream: stream, windowBits: windowBits, noContextTakeover: noContextTakeover)
    }

    /// A compressor, or nil when zlib refuses its stream (out of memory, or a `level`
    /// or `memoryLevel` it does not accept): the caller then sends uncompressed,
    /// which RFC 7692 allows for any message.
    public static func make(windowBits: Int = 15, noContextTakeover: Bool = false, level: Int32 = -1,
                            memoryLevel: Int32 = 8) -> PerMessageDeflateCompressor? {
        openStream(windowBits: windowBits, level: level, memoryLevel: memoryLevel).map {
            PerMessageDeflateCompressor(stream: $0, windowBits: windowBits, noContextTakeover: noContextTakeover)
        }
    }

    private init(stream: UnsafeMutablePointer<z_stream>, windowBits: Int, noContextTakeover: Bool) {
        self.stream = stream
        self.windowBits = windowBits
        self.noContextTakeover = noContextTakeover
    }

    /// A raw-deflate stream for `windowBits` (8...15, the negotiation's range), or nil
    /// when zlib refuses it (nothing is left allocated then).
    private static func openStream(windowBits: Int, level: Int32, memoryLevel: Int32) -> UnsafeMutablePointer<z_stream>? {
        // Not from input: a peer's window bits are parsed into 8...15 or refused
        // (PerMessageDeflateNegotiation); other values are the application's.
        precondition((8...15).contains(windowBits), "window bits \(windowBits) outside 8...15")
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let zlibBits = Int32(max(windowBits, 9))
        var rc = torus_deflateInit2(stream, level, -zlibBits, memoryLevel)
        if rc == Z_OK && windowBits == 8 {
            rc = deflateParams(stream, level, Z_RLE)
            if rc != Z_OK { deflateEnd(stream) }
        }
        guard rc == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
        return stream
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Compresses one whole message and appends the payload to send (with
    /// RSV1 set on its first frame) to `output`.
    public func compress(_ message: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        if message.isEmpty {
            // zlib makes no progress on a sync flush right after another one (Z_BUF_ERROR,
            // no output), so an empty message after any other would have no 00 00 ff ff to
            // strip. Send the empty stored block whose tail is removed: 0x00 (RFC 7692 7.2.3.6).
            output.append(0)
            if noContextTakeover { deflateReset(stream) }
            return
        }
        let start = output.count
        stream.pointee.next_in = message.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
        stream.pointee.avail_in = uInt(message.count)
        while true {
            let room = min(max(64, message.count / 2 + 64), PerMessageDeflateDecompressor.zeros.count)
            let (rc, unused) = PerMessageDeflateDecompressor.step(stream, into: &output, room: room) {
                deflate($0, Z_SYNC_FLUSH)
            }
            // Not from input: deflate on a valid stream with output room accepts any bytes;
            // an error here is zlib's state corrupted, not the message.
            precondition(rc == Z_OK || rc == Z_BUF_ERROR, "deflate failed: \(rc)")
            if stream.pointee.avail_in == 0 && unused > 0 { break }
        }
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        // Not from input: a sync flush always ends with an empty stored block, 00 00 ff ff,
        // whatever the message's bytes.
        precondition(output.count - start >= 4 && Array(output[(output.count - 4)...]) == [0, 0, 0xFF, 0xFF])
        output.removeLast(4)
        if output.count == start { output.append(0) }  // never empty: an empty stored block marker
        if noContextTakeover { deflateReset(stream) }
    }

    /// Compresses one whole message.
    public func compress(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        message.withUnsafeBytes { compress($0, into: &out) }
        return out
    }
}

@available(*, unavailable)
extension PerMessageDeflateCompressor: Sendable {}
