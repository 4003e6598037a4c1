import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// Cases that only make sense against a live server (routing, handlers, timing).
let liveMalformedCases: [MalformedCase] = [
    MalformedCase("upload: bad chunk size to a body-reading handler",
                  "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", 400),
    MalformedCase("upload: chunk terminator wrong to a body-reading handler",
                  "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 400),
    MalformedCase("upload: chunked body over the limit to a body-reading handler",
                  "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n800001\r\n", 413),
    MalformedCase("echo: bad trailer to a streaming handler",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n", 400),
    MalformedCase("good request then garbage on the same connection",
                  "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n", 400),
    MalformedCase("asterisk with OPTIONS but HTTP/1.1 without Host", "OPTIONS * HTTP/1.1\r\n\r\n", 400),
]

@Suite("Server: malformed requests over real sockets")
struct ServerMalformedTests {
    @Test("every malformed request gets its status and a closed connection; the server keeps serving")
    func malformed() async throws {
        let cases = malformedCases + liveMalformedCases
        #expect(cases.count >= 50)
        try await withServer { server, loop, _ in
            for c in cases {
                let reply = try await rawExchange(server.address, on: loop, c.input)
                // The last status in the reply (a good request may come first).
                let statuses = reply.text.ranges(of: "HTTP/1.1 ").compactMap { Int(reply.text[$0.upperBound...].prefix(3)) }
                #expect(statuses.last == c.status, "\(c.name): \(reply.text.prefix(200).debugDescription)")
                #expect(reply.closed, "\(c.name): connection left open")
                #expect(reply.text.contains("Connection: close"), "\(c.name)")
                // A fresh connection is served normally.
                let good = try await AsyncConnection.connect(to: server.address, on: loop)
                try await good.write(RequestHead.get("/plaintext"))
                let responses = try await readResponses(good, count: 1)
                #expect(responses.first?.head.status.code == 200, "after \(c.name)")
                #expect(responses.first?.body.string == "Hello, World!")
                await good.close()
            }
            #expect(await eventually { await server.connectionCount() == 0 })
        }
    }
}
