import CLiburing

/// The loop's side of its provided receive buffers, for the owners that use them: a
/// buffer is named by a key (group << 16 | bid); each hand-over is recorded in the
/// ledger here, so a connection never touches the rings or the ledger itself.
/// Loop thread only.
extension EventLoop {
    @inline(__always)
    static func receiveKey(group: UInt16, bid: UInt16) -> Int32 { Int32(group) << 16 | Int32(bid) }

    /// Runs `body` on the ring of buffer `key`, borrowed rather than retained: the
    /// loop's `receiveRings` keeps every ring for the loop's life (rings are only ever
    /// appended), and these calls change no ring list. Reading the array element
    /// otherwise cost an atomic retain and release on every buffer taken and returned.
    @inline(__always)
    private func withRing<R>(of key: Int32, _ body: (ProvidedBufferRing) -> R) -> R {
        Unmanaged.passUnretained(receiveRings[Int(UInt16(truncatingIfNeeded: key >> 16))])._withUnsafeGuaranteedRef(body)
    }

    /// The group new receives select from (the caller counts its receive as armed on
    /// it: `ProvidedBufferRing.armedReceives`).
    var receiveGroup: UInt16 { receiveBuffers.groupID }

    /// Hands the filled buffer `key` to the application: its first `length` bytes.
    @inline(__always)
    func takeReceivedBuffer(_ key: Int32, length: Int, fd: Int32) -> UnsafeMutableRawBufferPointer {
        ledger.move(.received, from: .pool, to: .application, key: Int(key), holder: BufferHolder("recv on fd", Int(fd)))
        let bid = UInt16(truncatingIfNeeded: key & 0xFFFF)
        return withRing(of: key) { ring in
            ring.consumed(bid)
            return ring.bytes(bid, length: length)
        }
    }

    /// The application is done with buffer `key`: back to its ring.
    @inline(__always)
    func returnReceivedBuffer(_ key: Int32) {
        ledger.move(.received, from: .application, to: .pool, key: Int(key), holder: .none)
        withRing(of: key) { $0.recycle(UInt16(truncatingIfNeeded: key & 0xFFFF)) }
    }

    /// Posts back a buffer a completion consumed but nobody was handed (a receive that
    /// completed while its connection was closing).
    @inline(__always)
    func recycleUnusedReceivedBuffer(_ key: Int32) {
        let bid = UInt16(truncatingIfNeeded: key & 0xFFFF)
        withRing(of: key) { ring in
            ring.consumed(bid)
            ring.recycle(bid)
        }
    }

    /// A write queue keeps buffer `key` (to send it as is). False, keeping nothing,
    /// when more than half its ring is already held that way (the caller copies).
    @inline(__always)
    func keepReceivedBuffer(_ key: Int32) -> Bool {
        withRing(of: key) { ring in
            guard ring.retained * 2 < ring.count else { return false }
            ring.retained += 1
            return true
        }
    }

    /// A kept buffer is sent or dropped: back to its ring.
    @inline(__always)
    func releaseKeptReceivedBuffer(_ key: Int32) {
        withRing(of: key) { $0.retained -= 1 }
        returnReceivedBuffer(key)
    }

    @inline(__always)
    func lendReceivedBuffer(_ key: Int32, fd: Int32) {
        ledger.move(.received, from: .application, to: .kernel, key: Int(key), holder: BufferHolder("sendmsg on fd", Int(fd)))
    }

    @inline(__always)
    func reclaimReceivedBuffer(_ key: Int32, fd: Int32) {
        ledger.move(.received, from: .kernel, to: .application, key: Int(key), holder: BufferHolder("write queue of fd", Int(fd)))
    }
}
