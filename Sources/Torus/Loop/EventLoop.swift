import Atomics
import CLiburing
import Glibc
import Synchronization

/// One proactor: an `io_uring`, the thread that alone submits to it, and everything
/// that thread owns (operation slots, buffer pools, the ledger, connections, timers).
///
/// Each iteration runs queued jobs and ready tasks, flushes write queues into SQEs,
/// makes **one** `io_uring_enter` that submits everything and waits, then reaps the
/// completions in batches and dispatches each to the operation's owner.
///
/// Threading: every method documented as "loop thread only" must be called on this
/// loop's thread (handlers, completion callbacks and tasks that prefer this loop as
/// executor run there). `execute`, `shutdown`, `ledgerSnapshot` and the executor
/// entry points are safe from any thread. The loop is also a `SerialExecutor` and a
/// `TaskExecutor`: `Task(executorPreference: loop)` runs a task's jobs on the loop
/// thread, so awaiting a Torus operation resumes without a thread hop.
///
/// Ownership: the loop owns its ring, its provided buffer ring, its outbound pool and
/// its ledger; they are destroyed only after shutdown has drained every completion.
public final class EventLoop: @unchecked Sendable {
    /// Sizes of the loop's ring and pools.
    public struct Configuration: Sendable {
        /// Submission queue entries; the completion queue is `cqMultiplier` times larger.
        public var ringEntries: UInt32 = 1024
        public var cqMultiplier: UInt32 = 8
        /// Provided receive buffers (a power of two) and their size.
        public var receiveBufferCount: Int = 1024
        public var receiveBufferSize: Int = 16 * 1024
        /// Most receive buffers the loop may grow to when receives run dry
        /// (`-ENOBUFS`): each growth registers one more buffer ring, doubling the total.
        /// Equal to `receiveBufferCount` (the default): never grow.
        public var receiveBufferMaxCount: Int? = nil
        /// Outbound pool: chunk size, chunks made at start, most chunks ever.
        public var outboundChunkSize: Int = 16 * 1024
        public var outboundInitialChunks: Int = 256
        public var outboundMaxChunks: Int = 64 * 1024
        /// CQEs reaped per batch.
        public var completionBatch: Int = 256

        public init() {}
    }

    public let configuration: Configuration
    /// This loop's position in its group (0 for a lone loop).
    public let index: Int

    let ring: Ring
    let ledger = Ledger()
    // Loop-confined hot state: no dynamic exclusivity checks (see `Connection`).
    @exclusivity(unchecked) var ops: OperationTable
    /// Provided buffer rings, indexed by buffer group id. The last one is where new
    /// receives select from; earlier ones keep serving the receives armed on them.
    @exclusivity(unchecked) private(set) var receiveRings: [ProvidedBufferRing]
    var receiveBuffers: ProvidedBufferRing { receiveRings[receiveRings.count - 1] }
    private var receiveBufferTotal: Int
    let outbound: BufferPool

    // Jobs handed over from other threads, and the wake-up that goes with them.
    private let inbox = Mutex<[Job]>([])
    private var draining: [Job] = []
    private var localJobs: [LocalJob] = []
    private var runningLocal: [LocalJob] = []
    private let sleeping = ManagedAtomic<Bool>(false)
    private let wakeFD: Int32
    private var wake: WakeTarget?

    // Loop-thread state.
    private var thread: LoopThread?
    private var threadID = pthread_t()
    private let started = Semaphore()
    private let stateLock = Mutex<RunState>(.running)
    private var stopping = false
    private var finalSnapshot: LedgerSnapshot?
    var resources: [ObjectIdentifier: any LoopResource] = [:]
    @exclusivity(unchecked) var dirtyConnections: [Connection] = []
    @exclusivity(unchecked) private var flushing: [Connection] = []
    var staleCompletions = 0
    /// CLOCK_MONOTONIC nanoseconds, read once per iteration (deadlines use it).
    @exclusivity(unchecked) private(set) var now: UInt64 = MonotonicClock.now()
    var watched: [ObjectIdentifier: Connection] = [:]
    var sweepTimer: Timer?

