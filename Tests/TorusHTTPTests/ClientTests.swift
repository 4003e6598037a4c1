import Foundation
import HTTPTypes
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// Routes the client tests talk to (in-process server).
func clientTestRouter(concurrent: Locked<(now: Int, max: Int)> = Locked((0, 0))) -> HTTPRouter {
    var router = HTTPRouter()
    router.get("/plaintext", fixed: PrecomputedResponse(contentType: "text/plain", body: "Hello, World!"))
    router.post("/echo") { request in
        HTTPServerResponse(headerFields: [.contentType: "application/octet-stream"], body: .stream { writer in
            for try await chunk in request.body { try await writer.write(chunk) }
        })
    }
    router.get("/big") { request in
        let total = Int(request.query?.split(separator: "=").last ?? "0") ?? 0
        return HTTPServerResponse(body: .stream { writer in
            let block = testBytes(64 * 1024)
            var sent = 0
            while sent < total {
                let n = min(block.count, total - sent)
                try await writer.write(Array(block[0..<n]))
                sent += n
            }
        })
    }
    router.get("/slow") { request in
        try await request.loop.sleep(for: .seconds(2))
        return .text("slow")
    }
    router.get("/drip") { request in
        HTTPServerResponse(body: .stream { writer in
            for _ in 0..<100 {
                try await writer.write("drip\n")
                try await request.loop.sleep(for: .milliseconds(100))
            }
        })
    }
    router.get("/redirect") { _ in HTTPServerResponse(status: .found, headerFields: [.location: "/plaintext"], body: .bytes(Array("moved".utf8))) }
    router.get("/see-other") { _ in HTTPServerResponse(status: .seeOther, headerFields: [.location: "/plaintext"]) }
    router.get("/loop") { _ in HTTPServerResponse(status: .found, headerFields: [.location: "/loop"]) }
    router.get("/nocontent") { _ in HTTPServerResponse(status: .noContent) }
    router.get("/trailers") { _ in .text("x") }
    router.get("/concurrency") { request in
        concurrent.withLock { s in
            s.now += 1
            s.max = max(s.max, s.now)
        }
        try await request.loop.sleep(for: .milliseconds(50))
        concurrent.withLock { $0.now -= 1 }
        return .text("ok")
    }
    return router
}

/// Starts an in-process server on loop 0 and a client on loop 1 of a fresh group; both
/// are shut down (and the ledger checked quiescent) at the end.
func withClientAndServer(router: HTTPRouter = clientTestRouter(),
                         server serverConfiguration: HTTPServerConfiguration = HTTPServerConfiguration(),
                         client clientConfiguration: HTTPClientConfiguration = HTTPClientConfiguration(),
                         sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: (HTTPClient, HTTPServer, String) async throws -> Void) async throws {
    try await withGroup(loops: 2, sourceLocation: sourceLocation) { group in
        let server = try HTTPServer.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0), router: router,
                                          configuration: serverConfiguration)
        let client = HTTPClient(loop: group.loops[1], configuration: clientConfiguration)
        let base = "http://127.0.0.1:\(server.address.port!)"
        do {
            try await body(client, server, base)
        } catch {
            await client.shutdown()
            await server.shutdown(grace: .milliseconds(200))
            throw error
        }
        await client.shutdown()
        await server.shutdown(grace: .seconds(2))
        #expect(await server.connectionCount() == 0, sourceLocation: sourceLocation)
    }
}

@Suite("HTTP client")
struct ClientTests {
    @Test("GET over keep-alive: ten requests share one pooled connection")
    func keepAlive() async throws {
        try await withClientAndServer { client, server, base in
            for _ in 0..<10 {
                let response = try await client.get(base + "/plaintext")
                #expect(response.status == .ok)
                #expect(try await response.body.collect(upTo: 1024).string == "Hello, World!")
            }
            let port = server.address.port!
            #expect(client.connectionCounts(host: "127.0.0.1", port: port) == (1, 1))
            #expect(await server.connectionCount() == 1)
        }
    }

