import CLiburing
import Foundation
import Testing
import Torus
import TorusTestSupport

@Suite("Resources: exhaustion, allocation, groups")
struct ResourceTests {
    @Test("a tiny buffer ring driven into ENOBUFS under load still delivers every byte")
    func noBuffers() async throws {
        var tiny = EventLoop.Configuration()
        tiny.receiveBufferCount = 2
        tiny.receiveBufferSize = 2048
        let ledger = try await withServer(tiny) { serverLoop, server, clientLoop in
            let size = 256 * 1024
            let ok = try await echoClients(32, payloadSize: size, to: server.address,
                                           on: [clientLoop], seed: 8)
            #expect(ok == 32)
        }
        #expect(ledger.noBufferReceives > 0, "the ring never ran dry: the test did not test ENOBUFS")
    }

    @Test("receive buffers grow when configured: a dry ring registers another and every byte arrives")
    func receiveBuffersGrow() async throws {
        var tiny = EventLoop.Configuration()
        tiny.receiveBufferCount = 2
        tiny.receiveBufferSize = 2048
        tiny.receiveBufferMaxCount = 64
        let ledger = try await withServer(tiny) { serverLoop, server, clientLoop in
            let ok = try await echoClients(32, payloadSize: 128 * 1024, to: server.address,
                                           on: [clientLoop], seed: 4)
            #expect(ok == 32)
            let grown = await serverLoop.ledgerSnapshot()[.received]
            #expect(grown.pool > 2, "the ring never grew: \(grown)")
            #expect(grown.pool <= 64)
        }
        #expect(ledger.noBufferReceives > 0)
    }

    @Test("an echo sends the received buffer itself: no outbound chunk is taken")
    func zeroCopyEcho() async throws {
        let seen = Locked((outboundHeld: 0, receivedHeld: 0))
        try await withServer(makeHandler: { _ in ObservingEcho(seen: seen) }) {
            serverLoop, server, clientLoop in
            let ok = try await echoClients(8, payloadSize: 64 * 1024, to: server.address, on: [clientLoop], seed: 5)
            #expect(ok == 8)
        }
        // Right after send(ReceivedBytes) the bytes sit in the write queue: as the
        // receive buffer itself (received, application), never as a copied chunk.
        #expect(seen.current.outboundHeld == 0)
        #expect(seen.current.receivedHeld > 0)
    }

    @Test("a tiny completion queue overflows under load; nothing is lost")
    func completionQueueOverflow() async throws {
        var tiny = EventLoop.Configuration()
        tiny.ringEntries = 4
        tiny.cqMultiplier = 2
        let ledger = try await withServer(tiny) { serverLoop, server, clientLoop in
            let ok = try await echoClients(64, payloadSize: 64 * 1024, to: server.address,
                                           on: [clientLoop], seed: 100)
            #expect(ok == 64)
        }
        #expect(ledger.cqOverflows > 0 || ledger.busySubmits > 0,
                "an 8-entry CQ with 64 busy connections never overflowed: the test did not test overflow")
    }

    @Test("two loops share a port through SO_REUSEPORT; both accept")
    func reusePortGroup() async throws {
        let clientLoop = try EventLoop()
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            #expect(server.listeners.count == 2)
            #expect(server.listeners[0].address == server.listeners[1].address)
            var clients: [AsyncConnection] = []
            for i in 0..<64 {
                let c = try await AsyncConnection.connect(to: server.address, on: clientLoop)
                try await c.write("hi \(i)")
                _ = try await c.read(exactly: "hi \(i)".utf8.count)
                clients.append(c)
            }
            let perLoop = [await group.loops[0].ledgerSnapshot().connections,
                           await group.loops[1].ledgerSnapshot().connections]
            #expect(perLoop.reduce(0, +) == 64)
            #expect(perLoop.allSatisfy { $0 > 0 }, "the kernel spread connections over both loops: \(perLoop)")
            for c in clients { await c.close() }
            server.close()
        }
        expectQuiescent(await clientLoop.shutdownGracefully())
    }

    @Test("accept under EMFILE degrades and recovers when fds free up (torus-echo --nofile)")
    func acceptUnderEMFILE() async throws {
        let server = try ChildProcess(BuiltProducts.path("torus-echo"),
                                      ["--port", "0", "--threads", "1", "--nofile", "24"])
        let port = try #require(await server.listeningPort())
        let clientLoop = try EventLoop()
        let clients = 40
        // Only about 18 fit under the limit at once; each client closes as soon as it
        // has its echo, which frees a server fd and lets the next one be accepted.
        let connections = try await connectClients(clients, port: port, on: clientLoop)
        let echoed = try await pingEachAndClose(connections, on: clientLoop)
        #expect(echoed == clients)
        let status = await server.stop()
        #expect(status == 0, "server output:\n\(server.text)")
        #expect(server.text.contains("ledger: quiescent"))
        #expect(server.text.contains("accept errors") && !server.text.contains("accept errors 0"),
                "the server never hit EMFILE:\n\(server.text)")
        expectQuiescent(await clientLoop.shutdownGracefully())
    }

    /// TCP echo, and WebSocket echo through `onMessageBytes` (8 or 4 connections, each
    /// also connected, upgraded and closed inside the measured phase: ~140
    /// allocations per WebSocket connection in debug, hence more messages there).
    @Test("no heap allocation per echoed message once warm (torus-alloc-check)",
          .enabled(if: ProcessInfo.processInfo.environment["TORUS_SANITIZER"] == nil,
                   "the check's malloc interposer cannot run beside a sanitizer's"),
          arguments: [[String](), ["--websocket", "--messages", "100000", "--conns", "4"]])
    func allocationsPerMessage(_ mode: [String]) async throws {
        // Not a dependency of this test target on purpose: the check interposes malloc,
        // and an executable target a test depends on is linked into the test binary.
        // scripts/test.sh builds every product before running the tests.
        let path = BuiltProducts.path("torus-alloc-check")
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "build it first: swift build --product torus-alloc-check (scripts/test.sh does)")
        let check = try ChildProcess(BuiltProducts.path("torus-alloc-check"),
                                     ["--messages", "40000", "--conns", "8", "--max", "0.01"] + mode)
        let status = await check.wait(timeout: .seconds(120))
        #expect(status == 0, "\(check.text)")
        #expect(check.text.contains("ledger: quiescent"))
    }

    @Test("a burst that grew the outbound pool is given back once it passes")
    func poolTrims() async throws {
        try await withLoop { loop in
            let initial = await loop.ledgerSnapshot()[.outbound].capacity
            let grown: Int = await withCheckedContinuation { c in
                loop.execute {
                    // Take 2,000 chunks (the pool starts with 256), then give them all back.
                    var buffers = [PooledBufferBox]()
                    for _ in 0..<2000 {
                        guard let b = loop.takeBuffer() else { break }
                        buffers.append(PooledBufferBox(b))
                    }
                    let capacity = loop.ledgerSnapshot()[.outbound].capacity
                    for box in buffers { if let b = box.take() { loop.release(b) } }
                    c.resume(returning: capacity)
                }
            }
            #expect(grown > initial)
            // Trimming runs at most once a second, after some loop turn.
            #expect(await eventually(timeout: .seconds(5)) {
                try? await loop.sleep(for: .milliseconds(200))
                return await loop.ledgerSnapshot()[.outbound].capacity == initial
            })
        }
    }

    @Test("debug builds name the holder of every buffer away from its pool")
    func holdersAreNamed() async throws {
        try await withLoop { loop in
            let held: [String] = await withCheckedContinuation { c in
                loop.execute {
                    guard let buffer = loop.takeBuffer() else { return c.resume(returning: []) }
                    let holders = loop.ledgerSnapshot().holders
                    loop.release(buffer)
                    c.resume(returning: holders)
                }
            }
            #if DEBUG
            #expect(held.count == 1)
            #expect(held.first?.contains("ResourceTests.swift") == true, "\(held)")
            #endif
        }
    }
}

