import Glibc
import Testing
@testable import Torus

/// A write queue's memory without a loop or a socket: chunks from a plain block, and
/// a record of every hand-over (to the kernel and back, back to the pool or ring).
final class FakeWriteMemory: WriteQueueMemory {
    let writeChunkSize: Int
    let chunkCount: Int
    private let block: UnsafeMutableRawPointer
    private var free: [Int32]
    var lentChunks: Set<Int32> = []
    var lentReceived: Set<Int32> = []
    var releasedReceived: [Int32] = []

    init(chunkSize: Int = 16, chunks: Int = 8) {
        writeChunkSize = chunkSize
        chunkCount = chunks
        block = .allocate(byteCount: chunkSize * chunks, alignment: 16)
        free = (0..<Int32(chunks)).reversed().map { $0 }
    }

    deinit { block.deallocate() }

    var chunksOut: Int { chunkCount - free.count }

    func takeWriteChunk(for fd: Int32) -> Int32? { free.popLast() }
    func writeChunkBase(_ chunk: Int32) -> UnsafeMutableRawPointer { block + Int(chunk) * writeChunkSize }
    func giveWriteChunk(_ chunk: Int32) {
        precondition(!lentChunks.contains(chunk), "gave back a chunk the kernel holds")
        precondition(!free.contains(chunk), "gave back a chunk twice")
        free.append(chunk)
    }
    func lendWriteChunk(_ chunk: Int32, fd: Int32) { lentChunks.insert(chunk) }
    func reclaimWriteChunk(_ chunk: Int32, fd: Int32) {
        precondition(lentChunks.remove(chunk) != nil, "reclaimed a chunk never lent")
    }
    func lendReceived(_ key: Int32, fd: Int32) { lentReceived.insert(key) }
    func reclaimReceived(_ key: Int32, fd: Int32) {
        precondition(lentReceived.remove(key) != nil, "reclaimed a buffer never lent")
    }
    func releaseKeptReceived(_ key: Int32) {
        precondition(!lentReceived.contains(key), "released a buffer the kernel holds")
        releasedReceived.append(key)
    }

    /// One message slot, reused by each gather (a test has one send in flight at a
    /// time); false: the loop's arena is out of slots this turn.
    var messageSlotsFree = true
    private var arena = SendMessageArena(slots: 1)
    func takeSendMessage() -> UnsafeMutablePointer<msghdr>? {
        guard messageSlotsFree else { return nil }
        arena.reclaimAll()
        return arena.take()
    }

    private var blocks = RingStoragePool<WriteQueueEntry>(maxSpare: 0)
    /// Entry blocks out with queues.
    var entryBlocksOut = 0
    func takeEntryBlock() -> WriteQueueEntry.Block {
        entryBlocksOut += 1
        return blocks.take()
    }
    func giveEntryBlock(_ block: WriteQueueEntry.Block) {
        entryBlocksOut -= 1
        blocks.give(block)
    }
}

/// A copy of what a test checks (a noncopyable queue cannot go into `#expect`).
struct QueueState {
    let count: Int
    let queuedBytes: Int
    let isEmpty: Bool
    let isAboveHighWater: Bool

    init(_ queue: borrowing WriteQueue<FakeWriteMemory>) {
        count = queue.count
        queuedBytes = queue.queuedBytes
        isEmpty = queue.isEmpty
        isAboveHighWater = queue.isAboveHighWater
    }
}

/// The bytes a gathered send would put on the wire.
func wireBytes(_ gathered: GatheredSend) -> [UInt8] {
    switch gathered {
    case .nothing:
        return []
    case .single(let base, let count):
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    case .message(let msg):
        var out: [UInt8] = []
        for i in 0..<Int(msg.pointee.msg_iovlen) {
            let v = msg.pointee.msg_iov[i]
            out += UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len)
        }
        return out
    }
}

@Suite("Write queue (no socket)")
struct WriteQueueTests {
    func bytes(_ n: Int, from start: UInt8 = 0) -> [UInt8] { (0..<n).map { start &+ UInt8(truncatingIfNeeded: $0) } }