    @Test("HEAD, 204 and 404 keep the connection usable")
    func bodiless() async throws {
        try await withClientAndServer { client, server, base in
            let head = try await client.execute(HTTPClientRequest(method: .head, url: base + "/plaintext"))
            #expect(head.status == .ok)
            #expect(head.headerFields[.contentLength] == "13")
            #expect(try await head.body.collect(upTo: 100).isEmpty)
            let none = try await client.get(base + "/nocontent")
            #expect(none.status == .noContent)
            let missing = try await client.get(base + "/nothing-here")
            #expect(missing.status == .notFound)
            _ = try await missing.body.collect(upTo: 1000)
            #expect(client.connectionCounts(host: "127.0.0.1", port: server.address.port!).open == 1)
        }
    }

    @Test("streamed chunked upload of 4 MiB is echoed byte-exact, streamed back")
    func streamingEcho() async throws {
        try await withClientAndServer { client, _, base in
            let payload = testBytes(4 << 20, seed: 7)
            let request = try HTTPClientRequest(method: .post, url: base + "/echo", body: .stream(length: nil) { writer in
                var offset = 0
                while offset < payload.count {
                    let n = min(100_003, payload.count - offset)
                    try await writer.write(Array(payload[offset..<(offset + n)]))
                    offset += n
                }
            })
            let response = try await client.execute(request)
            #expect(response.headerFields[.transferEncoding] == "chunked")
            var received: [UInt8] = []
            var pieces = 0
            for try await chunk in response.body {
                received += chunk
                pieces += 1
            }
            #expect(received == payload)
            #expect(pieces > 1)
            // A fixed-length bytes body on the same connection.
            let small = try await client.post(base + "/echo", body: Array("abc".utf8))
            #expect(try await small.body.collect(upTo: 10).string == "abc")
        }
    }

    @Test("full duplex: the response is read while a streamed body is still being produced")
    func fullDuplexUpload() async throws {
        // The producer writes one chunk, then waits until the caller has the response
        // head and the echo of that chunk: a client that read nothing before the whole
        // body was sent would wait forever here (bounded by the request timeout).
        var configuration = HTTPClientConfiguration()
        configuration.requestTimeout = .seconds(20)
        try await withClientAndServer(client: configuration) { client, server, base in
            let port = server.address.port!
            let (echoed, echoedContinuation) = AsyncStream<Void>.makeStream()
            let request = try HTTPClientRequest(method: .post, url: base + "/echo", body: .stream(length: nil) { writer in
                try await writer.write("first;")
                for await _ in echoed { break }
                try await writer.write("second")
            })
            let response = try await client.execute(request)
            #expect(response.status == .ok)
            var received: [UInt8] = []
            for try await chunk in response.body {
                if received.isEmpty { echoedContinuation.yield() }
                received += chunk
            }
            echoedContinuation.finish()
            #expect(received.string == "first;second")
            // Both halves over: the connection went back to the pool and serves the next.
            #expect(await eventually { client.connectionCounts(host: "127.0.0.1", port: port) == (idle: 1, open: 1) })
            let again = try await client.post(base + "/echo", body: Array("again".utf8))
            #expect(try await again.body.collect(upTo: 10).string == "again")
            #expect(client.connectionCounts(host: "127.0.0.1", port: port).open == 1)
        }
    }

    @Test("a 3 MiB bytes body goes out beside the response's reading and is echoed byte-exact; the connection is reused")
    func largeBytesBodyEcho() async throws {
        try await withClientAndServer { client, server, base in
            let port = server.address.port!
            let payload = testBytes(3 << 20, seed: 11)
            let response = try await client.post(base + "/echo", body: payload)
            #expect(try await response.body.collect(upTo: 4 << 20) == payload)
            #expect(await eventually { client.connectionCounts(host: "127.0.0.1", port: port) == (idle: 1, open: 1) })
            let again = try await client.post(base + "/echo", body: payload)
            #expect(try await again.body.collect(upTo: 4 << 20) == payload)
            #expect(client.connectionCounts(host: "127.0.0.1", port: port).open == 1)
        }
    }

