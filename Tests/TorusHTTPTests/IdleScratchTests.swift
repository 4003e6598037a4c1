import Testing
import Torus
@testable import TorusHTTP
import TorusTestSupport

/// Whether each live connection of `server` holds no parse or output storage.
func handlersHoldNoScratch(_ server: HTTPServer) async -> [Bool] {
    await server.state.registries.collect { shard in shard.value.members.map { $0.holdsNoScratch } }.flatMap { $0 }
}

@Suite("Idle HTTP connections hold no scratch")
struct IdleScratchTests {
    @Test("between requests a kept-alive connection gives its parse and output storage back; a half-received head keeps it")
    func scratchGivenBackWhenIdle() async throws {
        try await withServer { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            // An inline answer and an async handler's answer.
            for (path, body) in [("/plaintext", "Hello, World!"), ("/hello/1", "hello 1")] {
                try await c.write(RequestHead.get(path))
                let r = try await readResponses(c, count: 1)
                #expect(r.first?.body.string == body)
                #expect(await handlersHoldNoScratch(server) == [true], "after \(path)")
            }
            // A head in two pieces: the first half is kept across callbacks.
            try await c.write(Array("GET /plaintext HTTP/1.1\r\nHo".utf8))
            #expect(await eventually { await handlersHoldNoScratch(server) == [false] })
            try await c.write(Array("st: t\r\n\r\n".utf8))
            let r = try await readResponses(c, count: 1)
            #expect(r.first?.body.string == "Hello, World!")
            #expect(await handlersHoldNoScratch(server) == [true])
            await c.close()
        }
    }

    @Test("an idle keep-alive connection's handler is small; a request in progress takes spare work from the loop and gives it back")
    func idleHandlerIsSmall() async throws {
        try await withServer { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            try await c.write(RequestHead.get("/plaintext"))
            let r = try await readResponses(c, count: 1)
            #expect(r.first?.body.string == "Hello, World!")
            let sizes = await server.state.registries.collect { shard in
                shard.value.members.map { heapBlockSize(of: $0) ?? 0 }
            }.flatMap { $0 }
            // Phase, last-request flag, server, connection, scratch, work: it was ~330
            // bytes with the parser and buffers inline.
            #expect(sizes.count == 1 && sizes.allSatisfy { $0 <= 96 + heapBlockSlack }, "handler sizes \(sizes)")
            let spareBefore = await server.state.spareWorkCount()
            try await c.write(Array("GET /plaintext HTTP/1.1\r\nHo".utf8))
            #expect(await eventually { await handlersHoldNoScratch(server) == [false] })
            #expect(await server.state.spareWorkCount() == spareBefore - 1, "the half-received head took the spare work")
            // Completing the head answers it and gives the work back.
            try await c.write(Array("st: t\r\n\r\n".utf8))
            #expect(try await readResponses(c, count: 1).first?.body.string == "Hello, World!")
            #expect(await server.state.spareWorkCount() == spareBefore, "given back once idle")
            await c.close()
        }
    }

    @Test("the per-loop connection set: members leave from the middle, the count follows, shutdown reaches the rest")
    func connectionSetRemovesFromTheMiddle() async throws {
        try await withServer { server, loop, _ in
            var clients: [AsyncConnection] = []
            for _ in 0..<5 {
                let c = try await AsyncConnection.connect(to: server.address, on: loop)
                try await c.write(RequestHead.get("/plaintext"))
                #expect(try await readResponses(c, count: 1).first?.body.string == "Hello, World!")
                clients.append(c)
            }
            #expect(await server.connectionCount() == 5)
            await clients[1].close()
            await clients[3].close()
            #expect(await eventually { await server.connectionCount() == 3 })
            // The members left are the open ones: each still answers.
            for i in [0, 2, 4] {
                try await clients[i].write(RequestHead.get("/plaintext"))
                #expect(try await readResponses(clients[i], count: 1).first?.body.string == "Hello, World!")
            }
            await server.shutdown(grace: .seconds(1))
            #expect(await server.connectionCount() == 0)
            for i in [0, 2, 4] { await clients[i].close() }
        }
    }
}

@Suite("HTTP request deadlines in the loop's deadline wheel")
struct RequestDeadlineTests {
    @Test("half-received requests arm no timer of their own; each still gets its 408 at the head timeout")
    func noTimerPerRequest() async throws {
        try await withGroup(loops: 2) { group in
            let serverLoop = group.loops[0], clientLoop = group.loops[1]
            var configuration = HTTPServerConfiguration()
            // Long enough that all 24 are half-received at once on a loaded machine.
            configuration.headTimeout = .seconds(8)
            configuration.requestTimeout = .seconds(60)
            var router = HTTPRouter()
            router.get("/plaintext", fixed: PrecomputedResponse(contentType: "text/plain", body: "Hello"))
            let server = try HTTPServer.start(on: [serverLoop], address: try .tcp("127.0.0.1", 0),
                                              router: router, configuration: configuration)
            let before = await serverLoop.ledgerSnapshot()[.timeout]
            let clock = ContinuousClock()
            let start = clock.now
            // The clients run on their loop, not the test process's cooperative threads
            // (which a starting test run holds for seconds, longer than the head timeout).
            let clients = try await withTaskExecutorPreference(clientLoop) {
                var clients: [AsyncConnection] = []
                for _ in 0..<24 {
                    let c = try await AsyncConnection.connect(to: server.address, on: clientLoop)
                    try await c.write(Array("GET /plaintext HTTP/1.1\r\nHo".utf8))
                    clients.append(c)
                }
                return clients
            }
            // At least half of them half-received at once (the full suite runs tests
            // side by side: another test may hold the process's descriptors for a
            // while and delay some accepts).
            let held = await eventually(timeout: .seconds(60)) {
                await handlersHoldNoScratch(server).filter { !$0 }.count >= 12
            }
            let during = await serverLoop.ledgerSnapshot()[.timeout]
            let holding = await handlersHoldNoScratch(server).filter { !$0 }.count
            #expect(held, "handlers holding request work: \(holding)")
            // Those incomplete requests: the loop's timeouts in flight are its own (the
            // deadline wheel's one timer, housekeeping), not one per request.
            #expect(during.inFlight <= before.inFlight + 2,
                    "timeouts in flight \(before.inFlight) -> \(during.inFlight) with \(holding) requests incomplete")
            for c in clients {
                let reply = await readUntilClose(c, timeout: .seconds(30))
                #expect(reply.status == 408, "\(reply.text)")
                #expect(reply.closed)
                await c.close(flush: false)
            }
            #expect(clock.now - start >= .milliseconds(7_700), "not before the head timeout")
            await server.shutdown(grace: .seconds(2))
        }
    }
}