    enum RunState { case running, stopping, stopped }

    enum Job {
        case closure(@Sendable () -> Void)
        case task(UnownedJob)
    }

    enum LocalJob {
        case closure(() -> Void)
        case task(UnownedJob)
    }

    /// Starts a loop on its own thread. `index` names it within a group.
    public init(configuration: Configuration = Configuration(), index: Int = 0) throws(IOError) {
        self.configuration = configuration
        self.index = index
        ring = try Ring(entries: configuration.ringEntries, cqMultiplier: configuration.cqMultiplier)
        ops = OperationTable(capacity: Int(configuration.ringEntries))
        receiveRings = [try ProvidedBufferRing(ring: ring, groupID: 0,
                                               count: configuration.receiveBufferCount,
                                               size: configuration.receiveBufferSize)]
        receiveBufferTotal = configuration.receiveBufferCount
        ledger.buffersAdded(.received, count: configuration.receiveBufferCount,
                            bytes: configuration.receiveBufferCount * configuration.receiveBufferSize)
        outbound = BufferPool(chunkSize: configuration.outboundChunkSize,
                              initialChunks: configuration.outboundInitialChunks,
                              maxChunks: configuration.outboundMaxChunks, ledger: ledger)
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        guard efd >= 0 else { throw IOError(errno: torus_errno(), "eventfd") }
        wakeFD = efd
        draining.reserveCapacity(64)
        localJobs.reserveCapacity(64)
        runningLocal.reserveCapacity(64)
        thread = LoopThread.start(name: "torus-\(index)") { [self] in run() }
        started.wait()
    }

    deinit {
        Glibc.close(wakeFD)
    }

    /// True on this loop's thread.
    @inline(__always)
    public var inLoop: Bool { pthread_equal(pthread_self(), threadID) != 0 }

    @inline(__always)
    func assertInLoop(_ function: StaticString = #function) {
        assert(inLoop, "\(function) must run on the loop thread")
    }

    // MARK: - Submitting

    /// Prepares one SQE for an operation owned by `target`; returns its `user_data`.
    /// Loop thread only. The SQE goes to the kernel with the iteration's single submit.
    @inline(__always)
    @discardableResult
    func submit(_ kind: OperationKind, target: any CompletionTarget, tag: UInt32 = 0,
                _ prepare: (UnsafeMutablePointer<io_uring_sqe>) -> Void) -> UInt64 {
        let sqe = ring.nextSQE()
        prepare(sqe)
        let userData = ops.allocate(kind: kind, target: target, tag: tag)
        sqe.pointee.user_data = userData
        ledger.submitted(kind)
        return userData
    }

    /// Prepares an SQE whose completion only the ledger needs to see (cancel, close).
    @inline(__always)
    func submitInternal(_ kind: OperationKind, _ prepare: (UnsafeMutablePointer<io_uring_sqe>) -> Void) {
        let sqe = ring.nextSQE()
        prepare(sqe)
        sqe.pointee.user_data = OperationTable.internalUserData(kind)
        ledger.submitted(kind)
    }

    /// Asks the kernel to cancel one operation. Its own CQE still arrives (usually
    /// `-ECANCELED`) and frees the slot; the cancel's CQE may come before or after it.
    func cancel(_ userData: UInt64) {
        guard let i = ops.index(of: userData) else { return }
        ledger.cancelled(ops.slots[i].kind)
        submitInternal(.cancel) { io_uring_prep_cancel64($0, userData, 0) }
    }

    /// Cancels every operation on `fd` (io_uring holds its own file reference, so
    /// closing the fd would not). The owner closes the fd after the last CQE.
    func cancelAll(fd: Int32) {
        submitInternal(.cancel) { io_uring_prep_cancel_fd($0, fd, UInt32(IORING_ASYNC_CANCEL_ALL)) }
    }