    @Test("a streamed body that fails after the response began fails that response's body")
    func uploadFailsAfterHead() async throws {
        try await withClientAndServer { client, server, base in
            let port = server.address.port!
            let (echoed, echoedContinuation) = AsyncStream<Void>.makeStream()
            struct ProducerGaveUp: Error {}
            let request = try HTTPClientRequest(method: .post, url: base + "/echo", body: .stream(length: nil) { writer in
                try await writer.write("partial")
                for await _ in echoed { break }
                throw ProducerGaveUp()
            })
            let response = try await client.execute(request)
            var received: [UInt8] = []
            var failure: HTTPClientError?
            do {
                for try await chunk in response.body {
                    received += chunk
                    echoedContinuation.yield()
                }
            } catch let error as HTTPClientError {
                failure = error
            }
            echoedContinuation.finish()
            #expect(received.string == "partial")
            if case .requestBodyFailed(let why)? = failure {
                #expect(why.contains("ProducerGaveUp"))
            } else {
                Issue.record("expected requestBodyFailed, got \(String(describing: failure))")
            }
            #expect(await eventually { client.connectionCounts(host: "127.0.0.1", port: port).open == 0 })
            #expect(await eventually { await server.connectionCount() == 0 })
        }
    }

    @Test("a body abandoned half-way closes its connection instead of pooling it")
    func abandonedBody() async throws {
        try await withClientAndServer { client, server, base in
            let port = server.address.port!
            do {
                let response = try await client.get(base + "/big?n=33554432")
                var iterator = response.body.makeAsyncIterator()
                let first = try await iterator.next()
                #expect(first?.isEmpty == false)
            }  // response and iterator dropped here
            #expect(await eventually { client.connectionCounts(host: "127.0.0.1", port: port).open == 0 })
            #expect(await eventually { await server.connectionCount() == 0 })
            // The pool still works.
            let again = try await client.get(base + "/plaintext")
            #expect(try await again.body.collect(upTo: 100).string == "Hello, World!")
        }
    }