/// Lets a test keep many noncopyable buffers in an array.
final class PooledBufferBox {
    private var buffer: PooledBuffer?
    init(_ buffer: consuming PooledBuffer) { self.buffer = consume buffer }
    func take() -> PooledBuffer? { buffer.take() }
}

/// Echoes with `send(ReceivedBytes)` and records what the ledger shows just after.
final class ObservingEcho: ConnectionHandler {
    let seen: Locked<(outboundHeld: Int, receivedHeld: Int)>
    init(seen: Locked<(outboundHeld: Int, receivedHeld: Int)>) { self.seen = seen }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
        let ledger = connection.loop.ledgerSnapshot()
        seen.withLock {
            $0.outboundHeld = max($0.outboundHeld, ledger[.outbound].application)
            $0.receivedHeld = max($0.receivedHeld, ledger[.received].application)
        }
    }
}

@Suite("Memory housekeeping and the allocator")
struct AllocatorTrimTests {
    @Test("malloc_trim runs only over glibc's own malloc: skipped under a sanitizer or a preloaded allocator")
    func trimOnlyOverGlibc() async throws {
        let sanitizers: [String] = ["__tsan_init", "__asan_init", "__msan_init"]
        let interposed = sanitizers.contains {
            dlsym(UnsafeMutableRawPointer(bitPattern: 0), $0) != nil
        }
        #expect(torus_malloc_is_glibc() == (interposed ? 0 : 1))
        // Housekeeping calls it from every loop thread at once; it must never fault.
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<50 { _ = torus_malloc_trim() } }
            }
        }
        _ = try await withLoop { _ in }
    }

    @Test("a trim requested by many loops at once: one runs, off their threads; the next only after the interval")
    func trimsAreFoldedAndRateLimited() async throws {
        #expect(HeapTrim.process.request() == false || torus_malloc_is_glibc() == 1,
                "no trim over another allocator")
        let ranOn = Locked<[String]>([])
        let gate = DispatchSemaphore(value: 0)
        let trimmer = HeapTrim(interval: .seconds(1)) {
            gate.wait()  // held until the test has made its requests
            let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
            ranOn.withLock { $0.append(name) }
        }
        let t0: UInt64 = 5_000_000_000
        #expect(trimmer.request(now: t0))
        let started = await withTaskGroup(of: Int.self) { group in
            for i in 0..<8 {
                group.addTask { trimmer.request(now: t0 + 1_000_000_000 + UInt64(i)) ? 1 : 0 }
            }
            return await group.reduce(0, +)
        }
        #expect(started == 0, "requests while a trim runs are folded into it, even past the interval")
        gate.signal()
        #expect(await eventually { trimmer.trims == 1 })
        #expect(ranOn.current.allSatisfy { $0.hasPrefix("torus-blk-") }, "on the blocking pool: \(ranOn.current)")
        #expect(!trimmer.request(now: t0 + 500_000_000), "not again within the interval")
        #expect(trimmer.request(now: t0 + 2_000_000_000), "again after it")
        gate.signal()
        #expect(await eventually { trimmer.trims == 2 })
        #expect(!HeapTrim(enabled: false) {}.request(), "a disabled trimmer never runs")
        _ = try await withLoop { _ in }
    }
}