    /// Marks an operation whose owner no longer cares: the slot keeps its target (and
    /// so its memory) until the final CQE, and the ledger counts it as parked.
    func park(_ userData: UInt64) {
        guard let i = ops.index(of: userData), ops.park(i) else { return }
        ledger.parked(ops.slots[i].kind)
    }

    /// Closes an fd through the ring (batched with the iteration's submit).
    func closeDescriptor(_ fd: Int32) {
        submitInternal(.close) { io_uring_prep_close($0, fd) }
    }

    /// The receive ring of buffer group `group`.
    @inline(__always)
    func receiveRing(_ group: UInt16) -> ProvidedBufferRing { receiveRings[Int(group)] }

    /// Receives ran dry: when configured, register another ring that doubles the
    /// total (the kernel keeps serving receives armed on the older rings).
    func growReceiveBuffers() {
        let limit = configuration.receiveBufferMaxCount ?? configuration.receiveBufferCount
        let add = receiveBufferTotal
        guard receiveBufferTotal + add <= limit, add <= 32768, receiveRings.count < 64 else { return }
        do {
            let grown = try ProvidedBufferRing(ring: ring, groupID: UInt16(receiveRings.count), count: add,
                                               size: configuration.receiveBufferSize)
            receiveRings.append(grown)
            receiveBufferTotal += add
            ledger.buffersAdded(.received, count: add, bytes: add * configuration.receiveBufferSize)
        } catch {
            // Registration failed (memory): keep going with what we have.
        }
    }

    // MARK: - Jobs

