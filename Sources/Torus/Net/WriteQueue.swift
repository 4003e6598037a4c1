import CLiburing
import Glibc

/// Where a write queue's memory comes from and goes back to: the loop's outbound
/// pool (chunks) and its provided receive rings (received buffers sent as they are).
/// Each call also records the move in the loop's ledger. Tests give the queue a fake.
protocol WriteQueueMemory: AnyObject {
    /// Bytes in one outbound chunk.
    var writeChunkSize: Int { get }
    /// Takes a chunk for the queue of `fd`; nil when the pool is exhausted.
    func takeWriteChunk(for fd: Int32) -> Int32?
    func writeChunkBase(_ chunk: Int32) -> UnsafeMutableRawPointer
    /// Gives back a chunk the queue held (sent, or dropped on close).
    func giveWriteChunk(_ chunk: Int32)
    /// The kernel reads the chunk (a send was submitted) / is done with it.
    func lendWriteChunk(_ chunk: Int32, fd: Int32)
    func reclaimWriteChunk(_ chunk: Int32, fd: Int32)
    /// The same for a provided receive buffer the queue holds (`key`: group << 16 | bid).
    func lendReceived(_ key: Int32, fd: Int32)
    func reclaimReceived(_ key: Int32, fd: Int32)
    /// Gives back a receive buffer the queue held: it returns to its ring.
    func releaseKeptReceived(_ key: Int32)
    /// A `msghdr` whose `msg_iov` holds `WriteQueue.maxIOV` iovecs, valid until the
    /// SQE that uses it has gone to the kernel; nil when none is free right now.
    func takeSendMessage() -> UnsafeMutablePointer<msghdr>?
    /// Storage for a queue's entries, taken at its first entry and given back when it
    /// drains (an idle queue holds none).
    func takeEntryBlock() -> WriteQueueEntry.Block
    func giveEntryBlock(_ block: WriteQueueEntry.Block)
}

/// One run of a write queue's bytes: a pooled chunk (a copy), a `SharedBytes`
/// reference (broadcast), or a provided receive buffer (an echo's), from `start` to
/// `end` of `base`.
struct WriteQueueEntry {
    /// Storage for a queue's entries, from the loop's pool.
    typealias Block = RingStoragePool<WriteQueueEntry>.Block

    var base: UnsafeRawPointer
    var start: Int
    var end: Int
    /// A pooled chunk, or -1.
    var chunk: Int32 = -1
    /// A provided receive buffer sent as is (group << 16 | bid), or -1.
    var received: Int32 = -1
    var shared: SharedBytes?
    /// Inside the send in flight (the ledger has it with the kernel).
    var lent = false

    var length: Int { end - start }
}

/// What `WriteQueue.gather` prepared for the kernel.
enum GatheredSend {
    /// Nothing queued.
    case nothing
    /// One entry: a plain `send` of these bytes (no msghdr/iovec copy-in).
    case single(UnsafeMutableRawPointer, Int)
    /// Several entries: a `sendmsg` of this message.
    case message(UnsafeMutablePointer<msghdr>)
}

/// A connection's outbound bytes, in order, until the kernel has sent them.
///
/// Entries are pooled chunks (copies), `SharedBytes` references (broadcast), or
/// provided receive buffers (an echo sends the buffer it received). `gather` turns
/// the front of the queue into one send: a plain `send` for a single entry, else a
/// `sendmsg` over up to 64 iovecs; the gathered entries are the kernel's (lent, in
/// the ledger) until `sendCompleted`, which consumes what was sent, partial sends
/// included. `queuedBytes` is always the sum of the entries' lengths; the high and
/// low water marks turn it into `isAboveHighWater`.
///
/// The msghdr/iovec scratch of a `sendmsg` is the loop's (`SendMessageArena`): the
/// kernel copies it when it consumes the SQE, so an idle queue holds none of it.
/// When the arena is out of slots, the front entry goes alone as a plain `send`.
///
/// Generic over its memory rather than holding an existential: a connection's queue
/// is a `WriteQueue<EventLoop>`, whose calls into the loop's pools are direct (and
/// inlined) and whose reference to the loop is one word, not two; the tests give it a
/// fake.
///
/// Ownership: the queue owns its entries; `~Copyable`, so one connection alone
/// releases them. Loop thread only.
struct WriteQueue<Memory: WriteQueueMemory>: ~Copyable {
    typealias Entry = WriteQueueEntry

    static var maxIOV: Int { SendMessageArena.iovecsPerSlot }

    // Stored widest first, the water marks as 32 bits: every idle connection holds
    // one queue inline, so each padding byte counts (see `Connection`'s layout).
    let memory: Memory
    /// Without a block while empty (see `WriteQueueMemory.takeEntryBlock`).
    private var entries = RingBuffer<Entry>(unallocated: ())
    /// Bytes queued and not yet acknowledged by a send completion.
    private(set) var queuedBytes = 0
    /// The front entries inside the send in flight (0: no send in flight).
    private(set) var inFlight = 0
    private let highWaterMark: UInt32
    private let lowWaterMark: UInt32
    /// The connection's fd, naming the holder of lent buffers in debug ledgers.
    let fd: Int32
    /// Set when `queuedBytes` passed the high water mark; cleared when a send
    /// brings it down to the low water mark.
    private(set) var isAboveHighWater = false

