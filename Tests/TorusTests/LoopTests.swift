import CLiburing
import Testing
import Torus
import TorusTestSupport

@Suite("Loop, timers, jobs")
struct LoopTests {
    @Test("timers fire in deadline order; cancelled timers never fire")
    func timerOrder() async throws {
        let fired = Locked<[Int]>([])
        try await withLoop { loop in
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                loop.execute {
                    for (i, ms) in [50, 10, 40, 20, 30].enumerated() {
                        loop.schedule(after: .milliseconds(ms)) { fired.withLock { $0.append(i) } }
                    }
                    let cancelled = loop.schedule(after: .milliseconds(15)) { fired.withLock { $0.append(99) } }
                    cancelled.cancel()
                    let cancelledLater = loop.schedule(after: .milliseconds(35)) { fired.withLock { $0.append(98) } }
                    loop.schedule(after: .milliseconds(25)) { cancelledLater.cancel() }
                    loop.schedule(after: .milliseconds(80)) { done.resume() }
                }
            }
        }
        #expect(fired.withLock { $0 } == [1, 3, 4, 2, 0])
    }

    @Test("repeating timer fires until cancelled")
    func repeatingTimer() async throws {
        let count = Locked(0)
        try await withLoop { loop in
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                loop.execute {
                    loop.scheduleRepeating(every: .milliseconds(10)) { timer in
                        let n = count.withLock { $0 += 1; return $0 }
                        if n == 5 {
                            timer.cancel()
                            loop.schedule(after: .milliseconds(50)) { done.resume() }
                        }
                    }
                }
            }
        }
        #expect(count.withLock { $0 } == 5)
    }

    @Test("a cancelled task's sleep ends at once with CancellationError")
    func cancelSleep() async throws {
        try await withLoop { loop in
            let task = Task(executorPreference: loop) {
                try await loop.sleep(for: .seconds(3600))
            }
            try await Task.sleep(for: .milliseconds(50))
            // The loop's own timers (housekeeping) may be cancelled too: count this one.
            let before = await loop.ledgerSnapshot()[.timeout].cancelled
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            let after = await loop.ledgerSnapshot()[.timeout].cancelled
            #expect(after >= before + 1, "the sleep's timeout was cancelled through the ring")
        }
    }

    @Test("a cancelled task's read ends with CancellationError; the connection stays usable")
    func cancelRead() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let client = try await AsyncConnection.connect(to: server.address, on: group.loops[1])
            let reader = Task(executorPreference: group.loops[1]) { try await client.read() }
            try await Task.sleep(for: .milliseconds(50))
            reader.cancel()
            await #expect(throws: CancellationError.self) { _ = try await reader.value }
            try await client.write("still here")
            #expect(try await client.read(exactly: 10) == Array("still here".utf8))
            await client.close()
            server.close()
        }
    }

    @Test("a read by a task that is already cancelled throws at once")
    func readWhenAlreadyCancelled() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let client = try await AsyncConnection.connect(to: server.address, on: group.loops[1])
            let reader = Task(executorPreference: group.loops[1]) { () -> [UInt8]? in
                withUnsafeCurrentTask { $0?.cancel() }
                return try await client.read()
            }
            await #expect(throws: CancellationError.self) { _ = try await reader.value }
            await client.close()
            server.close()
        }
    }

    @Test("work handed over from many threads runs on the loop, all of it")
    func foreignSubmissions() async throws {
        let counter = Locked(0)
        let onLoop = Locked(true)
        try await withLoop { loop in
            await withTaskGroup(of: Void.self) { tasks in
                for _ in 0..<8 {
                    tasks.addTask {
                        for _ in 0..<1000 {
                            loop.execute {
                                if !loop.inLoop { onLoop.withLock { $0 = false } }
                                counter.withLock { $0 += 1 }
                            }
                        }
                    }
                }
            }
            #expect(await eventually { counter.withLock { $0 } == 8000 })
        }
        #expect(onLoop.withLock { $0 })
    }

    @Test("a task preferring the loop resumes on the loop thread after each await")
    func executorPreference() async throws {
        try await withLoop { loop in
            let stayed = try await loop.run {
                var all = loop.inLoop
                for _ in 0..<20 {
                    try await loop.sleep(for: .milliseconds(1))
                    all = all && loop.inLoop
                }
                return all
            }
            #expect(stayed)
        }
    }

    @Test("shutdown with hundreds of operations in flight drains to quiescent")
    func shutdownWithOperationsInFlight() async throws {
        let loop = try EventLoop()
        let server = try Server.startOn(loop) { _ in Echo() }
        var clients: [AsyncConnection] = []
        for _ in 0..<150 {
            clients.append(try await AsyncConnection.connect(to: server.address, on: loop))
        }
        loop.execute {
            for _ in 0..<100 { loop.schedule(after: .seconds(3600)) {} }
        }
        let live = await loop.ledgerSnapshot()
        #expect(live.inFlight >= 400, "recv ×300, accept, timers ×100: \(live.inFlight)")
        let ledger = await loop.shutdownGracefully()
        expectQuiescent(ledger)
        #expect(ledger.connections == 0)
        _ = clients
    }

    @Test("a stopped loop is freed: no reference cycle keeps it (or its buffers) alive")
    func loopIsFreed() async throws {
        weak var weakLoop: EventLoop?
        do {
            let loop = try EventLoop()
            weakLoop = loop
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let client = try await AsyncConnection.connect(to: server.address, on: loop)
            try await client.write("x")
            _ = try await client.read(exactly: 1)
            var options = SocketOptions()
            options.idleTimeout = .seconds(5)
            _ = options
            expectQuiescent(await loop.shutdownGracefully())
        }
        #expect(await eventually(timeout: .seconds(5)) { weakLoop == nil })
    }

    @Test("blocking work runs off the loop and its result comes back on it")
    func offload() async throws {
        try await withLoop { loop in
            let (value, wasOnLoop) = try await loop.run {
                let v = try await loop.offload { () -> Int in
                    usleep(10_000)
                    return 42
                }
                return (v, loop.inLoop)
            }
            #expect(value == 42)
            #expect(wasOnLoop)
        }
    }

    @Test("files through the ring: write, stat, read back, close")
    func files() async throws {
        let path = "/tmp/torus-file-\(getpid())"
        defer { unlink(path) }
        try await withLoop { loop in
            let payload = testBytes(40_000)
            let file = try await loop.openFile(path, flags: O_WRONLY | O_CREAT | O_TRUNC)
            var offset = 0
            while offset < payload.count {
                let n = min(payload.count - offset, 16 * 1024)
                let slice = Array(payload[offset..<offset + n])
                let at = UInt64(offset)
                let written: Int = try await withCheckedThrowingContinuation { c in
                    loop.execute {
                        guard var buffer = loop.takeBuffer() else { return c.resume(throwing: IOError(errno: ENOBUFS, "take")) }
                        buffer.append(slice)
                        loop.write(file, from: buffer, at: at) { result, b in
                            loop.release(b)
                            c.resume(with: result.mapError { $0 })
                        }
                    }
                }
                offset += written
            }
            try await loop.close(file)
            let status = try await loop.stat(path: path)
            #expect(status.size == UInt64(payload.count))
            #expect(status.isRegularFile)
            let back = try await loop.readWholeFile(path)
            #expect(back == payload)
            await #expect(throws: IOError.self) { _ = try await loop.openFile("/nonexistent/x") }
        }
    }
}

extension Server {
    /// A server on a single loop, any port on 127.0.0.1.
    static func startOn(_ loop: EventLoop, _ make: @escaping @Sendable (Connection) -> any ConnectionHandler) throws -> Server {
        try start(on: [loop], address: try .tcp("127.0.0.1", 0), makeHandler: make)
    }
}