    /// Runs `body` on the loop thread, soon. Safe from any thread; from the loop
    /// thread it runs in the next iteration.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        if inLoop {
            localJobs.append(.closure(body))
        } else {
            enqueueForeign(.closure(body))
        }
    }

    /// Runs `body` on the loop thread after the current dispatch (EventMachine's
    /// `next_tick`). Loop thread only.
    public func nextTick(_ body: @escaping () -> Void) {
        assertInLoop()
        localJobs.append(.closure(body))
    }

    func enqueueForeign(_ job: Job) {
        let accepted = stateLock.withLock { state -> Bool in
            guard state != .stopped else { return false }
            inbox.withLock { $0.append(job) }
            return true
        }
        guard accepted else {
            // The loop has ended: run late work inline so no continuation is lost.
            switch job {
            case .closure(let body): body()
            case .task(let job): job.runSynchronously(on: asUnownedSerialExecutor())
            }
            return
        }
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            torus_eventfd_signal(wakeFD)
        }
    }

    func enqueueLocal(task: UnownedJob) { localJobs.append(.task(task)) }

    private var inboxIsEmpty: Bool { inbox.withLock { $0.isEmpty } }

    /// Runs local jobs queued so far and everything handed over from other threads.
    private func runJobs() {
        if !localJobs.isEmpty {
            swap(&localJobs, &runningLocal)
            var i = 0
            while i < runningLocal.count {
                switch runningLocal[i] {
                case .closure(let body): body()
                case .task(let job): runTask(job)
                }
                i += 1
            }
            runningLocal.removeAll(keepingCapacity: true)
        }
        inbox.withLock { swap(&$0, &draining) }
        if !draining.isEmpty {
            var i = 0
            while i < draining.count {
                switch draining[i] {
                case .closure(let body): body()
                case .task(let job): runTask(job)
                }
                i += 1
            }
            draining.removeAll(keepingCapacity: true)
        }
    }

    @inline(__always)
    private func runTask(_ job: UnownedJob) {
        job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
    }

    // MARK: - The loop

    private func run() {
        threadID = pthread_self()
        ring.enable()
        let wake = WakeTarget(fd: wakeFD)
        self.wake = wake
        wake.arm(on: self)
        started.signal()

        let batch = configuration.completionBatch
        let cqes = UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>.allocate(capacity: batch)
        defer { cqes.deallocate() }

        while true {
            runJobs()
            if stopping {
                if readyToFinish() { break }
            }
            flushWrites()
            var r = 0
            while r < receiveRings.count {   // not for-in: it allocates in debug builds
                receiveRings[r].commit()
                r += 1
            }

            var mustWait = localJobs.isEmpty
            if mustWait {
                sleeping.store(true, ordering: .sequentiallyConsistent)
                if !inboxIsEmpty { mustWait = false }
            }
            let rc = mustWait ? ring.submitAndWait(1) : ring.submitAndGetEvents()
            sleeping.store(false, ordering: .relaxed)
            now = MonotonicClock.now()
            if rc < 0 {
                switch -rc {
                case EINTR, ETIME, EAGAIN: break
                case EBUSY: ledger.busySubmit()
                default: preconditionFailure("io_uring_enter failed: \(IOError(result: rc, "io_uring_enter"))")
                }
            }
            if ring.hasOverflow {
                ledger.cqOverflowed()
                ring.flushOverflow()
            }
            reap(cqes, batch: UInt32(batch))
            if outbound.wantsTrim { outbound.trim(now: now) }
        }
        finish()
    }

    /// Reaps and dispatches every ready CQE, a batch at a time.
    private func reap(_ cqes: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>, batch: UInt32) {
        while true {
            let n = ring.peekBatch(cqes, max: batch)
            if n == 0 { return }
            var i = 0
            while i < Int(n) {
                if let cqe = cqes[i] {
                    dispatch(userData: cqe.pointee.user_data,
                             Completion(result: cqe.pointee.res, flags: cqe.pointee.flags))
                }
                i += 1
            }
            ring.advance(n)
            if n < batch { return }
        }
    }

    @inline(__always)
    private func dispatch(userData: UInt64, _ completion: Completion) {
        if userData & OperationTable.internalBit != 0 {
            let kind = OperationKind(rawValue: Int(userData & 0xFF)) ?? .nop
            ledger.completed(kind)
            return
        }
        guard let index = ops.index(of: userData) else {
            // A CQE for a slot already freed: impossible unless the kernel misbehaves.
            staleCompletions += 1
            return
        }
        let tag = ops.slots[index].tag
        if completion.hasMore {
            ops.slots[index].target?.complete(completion, tag: tag, final: false, loop: self)
            return
        }
        let kind = ops.slots[index].kind
        if ops.slots[index].state == .parked { ledger.unparked(kind) }
        ledger.completed(kind)
        let target = ops.release(index)
        target?.complete(completion, tag: tag, final: true, loop: self)
    }

    private func flushWrites() {
        guard !dirtyConnections.isEmpty else { return }
        swap(&dirtyConnections, &flushing)
        var i = 0
        while i < flushing.count {
            flushing[i].flush()
            i += 1
        }
        flushing.removeAll(keepingCapacity: true)
    }

    // MARK: - Shutdown

    /// Stops the loop: closes every listener, connection and timer it owns (each
    /// through its ordinary close path), cancels what is still in flight, drains every
    /// CQE, and returns the final ledger. Blocks until the loop thread has ended.
    /// Call from any thread but the loop's own.
    @discardableResult
    public func shutdown() -> LedgerSnapshot {
        precondition(!inLoop, "shutdown() blocks until the loop ends; call it from another thread")
        let first = stateLock.withLock { state -> Bool in
            if state == .running { state = .stopping; return true }
            return false
        }
        if first {
            enqueueForeign(.closure { [self] in beginStopping() })
            // Only the first caller joins the thread (joining twice is undefined).
            thread?.join()
            thread = nil
        } else {
            while stateLock.withLock({ $0 != .stopped }) { usleep(1000) }
        }
        return stateLock.withLock { _ in finalSnapshot } ?? LedgerSnapshot()
    }

    private func beginStopping() {
        stopping = true
        for resource in Array(resources.values) { resource.loopIsStopping() }
    }

    private func readyToFinish() -> Bool {
        // Resources close themselves; anything left in flight is cancelled.
        guard localJobs.isEmpty, inboxIsEmpty, resources.isEmpty, dirtyConnections.isEmpty else { return false }
        let live = ops.live - (wake?.armed == true ? 1 : 0)
        if live > 0 || ledger.state.operations[OperationKind.cancel.rawValue].inFlight > 0
            || ledger.state.operations[OperationKind.close.rawValue].inFlight > 0 {
            if ledger.state.operations[OperationKind.cancel.rawValue].inFlight == 0 && live > 0 {
                ledger.cancelled(.nop)
                submitInternal(.cancel) { io_uring_prep_cancel64($0, 0, Int32(IORING_ASYNC_CANCEL_ANY)) }
            }
            return false
        }
        if let wake, wake.armed {
            wake.stopping = true
            cancel(wake.userData)
            return false
        }
        return true
    }

    private func finish() {
        for receiveRing in receiveRings { receiveRing.unregister() }
        // Break the loop's own reference cycles (timers and the wake target hold it).
        sweepTimer = nil
        wake = nil
        watched.removeAll()
        let snapshot = ledger.snapshot()
        stateLock.withLock { state in
            finalSnapshot = snapshot
            state = .stopped
        }
        // Jobs that raced with the stop: run them now rather than lose them.
        runJobs()
    }

    /// A consistent copy of this loop's ledger. Safe from any thread: on the loop
    /// thread it is immediate; elsewhere it waits for the loop to take it; after
    /// shutdown it is the final ledger.
    public func ledgerSnapshot() -> LedgerSnapshot {
        if inLoop { return ledger.snapshot() }
        let box = SnapshotBox()
        let done = Semaphore()
        let queued = stateLock.withLock { state -> Bool in
            guard state != .stopped else { return false }
            inbox.withLock { $0.append(.closure { [self] in box.value = ledger.snapshot(); done.signal() }) }
            return true
        }
        guard queued else { return stateLock.withLock { _ in finalSnapshot } ?? LedgerSnapshot() }
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            torus_eventfd_signal(wakeFD)
        }
        done.wait()
        return box.value ?? LedgerSnapshot()
    }

    /// Async form of `ledgerSnapshot()` that does not block a thread.
    public func ledgerSnapshot() async -> LedgerSnapshot {
        await withCheckedContinuation { (c: CheckedContinuation<LedgerSnapshot, Never>) in
            let queued = stateLock.withLock { state -> Bool in
                guard state != .stopped else { return false }
                inbox.withLock { $0.append(.closure { [self] in c.resume(returning: ledger.snapshot()) }) }
                return true
            }
            if !queued {
                c.resume(returning: stateLock.withLock { _ in finalSnapshot } ?? LedgerSnapshot())
            } else if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                torus_eventfd_signal(wakeFD)
            }
        }
    }
}

private final class SnapshotBox: @unchecked Sendable {
    var value: LedgerSnapshot?
}

/// Something a loop owns that must close when the loop stops (listeners,
/// connections, timers). Registered in `EventLoop.resources` while open.
protocol LoopResource: AnyObject {
    func loopIsStopping()
}

/// The eventfd read that wakes a sleeping loop when another thread hands it work.
/// Owns the 8 bytes the kernel writes into.
final class WakeTarget: CompletionTarget {
    let fd: Int32
    private let counter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private(set) var armed = false
    private(set) var userData: UInt64 = 0
    var stopping = false

    init(fd: Int32) { self.fd = fd }
    deinit { counter.deallocate() }

    func arm(on loop: EventLoop) {
        armed = true
        userData = loop.submit(.wake, target: self) { sqe in
            io_uring_prep_read(sqe, fd, counter, 8, 0)
        }
    }

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) {
        armed = false
        if !stopping { arm(on: loop) }
    }
}