    var highWater: Int { Int(highWaterMark) }
    var lowWater: Int { Int(lowWaterMark) }

    /// Water marks above 4 GiB are taken as 4 GiB.
    init(memory: Memory, fd: Int32, highWater: Int, lowWater: Int) {
        self.memory = memory
        self.fd = fd
        highWaterMark = UInt32(clamping: highWater)
        lowWaterMark = UInt32(clamping: lowWater)
    }

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    /// True while the queue holds entry storage (only while it has entries).
    var holdsStorage: Bool { entries.hasStorage }

    @inline(__always)
    private mutating func appendEntry(_ e: Entry) {
        if !entries.hasStorage { adoptBlock() }
        entries.append(e)
    }

    @inline(never)
    private mutating func adoptBlock() {
        let b = memory.takeEntryBlock()
        entries.adopt(b.block, capacity: b.capacity)
    }

    /// A drained queue gives its entry storage back to the loop.
    @inline(__always)
    private mutating func surrenderIfEmpty() {
        if entries.isEmpty, let b = entries.surrender() { memory.giveEntryBlock(b) }
    }

    // MARK: Appending

    /// Copies `bytes` into the tail chunk and fresh chunks. False when the pool ran
    /// out: what was copied so far stays queued (the caller closes, which drops it).
    @inline(__always)
    mutating func append(copying bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 0, var src = bytes.baseAddress else { return true }
        var remaining = bytes.count
        let chunkSize = memory.writeChunkSize
        if let tail = tailSpace(), tail.count > 0 {
            let n = Swift.min(remaining, tail.count)
            // Not from input: tail.count > 0, so the tail has a base address.
            tail.baseAddress.unsafelyUnwrapped.copyMemory(from: src, byteCount: n)
            extendTail(by: n)
            src += n
            remaining -= n
        }
        while remaining > 0 {
            guard let chunk = memory.takeWriteChunk(for: fd) else { return false }
            let base = memory.writeChunkBase(chunk)
            let n = Swift.min(remaining, chunkSize)
            base.copyMemory(from: src, byteCount: n)
            append(chunk: chunk, base: base, count: n)
            src += n
            remaining -= n
        }
        return true
    }

