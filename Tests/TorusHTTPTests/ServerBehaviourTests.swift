import Foundation
import Glibc
import HTTPTypes
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

@Suite("Server behaviour over real sockets")
struct ServerBehaviourTests {
    @Test("100 pipelined requests in one write are answered in order")
    func pipelining() async throws {
        try await withServer { server, loop, _ in
            var batch: [UInt8] = []
            var expected: [String] = []
            for i in 0..<100 {
                switch i % 4 {
                case 0:
                    batch += RequestHead.get("/plaintext")
                    expected.append("Hello, World!")
                case 1:
                    batch += RequestHead.get("/hello/\(i)")   // async handler
                    expected.append("hello \(i)\n".trimmingCharacters(in: .newlines))
                case 2:
                    batch += Array("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: \(String(i).utf8.count)\r\n\r\n\(i)".utf8)
                    expected.append("\(i)")
                default:
                    batch += RequestHead.get("/json")
                    expected.append(#"{"message":"Hello, World!"}"#)
                }
            }
            let connection = try await AsyncConnection.connect(to: server.address, on: loop)
            try await connection.write(batch)
            let responses = try await readResponses(connection, count: 100)
            #expect(responses.map { $0.body.string } == expected)
            #expect(responses.allSatisfy { $0.head.status == .ok && $0.head.keepAlive })
            await connection.close()
        }
    }

    /// Fixed answers go straight into the write queue while nothing is answered before
    /// them in the batch, the others through the request's output buffer: mixed in one
    /// write, they must still leave in request order.
    @Test("fixed, refused, HEAD and HTTP/1.0 answers pipelined in one write leave in order")
    func mixedInlineAnswersInOrder() async throws {
        try await withServer { server, loop, _ in
            let plain = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
            let batch = plain + "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n" + plain
                + "HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n" + plain
                + "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + plain
            let connection = try await AsyncConnection.connect(to: server.address, on: loop)
            try await connection.write(Array(batch.utf8))
            let responses = try await readResponses(connection, count: 7, headRequests: [3])
            let hello = "Hello, World!"
            #expect(responses.map { $0.head.status.code } == [200, 404, 200, 200, 200, 200, 200])
            #expect(responses.map { $0.body.string } == [hello, "not found\n", hello, "", hello,
                                                          #"{"message":"Hello, World!"}"#, hello])
            #expect(responses.allSatisfy { $0.head.keepAlive })
            await connection.close()
        }
    }

    @Test("a request split at every byte boundary (and byte by byte) is answered")
    func splitEverywhere() async throws {
        try await withServer { server, loop, _ in
            let request = Array("GET /hello/split HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
            for cut in 1..<request.count {
                let c = try await AsyncConnection.connect(to: server.address, on: loop)
                try await c.write(Array(request[..<cut]))
                try await loop.sleep(for: .milliseconds(3))
                try await c.write(Array(request[cut...]))
                let r = try await readResponses(c, count: 1)
                #expect(r.first?.body.string == "hello split", "cut at \(cut)")
                await c.close()
            }
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            for b in request {
                try await c.write([b])
                try await loop.sleep(for: .milliseconds(2))
            }
            let r = try await readResponses(c, count: 1)
            #expect(r.first?.body.string == "hello split")
            await c.close()
        }
    }

    @Test("10 MiB chunked upload is echoed back chunked, byte-exact")
    func bigChunkedEcho() async throws {
        // The default body limit is 8 MiB; this server allows 16, and a long request
        // timeout (a machine loaded by the parallel suite once took 30 s for it).
        try await withServer({ $0.limits.maxBodyBytes = 16 << 20; $0.requestTimeout = .seconds(120) }) { server, loop, _ in
            let client = HTTPClient(loop: loop)
            let payload = testBytes(10 << 20, seed: 99)
            let request = HTTPClientRequest(method: .post, host: "127.0.0.1", port: server.address.port!, target: "/echo",
                                            body: .stream(length: nil) { writer in
                var offset = 0
                var size = 1
                while offset < payload.count {
                    let n = min(size, payload.count - offset)
                    try await writer.write(Array(payload[offset..<(offset + n)]))
                    offset += n
                    size = size * 3 % 200_000 + 1  // odd chunk sizes
                }
            })
            let response = try await client.execute(request)
            #expect(response.head.framing == .chunked)
            var received: [UInt8] = []
            received.reserveCapacity(payload.count)
            for try await chunk in response.body { received += chunk }
            #expect(received.count == payload.count)
            #expect(received == payload)
            await client.shutdown()
        }
        // Over the body limit (1 MiB here, 8 MiB by default) the upload is refused. When
        // the echo has started its response, the server closes mid-response and the
        // client reports it; when the limit is reached before the handler's task has
        // answered (a busy machine: the suite runs tests in parallel), the refusal is a
        // whole 413 instead. Either way nothing of the excess is echoed as a success.
        try await withServer({ $0.limits.maxBodyBytes = 1 << 20 }) { server, loop, _ in
            let client = HTTPClient(loop: loop)
            let payload = testBytes(2 << 20, seed: 98)
            let request = HTTPClientRequest(method: .post, host: "127.0.0.1", port: server.address.port!, target: "/echo",
                                            body: .stream(length: nil) { writer in
                var offset = 0
                while offset < payload.count {
                    try await writer.write(Array(payload[offset..<min(offset + 65536, payload.count)]))
                    offset += 65536
                }
            })
            var outcome = ""
            do {
                let response = try await client.execute(request)
                if response.head.status.code == 413 {
                    outcome = "413"
                }
                for try await _ in response.body {}
                if outcome.isEmpty { outcome = "complete \(response.head.status.code)" }
            } catch let error as HTTPClientError where error == .connectionClosed {
                outcome = outcome.isEmpty ? "closed" : outcome
            }
            #expect(outcome == "closed" || outcome == "413", "over the limit: \(outcome)")
            await client.shutdown()
        }
    }

    @Test("FIN in the middle of a request body ends the handler's body with connectionClosed, and the connection closes")
    func finMidBody() async throws {
        // The echo streams its answer as the body arrives; the client stops writing
        // half-way through a chunked body. The handler's body must end (with an error)
        // rather than wait for bytes that cannot come, and the server must close
        // instead of holding the half-closed connection.
        try await withServer { server, loop, _ in
            for framing in ["Transfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n", "Content-Length: 100\r\n\r\npartial"] {
                let c = try await AsyncConnection.connect(to: server.address, on: loop)
                try await c.write("POST /echo HTTP/1.1\r\nHost: t\r\n" + framing)
                var answer: [UInt8] = []
                while !answer.string.contains("partial"), let more = try await c.read() { answer += more }
                c.shutdownWriting()
                #expect(await eventually { await server.connectionCount() == 0 }, "\(framing)")
                while let more = try await c.read() { answer += more }
                #expect(answer.string.hasPrefix("HTTP/1.1 200 OK\r\n"))
                // The response was cut short: no last chunk after the echoed bytes.
                #expect(!answer.string.hasSuffix("0\r\n\r\n"), "\(answer.string)")
                await c.close()
            }
        }
    }

    @Test("Expect: 100-continue gets 100 before the body, then the response")
    func expectContinue() async throws {
        try await withServer { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            try await c.write("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            // The 100 comes first; the streaming echo may send its head right after it.
            var interim: [UInt8] = []
            while interim.count < 25, let more = try await c.read() { interim += more }
            #expect(interim.string.hasPrefix("HTTP/1.1 100 Continue\r\n\r\n"))
            try await c.write("hello")
            let r = try await readResponses(c, count: 1, initial: interim)
            #expect(r.first?.head.status == .ok)
            #expect(r.first?.body.string == "hello")
            // A request with Expect to a missing route gets its final status without a 100.
            try await c.write("POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            let missing = try await readResponses(c, count: 1)
            #expect(missing.first?.head.status == .notFound)
            await c.close()
        }
    }

    @Test("slowloris: a head trickled slowly gets 408 and the connection closes")
    func slowloris() async throws {
        try await withServer({ $0.requestTimeout = .milliseconds(500) }) { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            let head = Array("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 100)
            let clock = ContinuousClock()
            let start = clock.now
            let trickle = Task {
                for b in head {
                    do { try await c.write([b]) } catch { return }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            let reply = await readUntilClose(c, timeout: .seconds(25))
            trickle.cancel()
            _ = await trickle.value
            #expect(reply.status == 408, "\(reply.text)")
            #expect(reply.closed)
            // The whole head would take 6 s to trickle; the default timeout is 30 s.
            #expect(clock.now - start < .seconds(25))
            await c.close(flush: false)
        }
    }

    @Test("slow body: a body that stalls gets 408 and closes, also for a handler already reading it")
    func slowBody() async throws {
        try await withServer({ $0.requestTimeout = .milliseconds(500) }) { server, loop, _ in
            for path in ["/upload", "/echo"] {
                let c = try await AsyncConnection.connect(to: server.address, on: loop)
                try await c.write("POST \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten b")
                let reply = await readUntilClose(c, timeout: .seconds(25))
                #expect(reply.closed, "\(path): left open")
                if path == "/upload" { #expect(reply.status == 408, "\(path): \(reply.text)") }
                await c.close(flush: false)
            }
        }
    }

    @Test("1,000 concurrent keep-alive connections, three requests each")
    func thousandConnections() async throws {
        raiseFileLimit(to: 4096)
        var configuration = EventLoop.Configuration()
        configuration.receiveBufferCount = 4096
        try await withStaticRoot { root in
            try await withGroup(loops: 2, configuration) { group in
                let server = try HTTPServer.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0),
                                                  router: serverTestRouter(root: root))
                let address = server.address
                let clientLoop = group.loops[1]
                let ok = Locked(0)
                let connected = Locked(0)
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    for i in 0..<1000 {
                        tasks.addTask {
                            let c = try await AsyncConnection.connect(to: address, on: clientLoop)
                            connected.withLock { $0 += 1 }
                            for j in 0..<3 {
                                try await c.write(RequestHead.get(j == 1 ? "/hello/\(i)" : "/plaintext"))
                                let r = try await readResponses(c, count: 1)
                                if r.first?.head.status == .ok { ok.withLock { $0 += 1 } }
                                if j == 0 {
                                    // Hold every connection open at once before going on.
                                    _ = await eventually(timeout: .seconds(30)) { connected.current == 1000 }
                                }
                            }
                            await c.close()
                        }
                    }
                    try await tasks.waitForAll()
                }
                #expect(ok.current == 3000)
                await server.shutdown(grace: .seconds(5))
                #expect(await server.connectionCount() == 0)
            }
        }
    }

    @Test("graceful shutdown: idle keep-alive connections close, an in-flight slow request finishes")
    func gracefulShutdown() async throws {
        try await withServer { server, loop, _ in
            let idle = try await AsyncConnection.connect(to: server.address, on: loop)
            try await idle.write(RequestHead.get("/plaintext"))
            _ = try await readResponses(idle, count: 1)
            let busy = try await AsyncConnection.connect(to: server.address, on: loop)
            let gate = UUID().uuidString
            try await busy.write(RequestHead.get("/gate/" + gate))
            #expect(await eventually { testGates.current.entered.contains(gate) })  // the handler is running
            let stopping = Task { await server.shutdown(grace: .seconds(30)) }
            let idleReply = await readUntilClose(idle, timeout: .seconds(20))
            #expect(idleReply.closed)
            #expect(idleReply.bytes.isEmpty)
            // The in-flight request is still being answered; let it finish now.
            testGates.withLock { _ = $0.open.insert(gate) }
            let busyReply = await readUntilClose(busy, timeout: .seconds(20))
            #expect(busyReply.status == 200)
            #expect(busyReply.text.hasSuffix("\r\n\r\ngate \(gate) passed"))
            #expect(busyReply.text.contains("Connection: close"))
            #expect(busyReply.closed)
            await stopping.value
            // No longer accepting.
            await #expect(throws: (any Error).self) {
                let c = try await AsyncConnection.connect(to: server.address, on: loop, timeout: .seconds(2))
                await c.close()
            }
            await idle.close()
            await busy.close()
        }
    }
}

/// Raises the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit).
func raiseFileLimit(to wanted: rlim_t) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < wanted else { return }
    limit.rlim_cur = min(wanted, limit.rlim_max)
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

@Suite("Connections per source address")
struct ConnectionsPerSourceTests {
    /// Three connections from 127.0.0.1 are served; the fourth gets 503 and is closed
    /// before anything is read; once one of the three closes, a new one is served.
    /// The refusal is counted.
    @Test func fourthConnectionFromOneAddressIsRefusedUntilOneCloses() async throws {
        try await withServer({ $0.maxConnectionsPerSource = 3 }) { server, loop, _ in
            var held: [AsyncConnection] = []
            for _ in 0..<3 {
                let c = try await AsyncConnection.connect(to: server.address, on: loop)
                try await c.write(RequestHead.get("/plaintext"))
                #expect(try await readResponses(c, count: 1).first?.head.status == .ok)
                held.append(c)
            }
            let refused = try await AsyncConnection.connect(to: server.address, on: loop)
            var answer: [UInt8] = []
            while let chunk = try await refused.read() { answer += chunk }
            let text = String(decoding: answer, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(text)")
            #expect(text.hasSuffix("\r\n\r\ntoo many connections from this address\n"), "\(text)")
            await refused.close()
            #expect(server.refusedConnections == 1)

            await held.removeFirst().close()
            var served = false
            for _ in 0..<100 where !served {
                let c = try await AsyncConnection.connect(to: server.address, on: loop)
                try await c.write(RequestHead.get("/plaintext"))
                if let status = try? await readResponses(c, count: 1).first?.head.status { served = status == .ok }
                await c.close()
                if !served { try await Task.sleep(for: .milliseconds(20)) }  // the close reaches the server
            }
            #expect(served)
            for c in held { await c.close() }
        }
    }
}
