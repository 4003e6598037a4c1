#if !os(Linux)
#error("Torus runs on Linux io_uring only")
#endif

import CLiburing
import Glibc
import Logging
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
        /// Opt-in: a busy loop waits for several completions per `io_uring_enter`,
        /// at the cost of up to `maxWait` latency (see ``CompletionCoalescing``).
        /// nil (the default): a waiting loop returns as soon as one is ready.
        public var completionCoalescing: CompletionCoalescing? = nil
        /// `sendmsg` scratch (one header and 64 iovecs each, ~1 KiB) shared by the
        /// loop's connections (`SendMessageArena`): how many connections can gather a
        /// multi-entry send in one iteration; the others send their front entry alone
        /// that turn.
        public var sendMessageSlots: Int = 128
        /// Where the loop reports what it survives (accept errors, a backed-up ring,
        /// receive-buffer growth, connections closed by a timeout). Nothing is logged
        /// per operation above `.debug`.
        public var logger = Logger(label: "torus")
        /// Kernel features to do without even where the kernel offers them, each
        /// replaced by its fallback (see ``KernelFallbacks``). Empty (the default): use
        /// what the kernel has, falling back only where it lacks a feature.
        public var fallbacks: KernelFallbacks = []
        /// How long a stopping loop waits for its connections to close and the kernel
        /// to answer its cancels. Past it the loop logs what is still out and ends
        /// anyway, its ledger not quiescent; the loop object (and so every buffer the
        /// kernel may still write) is then kept for the life of the process.
        public var stopTimeout: Duration = .seconds(15)
        /// Slots in the loop's registered file table, where each connection's socket is
        /// installed so its operations name it with `IOSQE_FIXED_FILE` (see
        /// ``KernelFeatures/SocketDescriptors``). nil (the default): the process's
        /// descriptor limit (`RLIMIT_NOFILE` when the loop starts), at most 65,536.
        /// The table costs the kernel 8 bytes a slot, per loop, whether used or not;
        /// connections beyond it name their descriptor. 0: no table (as
        /// ``KernelFallbacks/plainSocketDescriptors``).
        public var directDescriptorSlots: Int? = nil

        public init() {}
    }

    public let configuration: Configuration
    /// This loop's position in its group (0 for a lone loop).
    public let index: Int

    let ring: Ring
    /// What the kernel offered at setup and what this loop uses (setup flags, how
    /// listeners accept and connections receive). Logged once per process at start.
    public let kernelFeatures: KernelFeatures
    let ledger = Ledger()
    /// The ring's registered file table for connections' sockets; nil when the loop
    /// names descriptors (a fallback, a table of 0 slots, or the kernel refused it).
    let directDescriptors: DirectDescriptorTable?
    /// The configuration's logger, with this loop's index as metadata.
    public let logger: Logger
    // Loop-confined hot state: no dynamic exclusivity checks (touched only on the
    // loop thread, never through overlapping accesses; the checks cost ~9% of an echo).
    @exclusivity(unchecked) var ops: OperationTable
    /// Provided buffer rings, indexed by buffer group id. The last one is where new
    /// receives select from; earlier ones keep serving the receives armed on them.
    @exclusivity(unchecked) private(set) var receiveRings: [ProvidedBufferRing]
    var receiveBuffers: ProvidedBufferRing { receiveRings[receiveRings.count - 1] }
    private var receiveBufferTotal: Int
    let outbound: BufferPool
    /// The outbound pool's chunk size: the most a connection writes in place
    /// (`Connection.reservableBytes`). Stored, so that callers in other modules read a
    /// field rather than call through the pool.
    public let writeChunkSize: Int
    /// Buffers lent by connection transforms (TLS plaintext), made on first use.
    lazy var transformBuffers = TransformBufferPool(ledger: ledger)
    /// `sendmsg` headers and iovecs lent to write queues until the next submit that
    /// leaves the SQ empty (see `SendMessageArena`).
    @exclusivity(unchecked) var sendMessages: SendMessageArena
    /// Entry storage of the write queues that have bytes queued (idle ones hold none).
    @exclusivity(unchecked) var writeEntryBlocks = RingStoragePool<WriteQueueEntry>()

    // Jobs handed over from other threads, and the wake-up that goes with them.
    private let inbox = Mutex<[Job]>([])
    private var draining: [Job] = []
    private var localJobs: [LocalJob] = []
    private var runningLocal: [LocalJob] = []
    private let sleeping = Atomic<Bool>(false)
    private let wakeFD: Int32
    private var wake: WakeTarget?

    // Loop-thread state.
    private var thread: LoopThread?
    /// The loop thread's pthread_t while it runs; 0 before and after, because a thread
    /// started later may get the ended thread's stack and so the same pthread_t.
    /// Relaxed: a thread compares it only with its own id, and a thread that could
    /// reuse the id is created after the loop thread ended (its join or exit orders
    /// the store before).
    private let threadID = Atomic<UInt>(0)
    private let started = Semaphore()
    private let stateLock = Mutex<RunState>(.running)
    private var stopping = false
    /// When `beginStopping` ran (monotonic nanoseconds).
    private var stoppingSince: UInt64 = 0
    /// True once the loop began stopping (no new timers).
    var isStopping: Bool { stopping }
    private var finalSnapshot: LedgerSnapshot?
    /// Listeners and timers, by identity.
    private var resources: [ObjectIdentifier: any LoopResource] = [:]
    /// Connections: each keeps its own index here (`IndexedLoopResource`), so a held
    /// connection costs the loop one array element, not a dictionary entry.
    private var indexedResources = IndexedSet<any IndexedLoopResource>(index: \(any IndexedLoopResource).resourceIndex)
    /// Owners to flush this iteration, and those being flushed (swapped, so an owner
    /// may ask again while it flushes). `RingBuffer`s: an owner is moved out as it is
    /// flushed, with no retain for the call and no copy-on-write check per append.
    @exclusivity(unchecked) private var flushQueue = RingBuffer<any LoopDriven>()
    @exclusivity(unchecked) private var flushing = RingBuffer<any LoopDriven>()
    /// SQEs the kernel would not take yet (see `place`), oldest first.
    @exclusivity(unchecked) private var deferredSQEs: [io_uring_sqe] = []
    private var lastRefusalLogged: UInt64 = 0
    /// When a full direct descriptor table was last logged (see `EventLoop+DirectDescriptors`).
    var lastFullTableLogged: UInt64 = 0
    /// Set by `reserveSubmissions` when a linked pair must go to the deferred list.
    @exclusivity(unchecked) private var deferAll = false
    /// CLOCK_MONOTONIC nanoseconds, read once per iteration (deadlines use it; a
    /// protocol layer on the loop thread reads it instead of the clock). Loop thread.
    ///
    /// A getter over unchecked storage rather than the stored property itself: another
    /// module that reads a stored property emits its own runtime exclusivity check
    /// (`@exclusivity(unchecked)` does not cross the module boundary), which was about
    /// 75 instructions of a pipelined Redis command's ~2,000; a call to this getter
    /// is a few.
    package var now: UInt64 { nowStorage }
    @exclusivity(unchecked) private var nowStorage: UInt64 = MonotonicClock.now()
    /// The receive buffer a connection's handler is being given right now (one at a
    /// time: see `Connection.Delivery`).
    @exclusivity(unchecked) var delivery = Connection.Delivery.none
    /// Every owner with a deadline, at its earliest one (see `EventLoop+Liveness`).
    @exclusivity(unchecked) var deadlines: DeadlineWheel
    /// Owners handed out by the wheel this turn (reused).
    var dueOwners: [any DeadlineOwner] = []
    /// The one timer that wakes the loop for the wheel's earliest deadline, and when.
    var deadlineTimer: Timer?
    @exclusivity(unchecked) var deadlineTimerDue: UInt64?
    private var lastHousekeeping: UInt64 = 0
    /// Receives waiting for provided buffers, oldest first (see `EventLoop+ReceiveWait`).
    var receiveWaiters = RingBuffer<any ReceiveBufferWaiter>(unallocated: ())
    /// Re-arms the waiting receives; armed while any wait.
    var receiveRetryTimer: Timer?
    private var housekeepingTimer: Timer?
    /// A connection closed since the last housekeeping (its heap memory is free).
    private var connectionsClosedSinceHousekeeping = false
    /// The last housekeeping left memory that a later one may give back: the loop
    /// keeps a housekeeping timer armed until one does not.
    private var housekeepingLeftMore = false

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
        var logger = configuration.logger
        logger[metadataKey: "loop"] = "\(index)"
        self.logger = logger
        ring = try Ring(entries: configuration.ringEntries, cqMultiplier: configuration.cqMultiplier,
                        plainSetup: configuration.fallbacks.contains(.plainRingSetup))
        kernelFeatures = try KernelFeatures.detect(ring: ring, fallbacks: configuration.fallbacks)
        Self.logFeatures(kernelFeatures, logger)
        ops = OperationTable(capacity: Int(configuration.ringEntries))
        receiveRings = [try Self.firstReceiveRing(ring, configuration, kernelFeatures)]
        receiveBufferTotal = configuration.receiveBufferCount
        directDescriptors = Self.registerDirectDescriptors(ring, configuration, kernelFeatures, logger)
        ledger.buffersAdded(.received, count: configuration.receiveBufferCount,
                            bytes: configuration.receiveBufferCount * configuration.receiveBufferSize)
        writeChunkSize = configuration.outboundChunkSize
        outbound = BufferPool(chunkSize: writeChunkSize,
                              initialChunks: configuration.outboundInitialChunks,
                              maxChunks: configuration.outboundMaxChunks, ledger: ledger)
        sendMessages = SendMessageArena(slots: configuration.sendMessageSlots)
        deadlines = DeadlineWheel(resolution: Self.deadlineResolution.nanoseconds, now: MonotonicClock.now())
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        guard efd >= 0 else { throw IOError(errno: torus_errno(), "eventfd") }
        wakeFD = efd
        draining.reserveCapacity(64)
        localJobs.reserveCapacity(64)
        runningLocal.reserveCapacity(64)
        thread = try LoopThread.start(name: "torus-\(index)") { [self] in run() }
        started.wait()
    }

    deinit {
        Glibc.close(wakeFD)
    }

    /// Set once the first loop of the process has logged what the kernel offers.
    private static let featuresLogged = Atomic<Bool>(false)

    /// Logs the kernel's features at info level for the first loop of the process,
    /// at debug level for the others.
    private static func logFeatures(_ features: KernelFeatures, _ logger: Logger) {
        let first = !featuresLogged.exchange(true, ordering: .relaxed)
        logger.log(level: first ? .info : .debug, "io_uring: \(features)")
    }

    /// The loop's first provided buffer ring. Provided buffer rings have no fallback:
    /// a kernel that does not know the registration (`EINVAL`) cannot run Torus, nor
    /// can a sandbox that blocks `io_uring_register` (`EPERM`).
    private static func firstReceiveRing(_ ring: Ring, _ configuration: Configuration,
                                         _ features: KernelFeatures) throws(IOError) -> ProvidedBufferRing {
        do {
            return try ProvidedBufferRing(ring: ring, groupID: 0, count: configuration.receiveBufferCount,
                                          size: configuration.receiveBufferSize)
        } catch where error.errno == EINVAL {
            throw IOError(.kernelTooOld(feature: "provided buffer rings (IORING_REGISTER_PBUF_RING)",
                                        minimum: KernelFeatures.providedBufferRingKernel, running: features.release),
                          errno: EINVAL, error.operation)
        } catch where error.errno == EPERM {
            // io_uring_setup passed but io_uring_register is blocked (a seccomp profile).
            throw IOError(.blockedBySandbox, errno: EPERM, error.operation)
        }
    }

    /// The loop's registered file table, when its connections use one: registered
    /// here, before the ring is enabled (a `SINGLE_ISSUER` ring takes registrations
    /// from its submitter only once enabled). A refusal is logged, not thrown: the
    /// loop's connections then name their descriptors.
    private static func registerDirectDescriptors(_ ring: Ring, _ configuration: Configuration,
                                                  _ features: KernelFeatures, _ logger: Logger) -> DirectDescriptorTable? {
        guard features.socketDescriptors == .direct else { return nil }
        let slots = configuration.directDescriptorSlots.map { UInt32(clamping: $0) } ?? DirectDescriptorTable.defaultCapacity()
        guard slots > 0 else { return nil }
        do {
            return try DirectDescriptorTable(ring: ring, capacity: slots)
        } catch {
            logger.warning("io_uring: the registered file table was refused; sockets are named by their descriptors",
                           metadata: ["slots": "\(slots)", "reason": "\(error)"])
            return nil
        }
    }

    /// True on this loop's thread.
    @inline(__always)
    public var inLoop: Bool { pthread_equal(pthread_self(), threadID.load(ordering: .relaxed)) != 0 }

    /// Stops a debug build when called off this loop's thread (every "loop thread
    /// only" entry point checks it). Free in release builds.
    @inline(__always)
    public func assertInLoop(_ function: StaticString = #function) {
        assert(inLoop, "\(function) must run on the loop thread")
    }

    // MARK: - Submitting

    /// Prepares one SQE for an operation owned by `target`; returns its `user_data`.
    /// Loop thread only. The SQE goes to the kernel with the iteration's single submit.
    @inline(__always)
    @discardableResult
    func submit(_ kind: OperationKind, target: any CompletionTarget, tag: UInt32 = 0,
                _ prepare: (UnsafeMutablePointer<io_uring_sqe>) -> Void) -> UInt64 {
        assertInLoop()
        let userData = ops.allocate(kind: kind, target: target, tag: tag)
        #if DEBUG
        // Debug builds: note the fd the SQE names (no close while it is in flight) and
        // apply an armed fault (see `FaultInjection`).
        // The table is updated after the closure, not inside it.
        var fd: Int32 = -1
        place(userData) { sqe in
            prepare(sqe)
            fd = sqe.pointee.fd
            // A direct descriptor names a slot: note the socket's own descriptor.
            if sqe.pointee.flags & TORUS_IOSQE_FIXED_FILE != 0 {
                fd = directDescriptors?.descriptor(in: UInt32(bitPattern: fd)) ?? -1
            }
            if ring.faults.isArmed(kind) { ring.faults.apply(kind, userData: userData, to: sqe) }
        }
        ops.track(userData, fd: fd)
        #else
        place(userData, prepare)
        #endif
        ledger.submitted(kind)
        return userData
    }

    /// Prepares an SQE whose completion only the ledger needs to see (cancel, close),
    /// or the loop itself (`carrying` a value for its completion: the slot a
    /// `close_direct` clears).
    @inline(__always)
    func submitInternal(_ kind: OperationKind, carrying value: UInt32? = nil,
                        _ prepare: (UnsafeMutablePointer<io_uring_sqe>) -> Void) {
        place(value.map { OperationTable.internalUserData(kind, carrying: $0) } ?? OperationTable.internalUserData(kind),
              prepare)
        ledger.submitted(kind)
    }

    /// Makes sure the next `count` submissions land in the same kernel submit (a
    /// linked pair such as connect + link timeout must not be split). Loop thread only.
    func reserveSubmissions(_ count: UInt32) {
        guard deferredSQEs.isEmpty, !ring.reserve(count) else { return }
        // The kernel refused: the pair goes to the deferred list, in order, together.
        noteRefusedSubmit()
        deferAll = true
    }

    /// Fills an SQE in the ring, or (the SQ full and the kernel refusing more) keeps
    /// it aside until the next reap. Once one SQE waits, later ones wait behind it, so
    /// the order (and every link) is kept.
    @inline(__always)
    private func place(_ userData: UInt64, _ prepare: (UnsafeMutablePointer<io_uring_sqe>) -> Void) {
        if deferredSQEs.isEmpty && !deferAll, let sqe = ring.nextSQE() {
            prepare(sqe)
            sqe.pointee.user_data = userData
        } else {
            deferSQE(userData, prepare)
        }
    }

    @inline(never)
    private func deferSQE(_ userData: UInt64, _ prepare: (UnsafeMutablePointer<io_uring_sqe>) -> Void) {
        if deferredSQEs.isEmpty && !deferAll { noteRefusedSubmit() }
        deferAll = false
        var sqe = io_uring_sqe()
        withUnsafeMutablePointer(to: &sqe) { prepare($0) }
        sqe.user_data = userData
        deferredSQEs.append(sqe)
        ledger.submissionDeferred()
    }

    private func noteRefusedSubmit() {
        let error = ring.lastSubmitError
        if error == -EBUSY || error == -EAGAIN { ledger.busySubmit() } else { ledger.submitFailed() }
        // At most one warning a second: under sustained pressure this repeats.
        guard now &- lastRefusalLogged > 1_000_000_000 || lastRefusalLogged == 0 else { return }
        lastRefusalLogged = now
        logger.warning("submission queue full and the kernel refused more: keeping SQEs until the next reap",
                       metadata: ["reason": "\(IOError(result: error, "io_uring_submit"))",
                                  "pending": "\(ring.pendingSubmissions)"])
    }

    /// Moves deferred SQEs into the ring (after a reap freed the CQ), in order, never
    /// splitting a linked pair. What the kernel still refuses waits for the next reap.
    private func placeDeferred() {
        var i = 0
        while i < deferredSQEs.count {
            let linked = deferredSQEs[i].flags & TORUS_IOSQE_IO_LINK != 0
            guard ring.reserve(linked ? 2 : 1) else { break }
            let n = linked && i + 1 < deferredSQEs.count ? 2 : 1
            var k = 0
            while k < n {
                guard let sqe = ring.nextSQE() else { break }
                sqe.pointee = deferredSQEs[i + k]
                k += 1
            }
            i += k
            if k < n { break }
        }
        deferredSQEs.removeFirst(i)
        if !deferredSQEs.isEmpty { ledger.busySubmit() }
    }

    /// Asks the kernel to cancel one operation. Its own CQE still arrives (usually
    /// `-ECANCELED`) and frees the slot; the cancel's CQE may come before or after it.
    /// With `parking`, the owner no longer cares: the slot keeps its target (and so its
    /// memory) until the final CQE, counted as parked.
    func cancel(_ userData: UInt64, parking: Bool = false) {
        guard let i = ops.index(of: userData) else { return }
        ledger.cancelled(ops.kind(at: i))
        if parking { park(i) }
        submitInternal(.cancel) { io_uring_prep_cancel64($0, userData, 0) }
    }

    /// Cancels every operation on `fd` (io_uring holds its own file reference, so
    /// closing the fd would not). The owner closes the fd after the last CQE.
    /// `abandoning` names the owner's operations it no longer cares about: each is
    /// counted as cancelled and parked.
    func cancelAll(fd: Int32, abandoning first: UInt64? = nil, _ second: UInt64? = nil) {
        if let first { abandon(first) }
        if let second { abandon(second) }
        submitInternal(.cancel) { io_uring_prep_cancel_fd($0, fd, UInt32(IORING_ASYNC_CANCEL_ALL)) }
    }

    private func abandon(_ userData: UInt64) {
        guard let i = ops.index(of: userData) else { return }
        ledger.cancelled(ops.kind(at: i))
        park(i)
    }

    /// Removes a pending timeout; its slot is parked until the timeout's CQE.
    func cancelTimeout(_ userData: UInt64) {
        guard let i = ops.index(of: userData) else { return }
        ledger.cancelled(ops.kind(at: i))
        park(i)
        submitInternal(.timeoutRemove) { io_uring_prep_timeout_remove($0, userData, 0) }
    }

    private func park(_ i: Int) {
        guard ops.park(i) else { return }
        ledger.parked(ops.kind(at: i))
    }

    // MARK: - Resources and driven owners

    /// Registers a resource to close when the loop stops (and counts it). Loop thread only.
    func register(_ resource: any LoopResource, as kind: LoopResourceKind) {
        resources[ObjectIdentifier(resource)] = resource
        counted(opening: kind)
    }

    /// Registers a resource that keeps its own index (a connection): O(1) both ways,
    /// one array element each. Loop thread only.
    func register(_ resource: any IndexedLoopResource, as kind: LoopResourceKind) {
        indexedResources.insert(resource)
        counted(opening: kind)
    }

    /// The indexed resource has closed. Loop thread only.
    func unregister(_ resource: any IndexedLoopResource, as kind: LoopResourceKind) {
        guard indexedResources.remove(resource) else { return }
        counted(closing: kind)
    }

    private func counted(opening kind: LoopResourceKind) {
        switch kind {
        case .connection: ledger.connectionOpened()
        case .listener: ledger.listenerOpened()
        case .other: break
        }
    }

    private func counted(closing kind: LoopResourceKind) {
        switch kind {
        case .connection:
            ledger.connectionClosed()
            connectionsClosedSinceHousekeeping = true
        case .listener: ledger.listenerClosed()
        case .other: break
        }
    }

    /// The resource has closed. Loop thread only.
    func unregister(_ resource: any LoopResource, as kind: LoopResourceKind) {
        guard resources.removeValue(forKey: ObjectIdentifier(resource)) != nil else { return }
        counted(closing: kind)
    }

    /// Calls `owner.flushQueuedWrites()` in this iteration, before the submit. The
    /// owner asks once per iteration (it keeps its own "scheduled" mark).
    @inline(__always)
    func scheduleFlush(_ owner: any LoopDriven) {
        flushQueue.append(owner)
    }

    /// Closes an fd through the ring (batched with the iteration's submit). A socket
    /// with a direct descriptor clears its slot first (`closeSocket`).
    func closeDescriptor(_ fd: Int32) {
        #if DEBUG
        // Invariant: an owner closes its fd only after the last completion on it.
        assert(ops.operations(on: fd) == 0, "fd \(fd) closed with operations in flight on it: \(ops.describeOperations(on: fd))")
        // Invariant: a socket in the registered file table would outlive its descriptor.
        assert(directDescriptors?.slot(holding: fd) == nil,
               "fd \(fd) closed while still installed in direct descriptor slot \(directDescriptors?.slot(holding: fd) ?? 0)")
        #endif
        submitInternal(.close) { io_uring_prep_close($0, fd) }
    }

    /// The receive ring of buffer group `group`.
    @inline(__always)
    func receiveRing(_ group: UInt16) -> ProvidedBufferRing { receiveRings[Int(group)] }

    /// A receive on `group` met `-ENOBUFS`. When that ring kept buffers spare (it posts
    /// only what recent turns needed), it posts more; otherwise (every provided buffer
    /// was in use) it is counted, and when configured another ring is registered that
    /// doubles the total (the kernel keeps serving receives armed on the older rings).
    /// Loop thread only.
    /// Returns true when more buffers will be posted before the next submit (the
    /// receive may be re-armed at once), false when the rings are at their bound (the
    /// receive should wait: `waitForReceiveBuffers`).
    func receiveBuffersRanDry(group: UInt16) -> Bool {
        if receiveRing(group).ranDry() { return true }
        ledger.noBuffers()
        let limit = configuration.receiveBufferMaxCount ?? configuration.receiveBufferCount
        let add = receiveBufferTotal
        guard receiveBufferTotal + add <= limit, add <= 32768, receiveRings.count < 64 else {
            logger.debug("receive buffers ran dry at their limit", metadata: ["buffers": "\(receiveBufferTotal)"])
            return false
        }
        do {
            try addReceiveRing(count: add)
            logger.notice("receive buffers ran dry: registered another ring",
                          metadata: ["added": "\(add)", "buffers": "\(receiveBufferTotal)", "limit": "\(limit)"])
            return true
        } catch {
            // Registration failed (memory, locked-memory limit): go on with what we have.
            ledger.receiveGrowthFailed()
            logger.warning("receive buffers ran dry and growing them failed",
                           metadata: ["reason": "\(error)", "buffers": "\(receiveBufferTotal)"])
            return false
        }
    }

    /// Registers one more provided buffer ring of `count` buffers as the newest (where
    /// new receives select from) and counts its buffers in the ledger.
    private func addReceiveRing(count: Int) throws(IOError) {
        let added = try ProvidedBufferRing(ring: ring, groupID: UInt16(receiveRings.count), count: count,
                                           size: configuration.receiveBufferSize)
        receiveRings.append(added)
        receiveBufferTotal += count
        ledger.buffersAdded(.received, count: count, bytes: count * configuration.receiveBufferSize)
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
        threadID.store(pthread_self(), ordering: .relaxed)
        ring.enable()
        if kernelFeatures.ringDescriptor == .registered {
            let rc = ring.registerDescriptor()
            if rc != 0 {
                logger.warning("io_uring: the ring descriptor could not be registered; every enter names it instead",
                               metadata: ["reason": "\(IOError(result: rc, "io_uring_register_ring_fd"))"])
            }
        }
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
                if now &- stoppingSince > configuration.stopTimeout.nanoseconds {
                    abandonStop()
                    break
                }
            }
            flushWrites()
            var r = 0
            while r < receiveRings.count {   // not for-in: it allocates in debug builds
                receiveRings[r].commit()
                r += 1
            }

            armDeadlineTimer()

            var mustWait = localJobs.isEmpty && deferredSQEs.isEmpty
            if mustWait {
                sleeping.store(true, ordering: .sequentiallyConsistent)
                if !inboxIsEmpty { mustWait = false }
            }
            let waitFor = mustWait ? completionsToWaitFor() : 0
            let rc: Int32
            if waitFor > 1, let coalescing = configuration.completionCoalescing {
                rc = ring.submitAndWait(UInt32(waitFor), bound: coalescing.maxWait)
            } else {
                rc = mustWait ? ring.submitAndWait(1) : ring.submitAndGetEvents()
            }
            sleeping.store(false, ordering: .relaxed)
            let before = now
            nowStorage = MonotonicClock.now()
            // A guard against a lost wake-up (see `Ring.longestSleep`): the wait ended by
            // its bound with work handed over meanwhile. Reported, to find its cause. (A
            // coalescing wait ends by its short bound as a matter of course.)
            if waitFor == 1 && rc == -ETIME && !inboxIsEmpty {
                logger.notice("the loop slept to its bound with work waiting in its inbox (a lost wake-up?)",
                              metadata: ["slept_ms": "\((now &- before) / 1_000_000)", "wake_armed": "\(wake.armed)"])
            }
            if rc < 0 { enterFailed(rc) } else { enterFailures = 0 }
            // The kernel copied every consumed sendmsg's header and iovecs; slots stay
            // out while an SQE pointing at one still waits (SQ or deferred list).
            if ring.pendingSubmissions == 0 && deferredSQEs.isEmpty { sendMessages.reclaimAll() }
            if ring.hasOverflow {
                ledger.cqOverflowed()
                logger.debug("completion queue overflowed: flushing the kernel's overflow list")
                ring.flushOverflow()
            }
            reapedLastTurn = reap(cqes, batch: UInt32(batch))
            checkDueDeadlines()
            if !deferredSQEs.isEmpty { placeDeferred() }
            if now &- lastHousekeeping >= Self.housekeepingInterval {
                housekeep()
            } else if (connectionsClosedSinceHousekeeping || housekeepingLeftMore) && housekeepingTimer == nil {
                // Also when the timer fired early (a housekeeping ran meanwhile, woken
                // by other work): otherwise an idle loop would sleep with memory left.
                armHousekeeping()
            }
        }
        finish()
        ring.unregisterDescriptor()
        threadID.store(0, ordering: .relaxed)
    }

    // MARK: - Memory housekeeping

    /// How often memory nobody used is given back.
    static let housekeepingInterval: UInt64 = 1_000_000_000

    /// Gives memory back after a burst, about once a second while there is any to
    /// give: spare receive buffers and free outbound chunks that nobody took for a
    /// whole interval lose their pages, outbound slabs beyond the initial ones are
    /// freed, and then (when anything was given back or a connection closed) the
    /// allocator is asked to return its free pages (`HeapTrim`: `malloc_trim` on the
    /// blocking pool, at most one a second in the process). An idle loop is
    /// woken by a one-shot timer only while a later sweep may still give back more.
    private func housekeep() {
        lastHousekeeping = now
        var released = 0
        var more = false
        var r = 0
        while r < receiveRings.count {
            let swept = receiveRings[r].sweep()
            released += swept.released
            more = more || swept.more
            r += 1
        }
        if !receiveBuffers.registered { replaceReceiveRing() }
        let swept = outbound.sweep()
        released += swept.released
        more = more || swept.more
        if outbound.wantsTrim { released += outbound.trim(now: now) }
        if released > 0 || connectionsClosedSinceHousekeeping {
            // Off this thread, once for the whole process (see `HeapTrim`).
            HeapTrim.process.request(now: now)
            more = true
        }
        connectionsClosedSinceHousekeeping = false
        housekeepingLeftMore = more
        if more, housekeepingTimer == nil { armHousekeeping() }
    }

    /// Wakes the loop for the next housekeeping (a connection closed, or a sweep left
    /// memory that a later one may give back).
    private func armHousekeeping() {
        guard !stopping else { return }
        housekeepingTimer = schedule(after: .milliseconds(1100)) { [unowned self] in housekeepingTimer = nil }
    }

    /// The newest receive ring could not be registered again after a reset (the
    /// kernel refused memory): new receives go to a fresh ring instead.
    private func replaceReceiveRing() {
        let count = receiveBuffers.count
        guard receiveRings.count < 64 else { return }
        do {
            try addReceiveRing(count: count)
            logger.warning("re-registering a receive ring failed: registered a fresh one")
        } catch {
            ledger.receiveGrowthFailed()
            logger.error("re-registering a receive ring failed and so did a fresh one",
                         metadata: ["reason": "\(error)"])
        }
    }

    /// Consecutive unexpected `io_uring_enter` failures (for the back-off).
    private var enterFailures = 0

    /// An `io_uring_enter` that failed. The expected answers (interrupted, timed out,
    /// the CQ backed up) need nothing but the reap that follows; anything else is
    /// logged and counted, and the loop goes on (after a short pause if it repeats).
    private func enterFailed(_ rc: Int32) {
        switch -rc {
        case EINTR, ETIME:
            return
        case EBUSY, EAGAIN:
            ledger.busySubmit()
            logger.debug("io_uring_enter: the CQ is backed up; reaping before submitting more",
                         metadata: ["reason": "\(IOError(result: rc, "io_uring_enter"))"])
        default:
            ledger.submitFailed()
            enterFailures += 1
            logger.error("io_uring_enter failed; the loop goes on",
                         metadata: ["reason": "\(IOError(result: rc, "io_uring_enter"))",
                                    "consecutive": "\(enterFailures)"])
            if enterFailures > 1 { usleep(UInt32(Swift.min(enterFailures, 100)) * 1000) }
        }
    }

    /// Completions the last turn reaped (what a coalescing wait scales from).
    private var reapedLastTurn = 0

    /// How many completions a loop with nothing else to do waits for: one, unless
    /// coalescing is on and the last turn was busy.
    @inline(__always)
    private func completionsToWaitFor() -> Int {
        guard let coalescing = configuration.completionCoalescing else { return 1 }
        return coalescing.completionsToWaitFor(reapedLastTurn: reapedLastTurn)
    }

    /// Reaps and dispatches every ready CQE, a batch at a time; returns how many.
    @discardableResult
    private func reap(_ cqes: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>, batch: UInt32) -> Int {
        var reaped = 0
        while true {
            let n = ring.peekBatch(cqes, max: batch)
            if n == 0 { return reaped }
            reaped += Int(n)
            var i = 0
            while i < Int(n) {
                if let cqe = cqes[i] {
                    dispatch(userData: cqe.pointee.user_data,
                             Completion(result: ring.result(of: cqe), flags: cqe.pointee.flags))
                }
                i += 1
            }
            ring.advance(n)
            if n < batch { return reaped }
        }
    }

    @inline(__always)
    private func dispatch(userData: UInt64, _ completion: Completion) {
        if userData & OperationTable.internalBit != 0 {
            let kind = OperationKind(rawValue: Int(userData & 0xFF)) ?? .nop
            ledger.completed(kind)
            if kind == .closeDirect { directDescriptorCleared(OperationTable.carriedValue(userData), result: completion.result) }
            return
        }
        guard let index = ops.index(of: userData) else {
            // A CQE for a slot already freed: impossible unless the kernel misbehaves.
            ledger.staleCompletion()
            assertionFailure("completion for no live operation: user_data \(userData), result \(completion.result)")
            logger.warning("completion for no live operation", metadata: ["user_data": "\(userData)",
                                                                          "result": "\(completion.result)"])
            return
        }
        if completion.hasMore {
            // A multishot goes on by itself: the answer matters only at its end. The
            // target is lent out of its slot for the call and put back after it, each
            // a separate access to the table (the call may grow it).
            let tag = ops.tag(at: index)
            guard let target = ops.lend(index) else { return }
            _ = target.complete(completion, tag: tag, final: false, loop: self)
            ops.returnLent(target, to: index)
            return
        }
        let tag = ops.tag(at: index)
        let kind = ops.kind(at: index)
        let parked = ops.isParked(index)
        if parked { ledger.unparked(kind) }
        ledger.completed(kind)
        guard let target = ops.release(index) else { return }
        // The one re-arming rule: an operation whose final CQE arrived while its owner
        // still wants it is submitted again.
        if target.complete(completion, tag: tag, final: true, loop: self) == .rearm {
            // Invariant: a parked operation's owner gave it up; it only gets its
            // resources back, it never takes the operation up again.
            assert(!parked, "a parked \(kind) operation was re-armed by the owner that gave it up")
            target.rearm(tag: tag, loop: self)
        }
    }

    private func flushWrites() {
        guard !flushQueue.isEmpty else { return }
        swap(&flushQueue, &flushing)
        while let owner = flushing.popFirst() { owner.flushQueuedWrites() }
    }

    // MARK: - Shutdown

    /// Stops the loop: closes every listener, connection and timer it owns (each
    /// through its ordinary close path), cancels what is still in flight, drains every
    /// CQE, and returns the final ledger. Blocks until the loop thread has ended.
    /// Call from any thread but the loop's own.
    @discardableResult
    public func shutdown() -> LedgerSnapshot {
        // Not from input: API misuse (shutdown called on the loop's own thread).
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
        stoppingSince = now
        for resource in Array(resources.values) { resource.loopIsStopping() }
        for resource in indexedResources.members { resource.loopIsStopping() }   // a copy: closing removes
    }

    private func readyToFinish() -> Bool {
        // Resources close themselves; anything left in flight is cancelled.
        guard localJobs.isEmpty, inboxIsEmpty, resources.isEmpty, indexedResources.isEmpty, flushQueue.isEmpty,
              deferredSQEs.isEmpty else { return false }
        // The ledger is the one count of what the kernel still owns.
        let internalInFlight = ledger.counters(.cancel).inFlight
            + ledger.counters(.close).inFlight + ledger.counters(.timeoutRemove).inFlight
            + ledger.counters(.closeDirect).inFlight
        let owned = ledger.inFlight - internalInFlight - (wake?.armed == true ? 1 : 0)
        if owned > 0 || internalInFlight > 0 {
            if ledger.counters(.cancel).inFlight == 0 && owned > 0 {
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

    /// The stop timed out: something the kernel holds never completed (or the loop's
    /// count of it is wrong). Says what is still out, then keeps the loop alive for
    /// the life of the process, so no buffer or target the kernel may still touch is
    /// freed under it; the ledger (not quiescent) tells the caller.
    private func abandonStop() {
        let inFlight = OperationKind.allCases.compactMap { kind -> String? in
            let n = ledger.counters(kind).inFlight
            return n > 0 ? "\(kind)=\(n)" : nil
        }
        logger.error("loop stop timed out; ending with work still out", metadata: [
            "timeout": "\(configuration.stopTimeout)",
            "in_flight": "\(inFlight.joined(separator: ","))",
            "resources": "\(resources.count + indexedResources.count)",
            "deferred_sqes": "\(deferredSQEs.count)",
            "jobs": "\(localJobs.count)",
        ])
        Self.abandoned.withLock { $0.append(self) }
    }

    /// Loops whose stop timed out, kept for the life of the process (see `abandonStop`).
    private static let abandoned = Mutex<[EventLoop]>([])

    private func finish() {
        for receiveRing in receiveRings { receiveRing.unregister() }
        // Every slot is clear by now (each connection cleared its own on close).
        directDescriptors?.unregister(from: ring)
        // Break the loop's own reference cycles (timers and the wake target hold it).
        deadlineTimer = nil
        housekeepingTimer = nil
        receiveRetryTimer = nil
        receiveWaiters.removeAll()
        wake = nil
        deadlines = DeadlineWheel(resolution: deadlines.resolution, now: now)
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

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm {
        armed = false
        return stopping ? .done : .rearm
    }

    func rearm(tag: UInt32, loop: EventLoop) { arm(on: loop) }
}
