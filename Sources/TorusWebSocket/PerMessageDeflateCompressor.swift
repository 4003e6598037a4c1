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

    public init(windowBits: Int = 15, noContextTakeover: Bool = false, level: Int32 = -1, memoryLevel: Int32 = 8) {
        precondition((8...15).contains(windowBits))
        self.windowBits = windowBits
        self.noContextTakeover = noContextTakeover
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let zlibBits = Int32(max(windowBits, 9))
        var rc = torus_deflateInit2(stream, level, -zlibBits, memoryLevel)
        precondition(rc == Z_OK, "deflateInit2 failed: \(rc)")
        if windowBits == 8 {
            rc = deflateParams(stream, level, Z_RLE)
            precondition(rc == Z_OK, "deflateParams failed: \(rc)")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Compresses one whole message and appends the payload to send (with
    /// RSV1 set on its first frame) to `output`.
    public func compress(_ message: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let start = output.count
        stream.pointee.next_in = message.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
        stream.pointee.avail_in = uInt(message.count)
        while true {
            let zeros = PerMessageDeflateDecompressor.zeros
            let room = min(max(64, message.count / 2 + 64), zeros.count)
            let used = output.count
            output.append(contentsOf: zeros[..<room])  // contiguous: a memcpy
            let rc = output.withUnsafeMutableBytes { all -> Int32 in
                stream.pointee.next_out = all.baseAddress!.advanced(by: used).assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = uInt(room)
                return deflate(stream, Z_SYNC_FLUSH)
            }
            let unused = Int(stream.pointee.avail_out)
            output.removeLast(unused)
            precondition(rc == Z_OK || rc == Z_BUF_ERROR, "deflate failed: \(rc)")
            if stream.pointee.avail_in == 0 && unused > 0 { break }
        }
        stream.pointee.next_in = nil
        stream.pointee.next_out = nil
        // A sync flush always ends with an empty stored block: 00 00 ff ff.
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
