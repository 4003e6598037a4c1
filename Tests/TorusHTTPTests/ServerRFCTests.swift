import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// RFC 9110/9112 details of the server, each over a real socket.
@Suite("Server: RFC details over real sockets")
struct ServerRFCTests {
    @Test("a higher HTTP/1 minor version (HTTP/1.9) is served as HTTP/1.1; HTTP/2.0 gets 505")
    func higherMinorVersion() async throws {
        try await withServer { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            try await c.write("GET /plaintext HTTP/1.9\r\nHost: t\r\n\r\nGET /json HTTP/1.9\r\nHost: t\r\n\r\n")
            let responses = try await readResponses(c, count: 2)
            #expect(responses.map(\.head.status.code) == [200, 200])
            #expect(responses.map(\.head.version) == [.http11, .http11])
            #expect(responses.allSatisfy { $0.head.keepAlive })
            #expect(responses.first?.body.string == "Hello, World!")
            await c.close()
            for version in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.1"] {
                let reply = try await rawExchange(server.address, on: loop, Array("GET /plaintext \(version)\r\nHost: t\r\n\r\n".utf8))
                #expect(reply.status == 505, "\(version)")
                #expect(reply.closed, "\(version)")
            }
        }
    }

    @Test("Transfer-Encoding with chunked not last gets 400 and a close; gzip before chunked gets 501")
    func chunkedNotLast() async throws {
        try await withServer { server, loop, _ in
            for (coding, status) in [("chunked, gzip", 400), ("gzip", 400), ("gzip, chunked", 501)] {
                let request = "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \(coding)\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                let reply = try await rawExchange(server.address, on: loop, Array(request.utf8))
                #expect(reply.status == status, "\(coding): \(reply.text)")
                #expect(reply.closed, "\(coding)")
                #expect(reply.text.contains("Connection: close"), "\(coding)")
            }
        }
    }

    @Test("Expect: 100-continue to a refusing route gets the final status at once, no 100, then a close")
    func expectContinueRefusedAtOnce() async throws {
        try await withServer { server, loop, _ in
            let cases: [(String, Int)] = [
                ("POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 404),
                ("POST /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", 405),
                ("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 99000000\r\nExpect: 100-continue\r\n\r\n", 413),
                ("POST /nowhere HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", 404),
            ]
            for (head, status) in cases {
                // Only the head is sent: the body would follow a 100 that never comes, so
                // a server waiting for it would answer nothing before the test's timeout.
                let reply = try await rawExchange(server.address, on: loop, Array(head.utf8), timeout: .seconds(10))
                #expect(reply.status == status, "\(reply.text)")
                #expect(!reply.text.contains("100 Continue"), "\(reply.text)")
                #expect(reply.closed, "\(status): left open")
            }
        }
    }

    @Test("a head trickled slowly is cut off by the head timeout with 408, though the request timeout is long")
    func headTimeout() async throws {
        try await withServer({ $0.headTimeout = .milliseconds(800); $0.requestTimeout = .seconds(60) }) { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            let head = Array("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".utf8)
            let clock = ContinuousClock()
            let start = clock.now
            let sent = Locked(0)
            let trickle = Task {
                for b in head {
                    do { try await c.write([b]) } catch { return }
                    sent.withLock { $0 += 1 }
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            let reply = await readUntilClose(c, timeout: .seconds(30))
            trickle.cancel()
            _ = await trickle.value
            #expect(reply.status == 408, "\(reply.text)")
            #expect(reply.closed)
            // Cut off before the head was complete, and not before the head timeout.
            #expect(sent.current < head.count, "\(sent.current) of \(head.count) bytes sent")
            #expect(clock.now - start >= .milliseconds(700))
            await c.close(flush: false)
        }
    }

    @Test("firstRequestTimeout closes a connection that sent nothing in time; one that did is kept alive past it")
    func firstRequestTimeout() async throws {
        try await withServer({ $0.firstRequestTimeout = .milliseconds(400) }) { server, loop, _ in
            let clock = ContinuousClock()
            let start = clock.now
            let silent = try await AsyncConnection.connect(to: server.address, on: loop)
            let reply = await readUntilClose(silent, timeout: .seconds(10))
            #expect(reply.closed && reply.bytes.isEmpty, "\(reply.text)")
            #expect(clock.now - start >= .milliseconds(350))
            #expect(clock.now - start < .seconds(5))
            await silent.close(flush: false)

            let prompt = try await AsyncConnection.connect(to: server.address, on: loop)
            try await prompt.write("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await readResponses(prompt, count: 1).first?.head.status == .ok)
            try await loop.sleep(for: .milliseconds(700))  // past the first-request deadline
            try await prompt.write("GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try await readResponses(prompt, count: 1).first?.head.status == .ok)
            await prompt.close()
        }
    }

    @Test("a response with closesConnection says Connection: close and the server closes after it")
    func responseClosesConnection() async throws {
        try await withServer { server, loop, _ in
            let reply = try await rawExchange(server.address, on: loop,
                                              Array("GET /bye HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            #expect(reply.status == 200, "\(reply.text)")
            #expect(reply.text.contains("Connection: close"), "\(reply.text)")
            #expect(reply.text.hasSuffix("bye"), "the pipelined second request is not answered: \(reply.text)")
            #expect(reply.closed)
        }
    }

    @Test("the head timeout does not cut a slow body whose head came in time")
    func headTimeoutSparesBody() async throws {
        try await withServer({ $0.headTimeout = .milliseconds(300); $0.requestTimeout = .seconds(120) }) { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            try await c.write("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n")
            for b in "12345678".utf8 {
                try await loop.sleep(for: .milliseconds(150))
                try await c.write([b])
            }
            let responses = try await readResponses(c, count: 1)
            #expect(responses.first?.head.status == .ok)
            #expect(responses.first?.body.string == "8")
            // The connection is still usable.
            try await c.write(RequestHead.get("/plaintext"))
            #expect(try await readResponses(c, count: 1).first?.head.status == .ok)
            await c.close()
        }
    }
}