    /// The free bytes after the tail entry when it is a chunk (an encoder may write
    /// there and then `extendTail`), or nil. A chunk inside the send in flight may
    /// still grow: the kernel reads only what was gathered.
    @inline(__always)
    func tailSpace() -> UnsafeMutableRawBufferPointer? {
        guard entries.count > 0 else { return nil }
        let last = entries.count - 1
        guard entries[last].chunk >= 0 else { return nil }
        let end = entries[last].end
        let free = memory.writeChunkSize - end
        guard free > 0 else { return nil }
        return UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: entries[last].base + end),
                                             count: free)
    }

    /// Counts `n` bytes written into `tailSpace()` as queued.
    @inline(__always)
    mutating func extendTail(by n: Int) {
        guard n > 0 else { return }
        entries[entries.count - 1].end += n
        added(n)
    }

    /// Queues a chunk the caller filled; the queue gives it back once sent.
    @inline(__always)
    mutating func append(chunk: Int32, base: UnsafeMutableRawPointer, count: Int) {
        appendEntry(Entry(base: UnsafeRawPointer(base), start: 0, end: count, chunk: chunk))
        added(count)
    }

    /// Queues a reference to shared bytes (no copy).
    mutating func append(shared: SharedBytes) {
        guard shared.count > 0 else { return }
        appendEntry(Entry(base: shared.baseAddress, start: 0, end: shared.count, shared: shared))
        added(shared.count)
    }

    /// Queues a provided receive buffer the caller kept (`releaseKeptReceived` once sent).
    @inline(__always)
    mutating func append(received key: Int32, base: UnsafeRawPointer, count: Int) {
        appendEntry(Entry(base: base, start: 0, end: count, received: key))
        added(count)
    }

    @inline(__always)
    private mutating func added(_ n: Int) {
        queuedBytes += n
        if queuedBytes > highWater { isAboveHighWater = true }
    }

    // MARK: Sending

    /// Prepares the front of the queue (up to 64 entries) for one send and lends its
    /// buffers to the kernel. Only with no send in flight. Several entries take a
    /// message slot from the loop; with none free, the front entry goes alone.
    @inline(__always)
    mutating func gather() -> GatheredSend {
        // Not from input: internal invariant; the connection gathers only when its last send completed.
        precondition(inFlight == 0, "one send in flight at a time")
        guard !entries.isEmpty else { return .nothing }
        var n = Swift.min(entries.count, Self.maxIOV)
        let msg: UnsafeMutablePointer<msghdr>?
        if n > 1, let m = memory.takeSendMessage() {
            msg = m
        } else {
            msg = nil
            n = 1
        }
        // Plain while loops on hot paths: unspecialised Range iteration allocates in
        // debug builds, and the allocation check runs in debug too.
        var i = 0
        while i < n {
            if let msg {
                let start = entries[i].start
                msg.pointee.msg_iov[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: entries[i].base + start),
                                               iov_len: entries[i].end - start)
            }
            if !entries[i].lent {
                let chunk = entries[i].chunk
                let received = entries[i].received
                if chunk >= 0 {
                    memory.lendWriteChunk(chunk, fd: fd)
                    entries[i].lent = true
                } else if received >= 0 {
                    memory.lendReceived(received, fd: fd)
                    entries[i].lent = true
                }
            }
            i += 1
        }
        inFlight = n
        guard let msg else {
            let start = entries[0].start
            return .single(UnsafeMutableRawPointer(mutating: entries[0].base + start), entries[0].end - start)
        }
        msg.pointee.msg_iovlen = n
        return .message(msg)
    }

    /// The send in flight completed having sent `sent` bytes (0 for a failed or
    /// abandoned send): the kernel gives back what it held, and what was sent leaves
    /// the queue. True when this brought the queue from above the high water mark
    /// down to the low water mark (the producer may go on).
    @inline(__always)
    mutating func sendCompleted(sent: Int) -> Bool {
        var i = 0
        let lentCount = Swift.min(inFlight, entries.count)
        while i < lentCount {
            if entries[i].lent {
                if entries[i].chunk >= 0 {
                    memory.reclaimWriteChunk(entries[i].chunk, fd: fd)
                } else {
                    memory.reclaimReceived(entries[i].received, fd: fd)
                }
                entries[i].lent = false
            }
            i += 1
        }
        inFlight = 0
        if sent > 0 { consume(sent) }
        if isAboveHighWater && queuedBytes <= lowWater {
            isAboveHighWater = false
            return true
        }
        return false
    }

    /// Drops `count` sent bytes from the front: whole entries go back, a partly sent
    /// one keeps its unsent tail.
    @inline(__always)
    private mutating func consume(_ count: Int) {
        var n = count
        queuedBytes -= n
        while n > 0, entries.count > 0 {
            let len = entries[0].length
            if n >= len {
                n -= len
                if let e = entries.popFirst() { release(e) }
            } else {
                entries[0].start += n
                n = 0
            }
        }
        surrenderIfEmpty()
    }

    /// Drops every entry the kernel does not hold (close path); the entries of a send
    /// in flight stay until `sendCompleted`, then a second call drops them.
    mutating func releaseAll() {
        while entries.count > inFlight {
            if let e = entries.popLast() {
                queuedBytes -= e.length
                release(e)
            }
        }
        surrenderIfEmpty()
    }

    /// Gives back what a dequeued entry held (a pooled chunk or a receive buffer).
    @inline(__always)
    private func release(_ e: Entry) {
        if e.chunk >= 0 {
            memory.giveWriteChunk(e.chunk)
        } else if e.received >= 0 {
            memory.releaseKeptReceived(e.received)
        }
    }
}

extension EventLoop: WriteQueueMemory {

    @inline(__always)
    func takeWriteChunk(for fd: Int32) -> Int32? {
        outbound.take(holder: BufferHolder("write queue of fd", Int(fd)))
    }

    @inline(__always)
    func writeChunkBase(_ chunk: Int32) -> UnsafeMutableRawPointer { outbound.base(chunk) }

    @inline(__always)
    func giveWriteChunk(_ chunk: Int32) { outbound.give(chunk) }

    @inline(__always)
    func lendWriteChunk(_ chunk: Int32, fd: Int32) {
        outbound.lend(chunk, holder: BufferHolder("sendmsg on fd", Int(fd)))
    }

    @inline(__always)
    func reclaimWriteChunk(_ chunk: Int32, fd: Int32) {
        outbound.reclaim(chunk, holder: BufferHolder("write queue of fd", Int(fd)))
    }

    @inline(__always)
    func lendReceived(_ key: Int32, fd: Int32) { lendReceivedBuffer(key, fd: fd) }

    @inline(__always)
    func reclaimReceived(_ key: Int32, fd: Int32) { reclaimReceivedBuffer(key, fd: fd) }

    @inline(__always)
    func releaseKeptReceived(_ key: Int32) { releaseKeptReceivedBuffer(key) }

    @inline(__always)
    func takeSendMessage() -> UnsafeMutablePointer<msghdr>? {
        assertInLoop()
        return sendMessages.take()
    }

    @inline(__always)
    func takeEntryBlock() -> WriteQueueEntry.Block {
        assertInLoop()
        return writeEntryBlocks.take()
    }

    @inline(__always)
    func giveEntryBlock(_ block: WriteQueueEntry.Block) {
        assertInLoop()
        writeEntryBlocks.give(block)
    }
}
