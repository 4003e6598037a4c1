import HTTPTypes
import Synchronization
import Torus
import TorusHTTP
import TorusHub

/// Who the HTTP callers may address.
struct Targets: Sendable {
    var stable: [String]
    var churn: [String]
    var mute: String?
    /// The hub node each stable and mute router keeps to (index into the endpoints).
    var home: [String: Int] = [:]
}

/// The hub's HTTP face as host and port (for `HTTPClient` and `ws://` URLs).
struct HubEndpoint: Sendable {
    var host: String
    var port: UInt16
    /// The API token every request and WebSocket handshake of the soak's real
    /// clients carries (an admin token).
    var token: String

    init(_ address: SocketAddress, token: String) {
        switch address {
        case .ipv4(let h, let p), .ipv6(let h, let p): (host, port) = (h, p)
        case .unix: (host, port) = ("127.0.0.1", 0)
        }
        self.token = token
    }

    /// `Authorization` value for `token` (the endpoint's own by default).
    func authorization(_ token: String? = nil) -> String { "Bearer " + (token ?? self.token) }

    /// `ws://HOST:PORT` + `target`.
    func webSocketURL(_ target: String) -> String {
        (host.contains(":") ? "ws://[\(host)]:\(port)" : "ws://\(host):\(port)") + target
    }
}

/// One HTTP caller: sends commands at its share of the rate through a TorusHTTP
/// `HTTPClient` (its own pool, one connection): keep-alive callers reuse the
/// connection, one-shot callers send `Connection: close` so every request opens a
/// new one. Checks every answer it can predict.
struct CommandCaller: Sendable {
    let index: Int
    let oneShot: Bool
    let interval: Duration
    /// Every hub node's HTTP face: each request goes to one at random (in a cluster,
    /// most commands cross nodes).
    let endpoints: [HubEndpoint]
    let loop: EventLoop
    let targets: Targets
    let stats: SoakStats
    /// Caller 0 also checks `GET /devices` every few seconds.
    let checksDevices: Bool

    struct Answer {
        var status: Int
        var text: String
        /// The node (index into the endpoints) that answered.
        var node: Int
    }

    func run() async {
        var configuration = HTTPClientConfiguration()
        configuration.maxConnectionsPerHost = 1
        configuration.requestTimeout = .seconds(30)
        let client = HTTPClient(loop: loop, configuration: configuration)
        let clock = ContinuousClock()
        var next = clock.now + interval * Double.random(in: 0...1)
        var lastDevicesCheck = clock.now
        var n = 0
        while !stats.isStopping {
            try? await Task.sleep(until: next, clock: clock)
            next = next + interval
            if clock.now > next + .seconds(5) { next = clock.now }  // do not burst after a stall
            guard !stats.isStopping else { break }
            n += 1
            do {
                if checksDevices && clock.now - lastDevicesCheck > .seconds(5) {
                    lastDevicesCheck = clock.now
                    try await checkDevices(client)
                }
                try await command(client, n)
            } catch {
                if !stats.isStopping {
                    stats.fail("caller \(index): \(error)") { $0.httpErrors += 1 }
                }
            }
        }
        await client.shutdown()
    }

    private func request(_ client: HTTPClient, _ method: HTTPRequest.Method, _ target: String,
                         body: [UInt8]? = nil) async throws -> Answer {
        let node = Int.random(in: 0..<endpoints.count)
        let endpoint = endpoints[node]
        var fields: HTTPFields = [.authorization: endpoint.authorization()]
        if oneShot { fields[.connection] = "close" }
        let response = try await client.execute(HTTPClientRequest(method: method, host: endpoint.host, port: endpoint.port,
                                                                  target: target, headerFields: fields,
                                                                  body: body.map { .bytes($0) }))
        let bytes = try await response.body.collect(upTo: 4 << 20)
        let keepAlive = !oneShot
        stats.update { if keepAlive { $0.keepAliveRequests += 1 } else { $0.oneShotRequests += 1 } }
        return Answer(status: Int(response.status.code), text: String(decoding: bytes, as: UTF8.self), node: node)
    }

    private func command(_ c: HTTPClient, _ n: Int) async throws {
        let body = "c\(index)-\(n)"
        let roll = Int.random(in: 0..<100)
        let started = ContinuousClock.now
        if roll < 3 || targets.stable.isEmpty {
            let r = try await request(c, .post, "/devices/nobody-\(n)/commands", body: Array(body.utf8))
            if r.status == 404 { stats.update { $0.expected404OK += 1 } } else {
                stats.fail("unknown router: \(r.status), not 404") { $0.expected404Failed += 1 }
            }
        } else if roll < 6, let mute = targets.mute {
            let r = try await request(c, .post, "/devices/\(mute)/commands?timeout=300", body: Array(body.utf8))
            if r.status == 504 { stats.update { $0.expected504OK += 1 } } else {
                stats.fail("mute router: \(r.status), not 504") { $0.expected504Failed += 1 }
            }
        } else if roll < 12, let churn = targets.churn.randomElement() {
            let r = try await request(c, .post, "/devices/\(churn)/commands?timeout=2000", body: Array(body.utf8))
            stats.update { $0.churnStatus[r.status, default: 0] += 1 }
            if r.status == 200 && r.text != "ack:" + body {
                stats.fail("churn router \(churn): wrong reply \(r.text)") { $0.stableFailed += 1 }
            }
        } else if let stable = targets.stable.randomElement() {
            let r = try await request(c, .post, "/devices/\(stable)/commands", body: Array(body.utf8))
            if r.status == 200 && r.text == "ack:" + body {
                let crossed = targets.home[stable].map { $0 != r.node } ?? false
                stats.update {
                    $0.stableOK += 1
                    if crossed { $0.crossNodeCommandsOK += 1 }
                }
            } else {
                stats.fail("stable router \(stable): \(r.status) \(r.text.prefix(80))") { $0.stableFailed += 1 }
            }
        }
        let ms = Int((ContinuousClock.now - started) / .milliseconds(1))
        stats.update { $0.latencyMaxMs = max($0.latencyMaxMs, ms) }
    }

    private func checkDevices(_ c: HTTPClient) async throws {
        let r = try await request(c, .get, "/devices")
        let missing = targets.stable.filter { !r.text.contains(#""id":"\#($0)""#) }
        if r.status == 200 && missing.isEmpty {
            stats.update { $0.devicesChecks += 1 }
        } else {
            stats.fail("GET /devices: \(r.status), missing \(missing.prefix(5))") { $0.devicesFailed += 1 }
        }
    }
}