    @Test("collect(upTo:) over the limit throws and closes the connection")
    func collectLimit() async throws {
        try await withClientAndServer { client, server, base in
            let response = try await client.get(base + "/big?n=1000000")
            await #expect(throws: HTTPClientError.bodyTooLarge(limit: 100_000)) {
                _ = try await response.body.collect(upTo: 100_000)
            }
            #expect(await eventually { await server.connectionCount() == 0 })
            let ok = try await client.get(base + "/big?n=1000")
            #expect(try await ok.body.collect(upTo: 1000) == Array(testBytes(64 * 1024)[0..<1000]))
        }
    }

    @Test("the pool is bounded per host: 40 concurrent requests over at most 3 connections")
    func bounded() async throws {
        let concurrent = Locked((now: 0, max: 0))
        var configuration = HTTPClientConfiguration()
        configuration.maxConnectionsPerHost = 3
        try await withClientAndServer(router: clientTestRouter(concurrent: concurrent), client: configuration) { client, server, base in
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<40 {
                    group.addTask {
                        let r = try await client.get(base + "/concurrency")
                        return try await r.body.collect(upTo: 100).string
                    }
                }
                for try await text in group { #expect(text == "ok") }
            }
            #expect(concurrent.current.max <= 3)
            #expect(concurrent.current.max >= 2)
            #expect(client.connectionCounts(host: "127.0.0.1", port: server.address.port!).open <= 3)
        }
    }

    @Test("idle timeout while waiting for a slow response")
    func idleTimeout() async throws {
        var configuration = HTTPClientConfiguration()
        configuration.idleTimeout = .milliseconds(400)
        try await withClientAndServer(client: configuration) { client, _, base in
            await #expect(throws: HTTPClientError.idleTimeout) { _ = try await client.get(base + "/slow") }
        }
    }

    @Test("request timeout bounds the whole exchange, body included")
    func requestTimeout() async throws {
        var configuration = HTTPClientConfiguration()
        configuration.requestTimeout = .milliseconds(1500)
        try await withClientAndServer(client: configuration) { client, server, base in
            // The drip lasts 10 s; the request may not.
            await #expect(throws: HTTPClientError.requestTimeout) {
                let response = try await client.get(base + "/drip")
                for try await _ in response.body {}
            }
            #expect(await eventually { await server.connectionCount() == 0 })
        }
    }

    @Test("connect to a closed port fails with connectFailed(ECONNREFUSED)")
    func connectRefused() async throws {
        try await withLoop { loop in
            // Find a free port by binding and closing a listener.
            let listener = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in EchoBack() }
            let port = listener.address.port!
            listener.close()
            try await Task.sleep(for: .milliseconds(50))
            let client = HTTPClient(loop: loop)
            await #expect(throws: HTTPClientError.connectFailed(errno: ECONNREFUSED)) {
                _ = try await client.get("http://127.0.0.1:\(port)/")
            }
            await client.shutdown()
        }
    }

    @Test("redirects are off by default, followed on request, and bounded")
    func redirects() async throws {
        try await withClientAndServer { client, _, base in
            let plain = try await client.get(base + "/redirect")
            #expect(plain.status == .found)
            #expect(try await plain.body.collect(upTo: 100).string == "moved")
        }
        var configuration = HTTPClientConfiguration()
        configuration.redirects = .follow(max: 3)
        try await withClientAndServer(client: configuration) { client, _, base in
            let followed = try await client.get(base + "/redirect")
            #expect(followed.status == .ok)
            #expect(try await followed.body.collect(upTo: 100).string == "Hello, World!")
            let seeOther = try await client.get(base + "/see-other")
            #expect(seeOther.status == .ok)
            await #expect(throws: HTTPClientError.tooManyRedirects) { _ = try await client.get(base + "/loop") }
        }
    }

    @Test("shutdown closes pooled connections and refuses new requests")
    func shutdown() async throws {
        try await withClientAndServer { client, server, base in
            let r = try await client.get(base + "/plaintext")
            _ = try await r.body.collect(upTo: 100)
            #expect(await server.connectionCount() == 1)
            await client.shutdown()
            #expect(await eventually { await server.connectionCount() == 0 })
            await #expect(throws: HTTPClientError.shutdown) { _ = try await client.get(base + "/plaintext") }
        }
    }

    @Test("a pooled connection the server closed is replaced transparently")
    func staleConnection() async throws {
        try await withGroup(loops: 2) { group in
            // Answers one request per connection with a keep-alive response, then closes
            // it shortly after (as a keep-alive timeout would).
            let accepted = Locked(0)
            let closedByServer = Locked(0)
            let server = try rawServer(on: group.loops[0]) { c in
                accepted.withLock { $0 += 1 }
                _ = try? await c.read()
                try? await c.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                try? await c.connection.loop.sleep(for: .milliseconds(50))
                await c.close()
                closedByServer.withLock { $0 += 1 }
            }
            let client = HTTPClient(loop: group.loops[1])
            for i in 1...3 {
                let r = try await client.get("http://127.0.0.1:\(server.address.port!)/")
                #expect(try await r.body.collect(upTo: 100).string == "ok")
                #expect(await eventually { closedByServer.current == i })
            }
            #expect(accepted.current == 3)
            await client.shutdown()
            server.close()
        }
    }

    @Test("protocol errors and premature close from a raw server")
    func badServers() async throws {
        try await withGroup(loops: 2) { group in
            let replies: [(String, HTTPClientError)] = [
                ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", .connectionClosed),
                ("HTTP/1.1 2000 OK\r\n\r\n", .protocolError(.invalidStatusCode)),
                ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", .protocolError(.contentLengthWithTransferEncoding)),
                ("", .connectionClosed),
                ("garbage\r\n\r\n", .protocolError(.invalidStatusLine)),
            ]
            for (reply, expected) in replies {
                let server = try rawServer(on: group.loops[0]) { c in
                    _ = try? await c.read()
                    try? await c.write(reply)
                    await c.close()
                }
                let client = HTTPClient(loop: group.loops[1])
                await #expect(throws: expected, "reply \(reply.debugDescription)") {
                    let r = try await client.get("http://127.0.0.1:\(server.address.port!)/")
                    _ = try await r.body.collect(upTo: 1000)
                }
                await client.shutdown()
                server.close()
            }
            // A read-until-close body is complete at EOF.
            let server = try rawServer(on: group.loops[0]) { c in
                _ = try? await c.read()
                try? await c.write("HTTP/1.1 200 OK\r\n\r\nuntil the end")
                await c.close()
            }
            let client = HTTPClient(loop: group.loops[1])
            let r = try await client.get("http://127.0.0.1:\(server.address.port!)/")
            #expect(try await r.body.collect(upTo: 100).string == "until the end")
            await client.shutdown()
            server.close()
        }
    }

    @Test("a task cancelled while streaming a body closes its connection")
    func cancelledReader() async throws {
        try await withClientAndServer { client, server, base in
            let port = server.address.port!
            let reader = Task {
                let response = try await client.get(base + "/drip")
                for try await _ in response.body {}
            }
            try await Task.sleep(for: .milliseconds(300))
            reader.cancel()
            await #expect(throws: CancellationError.self) { try await reader.value }
            #expect(await eventually { client.connectionCounts(host: "127.0.0.1", port: port).open == 0 })
            #expect(await eventually { await server.connectionCount() == 0 })
        }
    }

    @Test("chunked response with trailers from a raw server; the connection is reused")
    func trailers() async throws {
        try await withGroup(loops: 2) { group in
            let accepted = Locked(0)
            let server = try rawServer(on: group.loops[0]) { c in
                accepted.withLock { $0 += 1 }
                var buffer: [UInt8] = []
                while let chunk = try? await c.read() {
                    buffer += chunk
                    while let end = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                        buffer.removeSubrange(..<end.upperBound)
                        try? await c.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                                           + "4\r\nwiki\r\n5;note=x\r\npedia\r\n0\r\nX-Checksum: 42\r\n\r\n")
                    }
                }
                await c.close()
            }
            let client = HTTPClient(loop: group.loops[1])
            for _ in 0..<3 {
                let r = try await client.get("http://127.0.0.1:\(server.address.port!)/")
                #expect(try await r.body.collect(upTo: 100).string == "wikipedia")
                #expect(r.body.trailers[HTTPField.Name("X-Checksum")!] == "42")
            }
            #expect(accepted.current == 1)
            await client.shutdown()
            server.close()
        }
    }

    @Test("against the torus-http demo binary: json, echo, keep-alive")
    func demoBinary() async throws {
        let demo = try ChildProcess(BuiltProducts.path("torus-http"), ["--host", "127.0.0.1", "--port", "0", "--threads", "1"])
        guard let port = await demo.listeningPort() else {
            Issue.record("demo did not start: \(demo.text)")
            _ = await demo.stop()
            return
        }
        try await withLoop { loop in
            let client = HTTPClient(loop: loop)
            let base = "http://127.0.0.1:\(port)"
            let json = try await client.get(base + "/json")
            #expect(json.headerFields[.contentType] == "application/json")
            #expect(try await json.body.collect(upTo: 1000).string == #"{"message":"Hello, World!"}"#)
            let payload = testBytes(3 << 20, seed: 3)
            let echo = try await client.post(base + "/echo", body: payload)
            #expect(try await echo.body.collect(upTo: 4 << 20) == payload)
            // Back in the pool once the upload (beside the response) has ended too.
            #expect(await eventually { client.connectionCounts(host: "127.0.0.1", port: port) == (1, 1) })
            await client.shutdown()
        }
        #expect(await demo.stop() == 0)
    }
}

/// Echoes what it receives (a placeholder handler for a listener that is closed at once).
final class EchoBack: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) { connection.send(bytes.unsafeBytes) }
}

/// A server on one loop whose connections are served by `serve` through the async face.
func rawServer(on loop: EventLoop, _ serve: @escaping @Sendable (AsyncConnection) async -> Void) throws -> Server {
    try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { connection in
        let async = AsyncConnection(connection)
        Task(executorPreference: connection.loop) { await serve(async) }
        return connection.handler!
    }
}
