import Foundation
import HTTPTypes
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// The demo's routes (plaintext, json, streaming echo, static files) plus a few for
/// the tests: a body-collecting upload, an async hello, and a slow handler.
func serverTestRouter(root: String) throws -> HTTPRouter {
    var router = HTTPRouter()
    router.get("/plaintext", fixed: PrecomputedResponse(contentType: "text/plain", body: "Hello, World!",
                                                       headerFields: [.server: "torus"]))
    router.get("/json", fixed: PrecomputedResponse(contentType: "application/json",
                                                  body: #"{"message":"Hello, World!"}"#))
    router.post("/echo") { request in
        let type = request.header("content-type") ?? "application/octet-stream"
        return HTTPServerResponse(headerFields: [.contentType: type], body: .stream { writer in
            for try await chunk in request.body { try await writer.write(chunk) }
        })
    }
    router.post("/upload") { request in
        let body = try await request.body.collect(upTo: 16 << 20)
        return .text("\(body.count)")
    }
    router.get("/hello/{n}") { request in .text("hello \(request.parameters["n"] ?? "")") }
    router.get("/slow") { request in
        try await request.loop.sleep(for: .milliseconds(800))
        return .text("slow done")
    }
    router.get("/fail") { _ in throw TestHandlerFailure() }
    router.get("/bye") { _ in
        var response = HTTPServerResponse.text("bye")
        response.closesConnection = true
        return response
    }
    router.get("/gate/{id}") { request in
        let id = request.parameters["id"] ?? ""
        testGates.withLock { $0.entered.insert(id) }
        while !testGates.withLock({ $0.open.contains(id) }) {
            try await request.loop.sleep(for: .milliseconds(10))
        }
        return .text("gate \(id) passed")
    }
    try router.files("/static", root: root)
    return router
}

/// What `/fail` throws (answered with 500).
struct TestHandlerFailure: Error {}

/// Gates for `/gate/{id}`: the handler records that it entered, then waits until the
/// test opens its gate (deterministic "a request is in flight" without timing).
let testGates = Locked((entered: Set<String>(), open: Set<String>()))

/// A folder of static files for the tests (removed at the end of `body`).
@discardableResult
func withStaticRoot<T>(_ body: (String) async throws -> T) async throws -> T {
    let root = NSTemporaryDirectory() + "torus-static-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
    try Data("hello static\n".utf8).write(to: URL(fileURLWithPath: root + "/hello.txt"))
    try Data(testBytes(100_000, seed: 11)).write(to: URL(fileURLWithPath: root + "/data.bin"))
    try Data(#"{"a":1}"#.utf8).write(to: URL(fileURLWithPath: root + "/sub/x.json"))
    // A fixed modification time, so If-Modified-Since is deterministic.
    let mtime = Date(timeIntervalSince1970: 1_700_000_000)
    for f in ["/hello.txt", "/data.bin", "/sub/x.json"] {
        try FileManager.default.setAttributes([.modificationDate: mtime], ofItemAtPath: root + f)
    }
    defer { try? FileManager.default.removeItem(atPath: root) }
    return try await body(root)
}

/// Runs an in-process server (loop 0 of a two-loop group; loop 1 is for test clients),
/// shuts it down gracefully and asserts the ledger quiescent.
func withServer(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
                sourceLocation: SourceLocation = #_sourceLocation,
                _ body: (HTTPServer, EventLoop, String) async throws -> Void) async throws {
    try await withStaticRoot { root in
        try await withGroup(loops: 2, sourceLocation: sourceLocation) { group in
            var configuration = HTTPServerConfiguration()
            configure(&configuration)
            let server = try HTTPServer.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0),
                                              router: serverTestRouter(root: root), configuration: configuration)
            do {
                try await body(server, group.loops[1], root)
            } catch {
                await server.shutdown(grace: .milliseconds(200))
                throw error
            }
            await server.shutdown(grace: .seconds(5))
            #expect(await server.connectionCount() == 0, sourceLocation: sourceLocation)
        }
    }
}

/// What a raw exchange saw: every byte until the server closed (or the time ran out).
struct RawReply {
    var bytes: [UInt8]
    /// The server closed the connection (FIN or RST) within the time allowed.
    var closed: Bool
    var text: String { String(decoding: bytes, as: UTF8.self) }
    /// The status code of the first response.
    var status: Int? {
        guard bytes.count >= 12, bytes.starts(with: Array("HTTP/1.".utf8)) else { return nil }
        return Int(String(decoding: bytes[9..<12], as: UTF8.self))
    }
}

/// Sends `request` on a new connection and reads until the server closes it or
/// `timeout` passes (then the connection is closed by the test and `closed` is false).
func rawExchange(_ address: SocketAddress, on loop: EventLoop, _ request: [UInt8],
                 timeout: Duration = .seconds(5)) async throws -> RawReply {
    let connection = try await AsyncConnection.connect(to: address, on: loop)
    try? await connection.write(request)
    let reply = await readUntilClose(connection, timeout: timeout)
    await connection.close(flush: false)
    return reply
}

/// Reads until EOF (or reset) or until `timeout`.
func readUntilClose(_ connection: AsyncConnection, timeout: Duration) async -> RawReply {
    let collected = Locked<[UInt8]>([])
    let closed = await withTaskGroup(of: Bool.self) { group in
        group.addTask {
            do {
                while let chunk = try await connection.read() { collected.withLock { $0 += chunk } }
                return true
            } catch is CancellationError {
                return false
            } catch {
                return true  // reset: closed too
            }
        }
        group.addTask {
            try? await connection.loop.sleep(for: timeout)
            return false
        }
        let first = await group.next() ?? false
        group.cancelAll()
        return first
    }
    return RawReply(bytes: collected.current, closed: closed)
}

/// Reads complete responses from `connection` until `count` have arrived.
func readResponses(_ connection: AsyncConnection, count: Int, toHEAD: Bool = false, headRequests: Set<Int> = [],
                   initial: [UInt8] = []) async throws
    -> [(head: HTTPResponseHead, body: [UInt8])] {
    var pending: [UInt8]? = initial.isEmpty ? nil : initial
    var parser = HTTPResponseParser()
    // `headRequests`: the indices of the responses that answer HEAD (all with `toHEAD`).
    parser.expectResponse(toHEAD: toHEAD || headRequests.contains(0))
    var out: [(head: HTTPResponseHead, body: [UInt8])] = []
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    while out.count < count {
        let next: [UInt8]?
        if let p = pending {
            next = p
            pending = nil
        } else {
            next = try await connection.read()
        }
        guard let chunk = next else { throw HTTPClientError.connectionClosed }
        try chunk.withUnsafeBytes { p in
            var offset = 0
            repeat {
                var ended = false
                offset += try parser.parse(UnsafeRawBufferPointer(rebasing: p[offset...])) { event in
                    switch event {
                    case .head(let h): head = h
                    case .body(let b): body += b
                    case .end:
                        out.append((head!, body))
                        body = []
                        ended = true
                        return .pause
                    case .informational: break
                    }
                    return .proceed
                }
                if ended { parser.expectResponse(toHEAD: toHEAD || headRequests.contains(out.count)) } else { break }
            } while offset < p.count && !parser.isClosed
        }
    }
    return out
}

/// Runs a child process to completion (bounded) and returns its exit status and output.
func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(30)) async throws -> (Int32?, String) {
    let child = try ChildProcess(executable, arguments)
    let status = await child.wait(timeout: timeout)
    return (status, child.text)
}

extension RequestHead {
    static func get(_ path: String) -> [UInt8] { Array("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n".utf8) }
}
