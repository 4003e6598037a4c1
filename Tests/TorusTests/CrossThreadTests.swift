import Foundation
import MetricsTestKit
import Synchronization
import Testing
import Torus
import TorusTestSupport

// The paths where Torus crosses threads, hammered from many threads and tasks with
// bounded counts. They assert results like any test, and they are what
// scripts/tsan.sh runs under ThreadSanitizer: state the tests keep "loop-confined"
// is deliberately a plain `var` with no lock, so a job that ran off its loop's thread
// (or without a happens-before edge to the previous one) is a TSan report.

/// Runs `body(i)` for i in 0..<count, each on an OS thread of its own (not the
/// cooperative pool: these are the "other threads" `execute` and friends promise to
/// be safe from), and returns once every one has finished.
private func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) async {
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        let remaining = Mutex(count)
        for i in 0..<count {
            let thread = Thread {
                body(i)
                if remaining.withLock({ $0 -= 1; return $0 }) == 0 { done.resume() }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }
}

/// Runs `body` on `loop`'s thread and returns its result.
private func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in loop.execute { c.resume(returning: body()) } }
}

/// The blocking `EventLoopGroup.ledgerSnapshot()` (an async caller would get the
/// async overload).
private func blockingSnapshot(_ group: EventLoopGroup) -> LedgerSnapshot { group.ledgerSnapshot() }

/// This process's VmSize (address space), from /proc/self/status.
private func virtualBytes() -> Int { statusField("VmSize:") * 1024 }

/// The process's thread count.
private func threadCount() -> Int { statusField("Threads:") }

private func statusField(_ name: String) -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix(name) {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return words.count > 1 ? Int(words[1]) ?? 0 : 0
    }
    return 0
}

/// Runs `body` on a new thread made like the loops' own (pthread_create, default
/// attributes, so it may get a stack a loop thread left) and waits for it.
private func runOnFreshThread(_ body: @escaping @Sendable () -> Void) {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let rc = pthread_create(&thread, nil, { arg in
        guard let arg else { return nil }
        Unmanaged<Box>.fromOpaque(arg).takeRetainedValue().body()
        return nil
    }, box)
    precondition(rc == 0)
    pthread_join(thread, nil)
}

/// Whether a fresh thread believes it is `loop`'s thread.
private func threadClaimedBy(_ loop: EventLoop) -> Bool {
    let claimed = Mutex(false)
    runOnFreshThread { claimed.withLock { $0 = loop.inLoop } }
    return claimed.withLock { $0 }
}

/// State touched only on one loop's thread, deliberately without a lock.
private final class LoopConfined<Value>: @unchecked Sendable {
    let loop: EventLoop
    private var storage: Value
    init(_ loop: EventLoop, _ value: Value) {
        self.loop = loop
        storage = value
    }
    /// Loop thread only: anything else is a test failure (and, under TSan, a report).
    var value: Value {
        get {
            #expect(loop.inLoop, "loop-confined state read off the loop")
            return storage
        }
        set {
            #expect(loop.inLoop, "loop-confined state written off the loop")
            storage = newValue
        }
    }
}

@Suite("Cross-thread paths")
struct CrossThreadTests {
    @Test("8 threads × 10,000 execute calls: every job runs once, on the loop, in each thread's order")
    func executeFromManyThreads() async throws {
        let threads = 8
        let perThread = 10_000
        try await withLoop { loop in
            // Per producer: the last sequence number seen, and how many ran.
            let last = LoopConfined(loop, [Int](repeating: -1, count: threads))
            let ran = LoopConfined(loop, 0)
            let outOfOrder = LoopConfined(loop, 0)
            await onThreads(threads) { t in
                for i in 0..<perThread {
                    loop.execute {
                        if last.value[t] != i - 1 { outOfOrder.value += 1 }
                        last.value[t] = i
                        ran.value += 1
                    }
                }
            }
            // Every execute has returned; one more job runs after all of them.
            let (count, disorder, lasts) = await onLoop(loop) { (ran.value, outOfOrder.value, last.value) }
            #expect(count == threads * perThread)
            #expect(disorder == 0, "execute keeps each thread's order")
            #expect(lasts == [Int](repeating: perThread - 1, count: threads))
        }
    }

