import CZlib

/// Decompresses incoming permessage-deflate messages (RFC 7692 7.2.2),
/// incrementally, with a hard output limit.
///
/// Feed the (unmasked) payload of the message's frames in pieces with
/// ``decompress(_:into:limit:)``, then call ``finishMessage(into:limit:)``,
/// which supplies the removed `00 00 ff ff` tail.
///
/// Memory: owns a heap-allocated zlib stream and its 32 KiB window; `deinit`
/// calls `inflateEnd` and frees it. Input is borrowed during a call only
/// (nothing is kept). Output is appended to the caller's array, which never
/// grows beyond `limit + 1` bytes: a "zip bomb" fails with 1009 after at most
/// that much memory.
///
/// The window is always 15 bits: a larger window than the peer's costs
/// nothing in correctness, so the negotiated `*_max_window_bits` of the peer
/// need not be known here.
///
/// Threading: not `Sendable`; confine to the connection's loop.
public final class PerMessageDeflateDecompressor {
    private let stream: UnsafeMutablePointer<z_stream>
    /// Reset after every message (the peer's `no_context_takeover`).
    public let noContextTakeover: Bool

    private static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]
    /// Source for extending the output array before zlib overwrites it.
    static let zeros = [UInt8](repeating: 0, count: 256 * 1024)

    /// A decompressor; traps when zlib refuses its stream (out of memory). Where that
    /// must not trap (a connection), use ``make(noContextTakeover:)``.
    public convenience init(noContextTakeover: Bool = false) {
        guard let stream = Self.openStream(windowBits: 15) else {
            // Not from input: connections use make(noContextTakeover:), which returns nil instead.
            preconditionFailure("zlib refused an inflate stream")
        }
        self.init(stream: stream, noContextTakeover: noContextTakeover)
    }

    /// A decompressor, or nil when zlib refuses its stream (out of memory): the
    /// connection then fails a compressed message with 1011 instead of trapping.
    public static func make(noContextTakeover: Bool = false) -> PerMessageDeflateDecompressor? {
        make(noContextTakeover: noContextTakeover, windowBits: 15)
    }

    /// `make` with the window zlib is asked for (tests ask for one it refuses).
    static func make(noContextTakeover: Bool, windowBits: Int32) -> PerMessageDeflateDecompressor? {
        openStream(windowBits: windowBits).map { PerMessageDeflateDecompressor(stream: $0, noContextTakeover: noContextTakeover) }
    }

    private init(stream: UnsafeMutablePointer<z_stream>, noContextTakeover: Bool) {
        self.stream = stream
        self.noContextTakeover = noContextTakeover
    }

    private static func openStream(windowBits: Int32) -> UnsafeMutablePointer<z_stream>? {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard torus_inflateInit2(stream, -windowBits) == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
        return stream
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Inflates a piece of a compressed message, appending to `output`.
    /// Throws 1009 if `output` would exceed `limit` bytes, 1007 on corrupt data.
    public func decompress(_ input: UnsafeRawBufferPointer, into output: inout [UInt8], limit: Int)
        throws(WebSocketProtocolError) {
        try run(input, into: &output, limit: limit)
    }

    /// Ends the message: inflates the implicit `00 00 ff ff` tail, then resets
    /// when the peer does not take context over.
    public func finishMessage(into output: inout [UInt8], limit: Int) throws(WebSocketProtocolError) {
        var failure: WebSocketProtocolError?
        PerMessageDeflateDecompressor.tail.withUnsafeBytes { t in
            do throws(WebSocketProtocolError) { try run(t, into: &output, limit: limit) } catch { failure = error }
        }
        if let failure { throw failure }
        if noContextTakeover { inflateReset(stream) }
    }

    /// Forgets any partial message (after an error, or to start over).
    public func reset() { inflateReset(stream) }

    /// Convenience: inflate one whole message.
    public func decompress(_ message: [UInt8], limit: Int) throws(WebSocketProtocolError) -> [UInt8] {
        var out: [UInt8] = []
        var failure: WebSocketProtocolError?
        message.withUnsafeBytes { m in
            do throws(WebSocketProtocolError) { try run(m, into: &out, limit: limit) } catch { failure = error }
        }
        if let failure { throw failure }
        try finishMessage(into: &out, limit: limit)
        return out
    }

    private func run(_ input: UnsafeRawBufferPointer, into output: inout [UInt8], limit: Int)
        throws(WebSocketProtocolError) {
        let z = stream
        z.pointee.next_in = input.baseAddress.map { UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: Bytef.self)) }
        z.pointee.avail_in = uInt(input.count)
        defer {
            z.pointee.next_in = nil
            z.pointee.avail_in = 0
            z.pointee.next_out = nil
            z.pointee.avail_out = 0
        }
        // One byte beyond the limit proves it was exceeded (no such byte beyond Int.max).
        let hardCap = limit < .max ? limit + 1 : limit
        loop: while true {
            let used = output.count
            if used > limit { throw .tooBig("decompressed message exceeds \(limit) bytes") }
            // Output space for this round: proportional to the input (so small
            // inputs do not zero-fill large areas), bounded, and never past the
            // hard cap. Capacity grows geometrically, also capped.
            let wanted = min(max(input.count * 4, 1024), PerMessageDeflateDecompressor.zeros.count)
            let room = min(max(wanted, output.capacity - used), PerMessageDeflateDecompressor.zeros.count, hardCap - used)
            if output.capacity < used + room {
                output.reserveCapacity(min(max(output.capacity * 2, used + room), hardCap))
            }
            let (rc, unused) = Self.step(z, into: &output, room: room) { inflate($0, Z_SYNC_FLUSH) }
            switch rc {
            case Z_OK:
                // Done when all input is in and zlib had room to spare.
                if z.pointee.avail_in == 0 && unused > 0 { break loop }
            case Z_STREAM_END:
                // The peer closed the deflate stream (a BFINAL block). Later
                // input starts a new stream without history.
                inflateReset(z)
                if z.pointee.avail_in == 0 { break loop }
            case Z_BUF_ERROR:
                // No progress possible: all input consumed and nothing pending.
                break loop
            default:
                inflateReset(z)
                throw .invalidPayload("invalid compressed data")
            }
        }
        if output.count > limit { throw .tooBig("decompressed message exceeds \(limit) bytes") }
    }

    /// One zlib step (inflate or deflate) with the next `room` bytes of `output` as
    /// its output window: grows `output` by that many zeroed bytes (contiguous: a
    /// memcpy from `zeros`), points `stream` at them, runs `zlib`, then trims what
    /// zlib left unused. Returns zlib's result and the unused count.
    static func step(_ stream: UnsafeMutablePointer<z_stream>, into output: inout [UInt8], room: Int,
                     _ zlib: (UnsafeMutablePointer<z_stream>) -> Int32) -> (rc: Int32, unused: Int) {
        let used = output.count
        output.append(contentsOf: zeros[..<room])
        let rc = output.withUnsafeMutableBytes { all -> Int32 in
            // Not from input: both callers pass room ≥ 1 (run: hardCap - used ≥ 1; compress: ≥ 64),
            // so `output` is not empty and has a base address.
            stream.pointee.next_out = all.baseAddress!.advanced(by: used).assumingMemoryBound(to: Bytef.self)
            stream.pointee.avail_out = uInt(room)
            return zlib(stream)
        }
        let unused = Int(stream.pointee.avail_out)
        output.removeLast(unused)
        return (rc, unused)
    }
}

@available(*, unavailable)
extension PerMessageDeflateDecompressor: Sendable {}
