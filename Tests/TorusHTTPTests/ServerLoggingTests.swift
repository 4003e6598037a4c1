import Logging
import Testing
import Torus
import TorusHTTP
import TorusTestSupport

/// A log handler that keeps every entry, for tests.
struct RecordingLogHandler: LogHandler {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    let entries: Locked<[Entry]>
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).mapValues { "\($0)" }
        entries.withLock { $0.append(Entry(level: event.level, message: "\(event.message)", metadata: fields)) }
    }
}

@Suite("Server logging")
struct ServerLoggingTests {
    @Test("a refused bad request, a head timeout and a failing handler are logged; good requests are not at info")
    func logsRefusalsTimeoutsAndFailures() async throws {
        let entries = Locked<[RecordingLogHandler.Entry]>([])
        let logger = Logger(label: "test") { _ in RecordingLogHandler(entries: entries, logLevel: .info) }
        try await withServer({ $0.logger = logger; $0.headTimeout = .milliseconds(300) }) { server, loop, _ in
            // Good requests: nothing at info.
            let good = try await AsyncConnection.connect(to: server.address, on: loop)
            try await good.write(RequestHead.get("/plaintext") + RequestHead.get("/hello/1"))
            #expect(try await readResponses(good, count: 2).map(\.head.status.code) == [200, 200])
            #expect(entries.current.isEmpty)

            // A handler that throws: 500, logged as an error.
            try await good.write(RequestHead.get("/fail"))
            #expect(try await readResponses(good, count: 1).first?.head.status.code == 500)
            await good.close()
            #expect(await eventually { entries.current.contains { $0.level == .error } })
            let failure = entries.current.first { $0.level == .error }
            #expect(failure?.message.contains("500") == true)
            #expect(failure?.metadata["target"] == "/fail")

            // A malformed request: its status, reason and peer.
            let bad = try await rawExchange(server.address, on: loop, Array("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".utf8))
            #expect(bad.status == 400)
            let refused = entries.current.first { $0.message == "bad request refused" }
            #expect(refused?.level == .info)
            #expect(refused?.metadata["status"] == "400")
            #expect(refused?.metadata["reason"] == "repeated Host header")
            #expect(refused?.metadata["peer"]?.contains("127.0.0.1") == true)

            // An incomplete head: the head timeout.
            let slow = try await rawExchange(server.address, on: loop, Array("GET / HTTP/1.1\r\nHo".utf8))
            #expect(slow.status == 408)
            let timeout = entries.current.first { $0.message == "request timed out" }
            #expect(timeout?.metadata["part"] == "head")
        }
    }

    @Test("a request pipelined in a later segment waits for the handler's response before it")
    func pipelinedAfterHandlerWaits() async throws {
        try await withServer { server, loop, _ in
            let c = try await AsyncConnection.connect(to: server.address, on: loop)
            try await c.write(RequestHead.get("/slow"))
            try await loop.sleep(for: .milliseconds(100))
            try await c.write(RequestHead.get("/plaintext"))
            let responses = try await readResponses(c, count: 2)
            #expect(responses.map(\.body.string) == ["slow done", "Hello, World!"])
            await c.close()
        }
    }
}