    @Test("50 × group start, work from other threads, shutdown (sync, async, and two threads at once)")
    func groupStartAndShutdown() async throws {
        try await withGroup(loops: 1) { outer in
            for round in 0..<50 {
                let group = try EventLoopGroup(loops: 2)
                let ran = Counter()
                await onThreads(4) { t in
                    for i in 0..<25 {
                        let loop = t % 2 == 0 ? group.next() : group.loops[i % 2]
                        loop.execute { if loop.inLoop { ran.add() } }
                    }
                }
                // Jobs queued before the stop run before the loops end.
                let ledger: LedgerSnapshot
                switch round % 3 {
                case 0:
                    ledger = await group.shutdownGracefully()
                case 1:
                    // Blocking shutdown from a plain thread, as a `main` would.
                    ledger = await withCheckedContinuation { c in
                        Thread { c.resume(returning: group.shutdown()) }.start()
                    }
                default:
                    // Two threads stop the same group: one joins, the other waits; both
                    // get the final ledger.
                    let results = Mutex<[LedgerSnapshot]>([])
                    await onThreads(2) { _ in
                        let l = group.shutdown()
                        results.withLock { $0.append(l) }
                    }
                    let both = results.withLock { $0 }
                    #expect(both.count == 2)
                    #expect(both[0] == both[1])
                    ledger = both[0]
                }
                expectQuiescent(ledger, "round \(round)")
                #expect(ran.count == 100, "round \(round)")
                // After shutdown the snapshot is the final ledger, from any thread.
                #expect(blockingSnapshot(group) == ledger)
                let asyncFinal = await group.ledgerSnapshot()
                #expect(asyncFinal == ledger)
            }
            _ = outer
        }
    }

    @Test("execute racing shutdown: every job runs exactly once, on the loop or inline after it stopped")
    func executeRacingShutdown() async throws {
        try await withLoop { _ in
            for _ in 0..<20 {
                let loop = try EventLoop()
                let ran = Counter()
                let stopped = Mutex<LedgerSnapshot?>(nil)
                await onThreads(5) { t in
                    if t == 0 {
                        usleep(200)
                        stopped.withLock { $0 = loop.shutdown() }
                    } else {
                        for _ in 0..<500 { loop.execute { ran.add() } }
                    }
                }
                #expect(ran.count == 2000)
                let ledger = try #require(stopped.withLock { $0 })
                expectQuiescent(ledger)
            }
        }
    }

    @Test("shutdownGracefully leaves no thread behind: 400 calls do not keep 400 stacks")
    func shutdownGracefullyJoinsNothingLeft() async throws {
        // Each call stops the loop on a thread of its own. A joinable thread that
        // nobody joins keeps its stack mapped after it ends (8 MiB of address space
        // each here, 2 MiB at least): 400 of them show as gigabytes of VmSize. Calls
        // on a stopped loop are quick and still start that thread.
        try await withLoop { _ in
            let loop = try EventLoop()
            expectQuiescent(await loop.shutdownGracefully())
            let threadsBefore = threadCount()
            let before = virtualBytes()
            for _ in 0..<400 { expectQuiescent(await loop.shutdownGracefully()) }
            // The stop threads are detached: on a saturated machine some may still be
            // finishing (their stacks mapped). Wait for them to end (bounded) so what
            // is measured is what stays, not what is still running.
            let waitUntil = ContinuousClock.now + .seconds(10)
            while threadCount() > threadsBefore + 2, ContinuousClock.now < waitUntil {
                try await Task.sleep(for: .milliseconds(20))
            }
            let grown = virtualBytes() - before
            #expect(grown < 300 << 20, "VmSize grew \(grown >> 20) MiB over 400 shutdownGracefully calls")
        }
    }

    @Test("a stopped loop's thread identity is not inherited: threads that reuse its stack are not 'in' it")
    func stoppedLoopIsNoThreadsLoop() async throws {
        // glibc hands a new thread the stack (and so the pthread_t) of one that ended.
        // A stopped loop must not then take that thread for its own: `shutdown()`
        // would refuse it (precondition: "call it from another thread") and `execute`
        // would queue work that never runs.
        try await withLoop { _ in
            for _ in 0..<20 {
                let loop = try EventLoop()
                expectQuiescent(await loop.shutdownGracefully())
                var claimed = 0
                for _ in 0..<20 where threadClaimedBy(loop) { claimed += 1 }
                #expect(claimed == 0, "\(claimed) of 20 fresh threads were 'in' a stopped loop")
                let ran = Counter()
                for _ in 0..<20 { runOnFreshThread { loop.execute { ran.add() } } }
                #expect(ran.count == 20, "execute on a stopped loop runs inline; none may be lost")
                expectQuiescent(await loop.shutdownGracefully())
            }
        }
    }