    @Test("copies fill the tail chunk before taking a new one; one entry gathers as a plain send")
    func copiesAndSingle() {
        let memory = FakeWriteMemory(chunkSize: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 1000, lowWater: 100)
        let appended1 = bytes(10).withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended1)
        do {
            let s = QueueState(queue)
            #expect(s.count == 1 && s.queuedBytes == 10 && memory.chunksOut == 1)
        }
        let g = queue.gather()
        guard case .single = g else { Issue.record("one entry must gather as a plain send"); return }
        #expect(wireBytes(g) == bytes(10))
        #expect(memory.lentChunks.count == 1, "the chunk is the kernel's during the send")
        // Appending into the tail chunk while it is in flight: the kernel reads only
        // what was gathered.
        let appended2 = bytes(4, from: 10).withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended2)
        do {
            let s = QueueState(queue)
            #expect(s.count == 1 && s.queuedBytes == 14)
        }
        _ = queue.sendCompleted(sent: 10)
        #expect(memory.lentChunks.isEmpty)
        do {
            let s = QueueState(queue)
            #expect(s.queuedBytes == 4 && s.count == 1)
        }
        let wire1 = wireBytes(queue.gather())
        #expect(wire1 == bytes(4, from: 10))
        _ = queue.sendCompleted(sent: 4)
        do {
            let s = QueueState(queue)
            #expect(s.isEmpty && s.queuedBytes == 0 && memory.chunksOut == 0)
        }
    }

    @Test("with no message slot free, the front entry goes alone as a plain send, then the rest")
    func noMessageSlot() {
        let memory = FakeWriteMemory(chunkSize: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 1000, lowWater: 100)
        let payload = bytes(40)
        let appended = payload.withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended)
        memory.messageSlotsFree = false
        let g = queue.gather()
        guard case .single = g else { Issue.record("no slot: the front entry must go alone"); return }
        #expect(wireBytes(g) == Array(payload[..<16]))
        #expect(memory.lentChunks.count == 1, "only the gathered entry is the kernel's")
        _ = queue.sendCompleted(sent: 16)
        memory.messageSlotsFree = true
        let rest = queue.gather()
        guard case .message = rest else { Issue.record("a slot again: sendmsg"); return }
        #expect(wireBytes(rest) == Array(payload[16...]))
        _ = queue.sendCompleted(sent: 24)
        #expect(QueueState(queue).isEmpty && memory.chunksOut == 0)
    }

    @Test("an idle queue holds no entry storage: taken with the first entry, given back when drained or released")
    func entryStorageOnlyWhileBusy() {
        let memory = FakeWriteMemory(chunkSize: 16, chunks: 64)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 10_000, lowWater: 100)
        #expect(!queue.holdsStorage && memory.entryBlocksOut == 0)
        // More entries than one block holds: the block grows and still goes back.
        let shared = (0..<20).map { SharedBytes(bytes(2, from: UInt8($0 * 2))) }
        for s in shared { queue.append(shared: s) }
        #expect(queue.holdsStorage && memory.entryBlocksOut == 1)
        let g = queue.gather()
        #expect(wireBytes(g) == bytes(40))
        _ = queue.sendCompleted(sent: 40)
        #expect(!queue.holdsStorage && memory.entryBlocksOut == 0)
        // The close path: entries dropped unsent give the storage back too.
        let appended = bytes(30).withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended && memory.entryBlocksOut == 1)
        queue.releaseAll()
        #expect(!queue.holdsStorage && memory.entryBlocksOut == 0 && memory.chunksOut == 0)
    }

    @Test("a partial send across entries keeps the unsent tail, in order")
    func partialAcrossEntries() {
        let memory = FakeWriteMemory(chunkSize: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 1000, lowWater: 100)
        let payload = bytes(40)
        let appended3 = payload.withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended3)
        do {
            let s = QueueState(queue)
            #expect(s.count == 3 && memory.chunksOut == 3)
        }
        let g = queue.gather()
        guard case .message = g else { Issue.record("several entries gather as sendmsg"); return }
        #expect(wireBytes(g) == payload)
        _ = queue.sendCompleted(sent: 21)  // the first chunk and 5 bytes of the second
        do {
            let s = QueueState(queue)
            #expect(memory.chunksOut == 2 && s.queuedBytes == 19 && memory.lentChunks.isEmpty)
        }
        let wire2 = wireBytes(queue.gather())
        #expect(wire2 == Array(payload[21...]))
        _ = queue.sendCompleted(sent: 0)
        let wire3 = wireBytes(queue.gather())
        #expect(wire3 == Array(payload[21...]), "a zero-byte send consumes nothing")
        _ = queue.sendCompleted(sent: 19)
        do {
            let s = QueueState(queue)
            #expect(s.isEmpty && memory.chunksOut == 0)
        }
    }

    @Test("shared bytes and received buffers are queued by reference and released once sent")
    func sharedAndReceived() {
        let memory = FakeWriteMemory(chunkSize: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 1000, lowWater: 100)
        let shared = SharedBytes(bytes(8, from: 100))
        let received = bytes(6, from: 200)
        received.withUnsafeBytes { raw in
            queue.append(shared: shared)
            queue.append(received: 7 << 16 | 5, base: raw.baseAddress!, count: raw.count)
            let appended4 = bytes(3, from: 50).withUnsafeBytes { queue.append(copying: $0) }
            #expect(appended4)
            do {
                let s = QueueState(queue)
                #expect(s.count == 3 && s.queuedBytes == 17)
            }
            let g = queue.gather()
            #expect(wireBytes(g) == bytes(8, from: 100) + received + bytes(3, from: 50))
            #expect(memory.lentReceived == [7 << 16 | 5] && memory.lentChunks.count == 1)
            _ = queue.sendCompleted(sent: 10)  // the shared bytes and 2 of the received
            #expect(memory.releasedReceived.isEmpty, "a partly sent buffer stays queued")
            let wire4 = wireBytes(queue.gather())
            #expect(wire4 == Array(received[2...]) + bytes(3, from: 50))
            _ = queue.sendCompleted(sent: 7)
            #expect(memory.releasedReceived == [7 << 16 | 5])
            do {
                let s = QueueState(queue)
                #expect(s.isEmpty && memory.chunksOut == 0)
            }
        }
    }

    @Test("high and low water: above after passing the high mark, writable again at the low mark")
    func waterMarks() {
        let memory = FakeWriteMemory(chunkSize: 16, chunks: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 40, lowWater: 10)
        let appended5 = bytes(40).withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended5)
        do {
            let s = QueueState(queue)
            #expect(!s.isAboveHighWater, "at the mark is not above it")
        }
        let appended6 = bytes(1).withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended6)
        do {
            let s = QueueState(queue)
            #expect(s.isAboveHighWater)
        }
        _ = queue.gather()
        let crossed20 = queue.sendCompleted(sent: 20)
        #expect(crossed20 == false, "21 queued is still above the low mark")
        do {
            let s = QueueState(queue)
            #expect(s.isAboveHighWater)
        }
        _ = queue.gather()
        let crossed11 = queue.sendCompleted(sent: 11)
        #expect(crossed11 == true, "10 queued: writable again, reported once")
        do {
            let s = QueueState(queue)
            #expect(!s.isAboveHighWater)
        }
        _ = queue.gather()
        let crossed10 = queue.sendCompleted(sent: 10)
        #expect(crossed10 == false)
        do {
            let s = QueueState(queue)
            #expect(s.isEmpty)
        }
    }

    @Test("close: what the kernel does not hold is released at once, the in-flight entries after their completion")
    func releaseOnClose() {
        let memory = FakeWriteMemory(chunkSize: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 1000, lowWater: 100)
        let appended7 = bytes(20).withUnsafeBytes { queue.append(copying: $0) }
        #expect(appended7)
        _ = queue.gather()  // both chunks in flight
        #expect(bytes(20).withUnsafeBytes { queue.append(copying: $0) })  // tail grows, one more chunk
        do {
            let s = QueueState(queue)
            #expect(memory.chunksOut == 3 && s.count == 3)
        }
        queue.releaseAll()
        do {
            let s = QueueState(queue)
            #expect(s.count == 2 && memory.chunksOut == 2, "the in-flight chunks stay with the kernel")
        }
        _ = queue.sendCompleted(sent: 0)
        queue.releaseAll()
        do {
            let s = QueueState(queue)
            #expect(s.isEmpty && s.queuedBytes == 0 && memory.chunksOut == 0)
        }
    }

    @Test("an exhausted pool: append reports it, and what was copied is released on close")
    func exhaustedPool() {
        let memory = FakeWriteMemory(chunkSize: 16, chunks: 2)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 1000, lowWater: 100)
        let appended8 = bytes(40).withUnsafeBytes { queue.append(copying: $0) }
        #expect(!appended8)
        do {
            let s = QueueState(queue)
            #expect(s.queuedBytes == 32, "queuedBytes is the sum of the entries")
        }
        queue.releaseAll()
        do {
            let s = QueueState(queue)
            #expect(s.isEmpty && memory.chunksOut == 0)
        }
    }

    @Test("more than 64 entries gather 64 at a time")
    func iovLimit() {
        let memory = FakeWriteMemory(chunkSize: 16)
        var queue = WriteQueue(memory: memory, fd: 3, highWater: 10_000, lowWater: 100)
        let shared = (0..<100).map { SharedBytes(bytes(2, from: UInt8($0 * 2))) }
        for s in shared { queue.append(shared: s) }
        let first = wireBytes(queue.gather())
        #expect(first.count == 128)
        _ = queue.sendCompleted(sent: 128)
        let rest = wireBytes(queue.gather())
        #expect(first + rest == bytes(200))
        _ = queue.sendCompleted(sent: rest.count)
        do {
            let s = QueueState(queue)
            #expect(s.isEmpty)
        }
    }
}
