import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// Two standalone loops both have index 0. A server's per-loop state must be found by
/// the loop itself, not its index, or both loop threads would mutate one registry.
@Suite("HTTP on two standalone loops")
struct TwoLoopsTests {
    @Test("one HTTPServer on two standalone loops (both index 0) under concurrent keep-alive load")
    func twoStandaloneLoops() async throws {
        let a = try EventLoop()
        let b = try EventLoop()
        #expect(a.index == b.index, "the case under test: two loops with the same index")
        let clientLoops = [try EventLoop(), try EventLoop()]
        var router = HTTPRouter()
        router.get("/plaintext", fixed: PrecomputedResponse(contentType: "text/plain", body: "Hello, World!"))
        router.get("/hello/{n}") { request in .text("hello \(request.parameters["n"] ?? "")") }
        let server = try HTTPServer.start(on: [a, b], address: try .tcp("127.0.0.1", 0), router: router)

        let clients = 96
        let rounds = 25
        let opened = try await withThrowingTaskGroup(of: (AsyncConnection, Int).self) { group in
            for i in 0..<clients {
                let loop = clientLoops[i % clientLoops.count]
                group.addTask(executorPreference: loop) {
                    let c = try await AsyncConnection.connect(to: server.address, on: loop)
                    var ok = 0
                    for r in 0..<rounds {
                        let path = r % 2 == 0 ? "/plaintext" : "/hello/\(i)"
                        try await c.write(RequestHead.get(path))
                        let response = try await readResponses(c, count: 1)
                        let want = r % 2 == 0 ? "Hello, World!" : "hello \(i)"
                        if response.first?.head.status == .ok, response.first?.body == Array(want.utf8) { ok += 1 }
                    }
                    return (c, ok)
                }
            }
            var all: [(AsyncConnection, Int)] = []
            for try await result in group { all.append(result) }
            return all
        }
        #expect(opened.map(\.1).reduce(0, +) == clients * rounds)

        // Every client is still connected: the registries (one per loop) hold them all,
        // and the kernel spread them over both loops.
        #expect(await server.connectionCount() == clients)
        let perLoop = [await a.ledgerSnapshot().connections, await b.ledgerSnapshot().connections]
        #expect(perLoop.reduce(0, +) == clients)
        #expect(perLoop.allSatisfy { $0 > 0 }, "both loops accepted: \(perLoop)")

        for (c, _) in opened { await c.close() }
        #expect(await eventually { await server.connectionCount() == 0 })
        await server.shutdown(grace: .seconds(2))
        expectQuiescent(await a.shutdownGracefully())
        expectQuiescent(await b.shutdownGracefully())
        for loop in clientLoops { expectQuiescent(await loop.shutdownGracefully()) }
    }
}