    @Test("1,000 tasks preferring a loop await ring completions and resume on it; loop.run from the pool")
    func tasksPreferringTheLoop() async throws {
        try await withGroup(loops: 2) { group in
            let counters = group.loops.map { LoopConfined($0, 0) }
            let offLoop = Counter()
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in 0..<1000 {
                    let loop = group.loops[i % 2]
                    let counter = counters[i % 2]
                    tasks.addTask(executorPreference: loop) {
                        for _ in 0..<3 {
                            try await loop.sleep(for: .microseconds(100 * (i % 7)))
                            if !loop.inLoop { offLoop.add() }
                            counter.value += 1
                        }
                    }
                }
                // `run` from tasks on the global executor, at the same time.
                for i in 0..<200 {
                    tasks.addTask {
                        let loop = group.loops[i % 2]
                        let counter = counters[i % 2]
                        let was = try await loop.run { () -> Bool in
                            counter.value += 1
                            return loop.inLoop
                        }
                        if !was { offLoop.add() }
                    }
                }
                try await tasks.waitForAll()
            }
            #expect(offLoop.count == 0)
            let total = await onLoop(group.loops[0]) { counters[0].value } + (await onLoop(group.loops[1]) { counters[1].value })
            #expect(total == 1000 * 3 + 200)
        }
    }

    @Test("an actor isolated to the loop: calls from 64 tasks are serialized on the loop thread")
    func actorOnTheLoop() async throws {
        try await withLoop { loop in
            let actor = LoopActor(loop)
            await withTaskGroup(of: Void.self) { tasks in
                for _ in 0..<64 {
                    tasks.addTask {
                        for _ in 0..<50 { await actor.bump() }
                    }
                }
            }
            #expect(await actor.total == 64 * 50)
            #expect(await actor.offLoop == 0)
        }
    }

    @Test("the blocking pool: jobs from many threads and loops; results come back on the loop")
    func blockingPool() async throws {
        try await withGroup(loops: 2) { group in
            // A pool of its own, fed from 8 threads at once.
            let pool = BlockingPool(threads: 3)
            let done = Counter()
            let all = 8 * 200
            await onThreads(8) { _ in
                for _ in 0..<200 { pool.submit { done.add() } }
            }
            #expect(await eventually { done.count == all })

            // offload from tasks preferring each loop, and runBlocking from the loop:
            // the value made on a pool thread is read on the loop.
            let sums = group.loops.map { LoopConfined($0, 0) }
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in 0..<200 {
                    let loop = group.loops[i % 2]
                    let sum = sums[i % 2]
                    tasks.addTask(executorPreference: loop) {
                        let v = try await loop.offload { () -> [Int] in Array(repeating: i, count: 16) }
                        #expect(loop.inLoop)
                        sum.value += v.reduce(0, +)
                    }
                }
                try await tasks.waitForAll()
            }
            let blockingDone = Counter()
            for loop in group.loops {
                let sum = sums[loop.index]
                loop.execute {
                    for i in 0..<100 {
                        loop.runBlocking({ Array(repeating: i, count: 16) }) { v in
                            sum.value += v.reduce(0, +)
                            blockingDone.add()
                        }
                    }
                }
            }
            #expect(await eventually { blockingDone.count == 200 })
            let total = await onLoop(group.loops[0]) { sums[0].value } + (await onLoop(group.loops[1]) { sums[1].value })
            #expect(total == 16 * (0..<200).reduce(0, +) + 2 * 16 * (0..<100).reduce(0, +))
        }
    }

    @Test("ledger snapshots (sync and async) and the metrics export from other threads while the loops work")
    func snapshotsWhileWorking() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let metrics = TestMetrics()
            let taken = Counter()
            async let echoed = echoClients(16, payloadSize: 64 * 1024, to: server.address, on: group.loops)
            async let fromThreads: Void = onThreads(4) { t in
                for _ in 0..<50 {
                    let s = t % 2 == 0 ? group.ledgerSnapshot() : group.loops[t % 2].ledgerSnapshot()
                    s.report(factory: metrics)
                    _ = s.prometheusText()
                    if s.listeners >= 0 { taken.add() }
                }
            }
            async let fromTasks: Void = withTaskGroup(of: Void.self) { tasks in
                for i in 0..<4 {
                    tasks.addTask {
                        for _ in 0..<50 {
                            let s = i % 2 == 0 ? await group.ledgerSnapshot() : await group.loops[i % 2].ledgerSnapshot()
                            s.report(factory: metrics)
                            _ = "\(s)"
                            taken.add()
                        }
                    }
                }
            }
            let matched = try await echoed
            await fromThreads
            await fromTasks
            #expect(matched == 16)
            #expect(taken.count == 400)
            #expect(try metrics.expectGauge("torus_connections").values.count > 0)
            server.close()
        }
    }

    @Test("LoopShards from many threads: one shard per loop, found by identity; values touched on their loop")
    func loopShards() async throws {
        try await withGroup(loops: 2) { group in
            let extra = try EventLoop()     // a second index-0 loop: identity, not position
            let loops = group.loops + [extra]
            let shards = LoopShards<Int> { 0 }
            let counted = LoopShards<ShardCount> { ShardCount() }
            let seen = Mutex<[ObjectIdentifier: Set<ObjectIdentifier>]>([:])
            await onThreads(8) { t in
                for i in 0..<300 {
                    let loop = loops[(t + i) % loops.count]
                    let shard = shards.shard(for: loop)
                    _ = seen.withLock { $0[ObjectIdentifier(loop), default: []].insert(ObjectIdentifier(shard)) }
                    loop.execute { shard.value += 1 }
                    let c = counted.shard(for: loop)
                    c.object.hits.add()   // the Sendable part, any thread
                    if i % 50 == 0 { shards.forEachShard { $0.value += 0 } }
                }
            }
            #expect(seen.withLock { $0.count } == 3)
            #expect(seen.withLock { $0.values.allSatisfy { $0.count == 1 } }, "one shard per loop, whoever asked")
            #expect(shards.shards.count == 3)
            #expect(await shards.sum { $0.value } == 8 * 300)
            let hits = counted.shards.map { $0.object.hits.count }.reduce(0, +)
            #expect(hits == 8 * 300)
            expectQuiescent(await extra.shutdownGracefully())
        }
    }

    @Test("Inbox: cancellation racing delivery loses and duplicates nothing, and keeps the order")
    func inboxCancellationRacesDelivery() async throws {
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 1 << 20)
            let rounds = 2000
            var got: [Int] = []
            var cancelled = 0
            for i in 0..<rounds {
                // The consumer waits on the global executor; the producer pushes on the
                // loop; a third party cancels the consumer, all at once.
                let consumer = Task { try await inbox.next() }
                if i % 2 == 0 {
                    loop.execute { inbox.push(i, weight: 1) }
                    consumer.cancel()
                } else {
                    consumer.cancel()
                    loop.execute { inbox.push(i, weight: 1) }
                }
                do {
                    if let v = try await consumer.value { got.append(v) }
                } catch is CancellationError {
                    cancelled += 1
                }
            }
            await onLoop(loop) { inbox.finish() }
            // What the cancelled waits did not take is still queued, in order.
            while let v = try await inbox.next() { got.append(v) }
            #expect(got == Array(0..<rounds))
            #expect(await onLoop(loop) { inbox.hasWaiter } == false)
            _ = cancelled
        }
    }

    @Test("Inbox: a producer on the loop, a consumer task elsewhere, backpressure both ways")
    func inboxProducerConsumer() async throws {
        try await withLoop { loop in
            let paused = LoopConfined(loop, false)
            let pauses = Counter()
            let inbox = Inbox<Int>(loop: loop, highWater: 64, lowWater: 16) { p in
                paused.value = p == .pause
                if p == .pause { pauses.add() }
            }
            let total = 20_000
            let sent = LoopConfined(loop, 0)
            // The producer: a repeating job on the loop that pushes until paused.
            @Sendable func produce() {
                while !paused.value && sent.value < total {
                    inbox.push(sent.value, weight: 1)
                    sent.value += 1
                }
                if sent.value == total { inbox.finish() } else { loop.execute { produce() } }
            }
            loop.execute { produce() }
            var expected = 0
            var inOrder = true
            while let v = try await inbox.next() {
                if v != expected { inOrder = false }
                expected += 1
            }
            #expect(inOrder)
            #expect(expected == total)
            #expect(pauses.count > 0)
        }
    }

    @Test("AsyncConnection: reader and writer tasks on the global executor, 16 connections, byte-exact")
    func asyncEchoOnTheGlobalExecutor() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let chunk = 4096, chunks = 32
            let ok = try await withThrowingTaskGroup(of: Bool.self) { clients in
                for c in 0..<16 {
                    clients.addTask {
                        let loop = group.loops[c % 2]
                        let payload = testBytes(chunk * chunks, seed: UInt64(c + 1))
                        return try await asyncEcho(payload, chunk: chunk, to: server.address, on: loop)
                    }
                }
                var n = 0
                for try await matched in clients where matched { n += 1 }
                return n
            }
            #expect(ok == 16)
            server.close()
        }
    }
}

/// An actor whose executor is the loop.
private actor LoopActor {
    let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    var total = 0
    var offLoop = 0
    init(_ loop: EventLoop) { self.loop = loop }
    func bump() {
        if !loop.inLoop { offLoop += 1 }
        total += 1
    }
}

/// A shard value that other threads may read: an atomic count.
private final class ShardCount: Sendable {
    let hits = Counter()
}

/// An atomic count shared by threads and tasks.
private final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func add() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}
