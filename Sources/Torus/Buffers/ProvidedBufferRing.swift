import CLiburing

/// The provided buffer ring that multishot receives fill (`IORING_REGISTER_PBUF_RING`).
///
/// Ownership: the ring owns one contiguous allocation of `count × size` bytes and the
/// mmap'ed ring of buffer descriptors. A buffer is in the *pool* while posted to the
/// ring (the kernel may pick it for any receive of the group), with the *application*
/// from the CQE that names it until the handler that saw the bytes returns, and then
/// is posted back (`recycle`). Posting is batched: `commit()` publishes every recycled
/// buffer with one store before the loop's next submit. An idle connection holds no
/// buffer at all.
///
/// liburing 2.3 has no `io_uring_setup_buf_ring`, so the ring is mapped and
/// registered by hand (`torus_setup_buf_ring` in the shim).
final class ProvidedBufferRing {
    let groupID: UInt16
    let count: Int
    let size: Int
    private let ring: Ring
    private let descriptors: UnsafeMutablePointer<io_uring_buf_ring>
    private let memory: UnsafeMutableRawPointer
    private let mask: Int32
    @exclusivity(unchecked) private var pendingAdds: Int32 = 0
    /// Buffers held by write queues (sent as they are, see `Connection.send(_: ReceivedBytes)`).
    @exclusivity(unchecked) var retained = 0
    private(set) var registered = true

    init(ring: Ring, groupID: UInt16, count: Int, size: Int) throws(IOError) {
        precondition(count > 0 && count & (count - 1) == 0 && count <= 32768, "buffer count must be a power of two ≤ 32768")
        self.ring = ring
        self.groupID = groupID
        self.count = count
        self.size = size
        var err: Int32 = 0
        guard let br = torus_setup_buf_ring(ring.raw, UInt32(count), Int32(groupID), &err) else {
            throw IOError(result: err, "io_uring_register_buf_ring")
        }
        descriptors = br
        memory = .allocate(byteCount: count * size, alignment: 4096)
        mask = io_uring_buf_ring_mask(UInt32(count))
        for bid in 0..<count {
            io_uring_buf_ring_add(br, memory + bid * size, UInt32(size), UInt16(bid), mask, Int32(bid))
        }
        io_uring_buf_ring_advance(br, Int32(count))
    }

    /// The bytes of buffer `bid`, `length` long.
    @inline(__always)
    func bytes(_ bid: UInt16, length: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: memory + Int(bid) * size, count: length)
    }

    /// Posts buffer `bid` back to the kernel (visible after `commit`).
    @inline(__always)
    func recycle(_ bid: UInt16) {
        io_uring_buf_ring_add(descriptors, memory + Int(bid) * size, UInt32(size), bid, mask, pendingAdds)
        pendingAdds += 1
    }

    /// Publishes every buffer recycled since the last commit.
    @inline(__always)
    func commit() {
        if pendingAdds > 0 {
            io_uring_buf_ring_advance(descriptors, pendingAdds)
            pendingAdds = 0
        }
    }

    /// Unregisters the ring from the kernel (at loop shutdown, with no receive in flight).
    func unregister() {
        guard registered else { return }
        registered = false
        _ = torus_free_buf_ring(ring.raw, descriptors, UInt32(count), Int32(groupID))
    }

    deinit {
        unregister()
        memory.deallocate()
    }
}
