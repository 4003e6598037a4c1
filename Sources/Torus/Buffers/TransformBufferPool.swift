/// The loop's pool of buffers that a connection transform (TLS) fills with the bytes
/// it hands to a handler, borrowed for one `received` call
/// (`Connection.withTransformBuffer`). Counted in the ledger as
/// ``BufferPoolKind/tlsPlaintext``: each loan moves a buffer from the pool to the
/// application and back. Deliveries nest only when a handler's call makes another
/// delivery, so the pool stays at one or two buffers; it grows on demand and frees
/// its buffers with the loop.
///
/// Ownership: owns every buffer it made. Threading: loop thread only.
final class TransformBufferPool {
    /// Bytes per buffer: one TLS record's largest plaintext.
    static let bufferSize = 16 * 1024
    private let ledger: Ledger
    // Loop thread only and never accessed overlapping: taken and given on every TLS
    // receive, so Swift's dynamic exclusivity checks are skipped.
    @exclusivity(unchecked) private var free: [UnsafeMutableRawPointer] = []
    @exclusivity(unchecked) private var made: [UnsafeMutableRawPointer] = []

    init(ledger: Ledger) {
        self.ledger = ledger
    }

    deinit {
        for buffer in made { buffer.deallocate() }
    }

    /// A buffer for the application (the connection on `fd`).
    func take(for fd: Int32) -> UnsafeMutableRawBufferPointer {
        if free.isEmpty {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.bufferSize, alignment: 16)
            made.append(buffer)
            free.append(buffer)
            ledger.buffersAdded(.tlsPlaintext, count: 1, bytes: Self.bufferSize)
        }
        let base = free.removeLast()
        ledger.move(.tlsPlaintext, from: .pool, to: .application, key: key(of: base), holder: BufferHolder("transform delivery on fd", Int(fd)))
        return UnsafeMutableRawBufferPointer(start: base, count: Self.bufferSize)
    }

    /// The application is done with `buffer`.
    func give(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        ledger.move(.tlsPlaintext, from: .application, to: .pool, key: key(of: base), holder: .none)
        free.append(base)
    }

    private func key(of base: UnsafeMutableRawPointer) -> Int {
        made.firstIndex(of: base) ?? -1
    }
}
