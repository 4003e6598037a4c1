import Synchronization
import Torus
import TorusHub

/// Who the HTTP callers may address.
struct Targets: Sendable {
    var stable: [String]
    var churn: [String]
    var mute: String?
}

/// One HTTP caller: sends commands at its share of the rate, on a keep-alive
/// connection or (one-shot callers) a new connection with `Connection: close` each
/// time, and checks every answer it can predict.
struct CommandCaller: Sendable {
    let index: Int
    let oneShot: Bool
    let interval: Duration
    let address: SocketAddress
    let loop: EventLoop
    let targets: Targets
    let stats: SoakStats
    /// Caller 0 also checks `GET /devices` every few seconds.
    let checksDevices: Bool

    func run() async {
        let clock = ContinuousClock()
        var next = clock.now + interval * Double.random(in: 0...1)
        var lastDevicesCheck = clock.now
        var client: MiniHTTPClient?
        var n = 0
        while !stats.isStopping {
            try? await Task.sleep(until: next, clock: clock)
            next = next + interval
            if clock.now > next + .seconds(5) { next = clock.now }  // do not burst after a stall
            guard !stats.isStopping else { break }
            n += 1
            do {
                if client == nil || client?.reusable == false || oneShot {
                    if let old = client { await old.close() }
                    client = try await MiniHTTPClient.connect(to: address, on: loop)
                }
                guard let c = client else { continue }
                if checksDevices && clock.now - lastDevicesCheck > .seconds(5) {
                    lastDevicesCheck = clock.now
                    try await checkDevices(c)
                    if c.reusable == false || oneShot { continue }
                }
                try await command(c, n)
            } catch {
                if !stats.isStopping {
                    stats.fail("caller \(index): \(error)") { $0.httpErrors += 1 }
                }
                if let old = client { await old.close(flush: false) }
                client = nil
            }
        }
        if let c = client { await c.close() }
    }

    private func command(_ c: MiniHTTPClient, _ n: Int) async throws {
        let body = "c\(index)-\(n)"
        let roll = Int.random(in: 0..<100)
        let started = ContinuousClock.now
        let keepAlive = !oneShot
        stats.update { if keepAlive { $0.keepAliveRequests += 1 } else { $0.oneShotRequests += 1 } }
        if roll < 3 || targets.stable.isEmpty {
            let r = try await c.request("POST", "/devices/nobody-\(n)/commands", body: Array(body.utf8), keepAlive: keepAlive)
            if r.status == 404 { stats.update { $0.expected404OK += 1 } } else {
                stats.fail("unknown router: \(r.status), not 404") { $0.expected404Failed += 1 }
            }
        } else if roll < 6, let mute = targets.mute {
            let r = try await c.request("POST", "/devices/\(mute)/commands?timeout=300", body: Array(body.utf8),
                                        keepAlive: keepAlive)
            if r.status == 504 { stats.update { $0.expected504OK += 1 } } else {
                stats.fail("mute router: \(r.status), not 504") { $0.expected504Failed += 1 }
            }
        } else if roll < 12, let churn = targets.churn.randomElement() {
            let r = try await c.request("POST", "/devices/\(churn)/commands?timeout=2000", body: Array(body.utf8),
                                        keepAlive: keepAlive)
            stats.update { $0.churnStatus[r.status, default: 0] += 1 }
            if r.status == 200 && r.text != "ack:" + body {
                stats.fail("churn router \(churn): wrong reply \(r.text)") { $0.stableFailed += 1 }
            }
        } else if let stable = targets.stable.randomElement() {
            let r = try await c.request("POST", "/devices/\(stable)/commands", body: Array(body.utf8), keepAlive: keepAlive)
            if r.status == 200 && r.text == "ack:" + body {
                stats.update { $0.stableOK += 1 }
            } else {
                stats.fail("stable router \(stable): \(r.status) \(r.text.prefix(80))") { $0.stableFailed += 1 }
            }
        }
        let ms = Int((ContinuousClock.now - started) / .milliseconds(1))
        stats.update { $0.latencyMaxMs = max($0.latencyMaxMs, ms) }
    }

    private func checkDevices(_ c: MiniHTTPClient) async throws {
        let r = try await c.request("GET", "/devices", keepAlive: !oneShot)
        let text = r.text
        let missing = targets.stable.filter { !text.contains(#""id":"\#($0)""#) }
        if r.status == 200 && missing.isEmpty {
            stats.update { $0.devicesChecks += 1 }
        } else {
            stats.fail("GET /devices: \(r.status), missing \(missing.prefix(5))") { $0.devicesFailed += 1 }
        }
    }
}

/// Keeps track of open subscriber streams so the end of the run can close them.
final class OpenStreams: Sendable {
    private let streams = Mutex<[ObjectIdentifier: MiniHTTPClient]>([:])
    func add(_ c: MiniHTTPClient) { streams.withLock { $0[ObjectIdentifier(c)] = c } }
    func remove(_ c: MiniHTTPClient) { _ = streams.withLock { $0.removeValue(forKey: ObjectIdentifier(c)) } }
    func closeAll() async {
        for c in streams.withLock({ Array($0.values) }) { await c.close(flush: false) }
    }
}

/// One event subscriber. Until the WebSocket faces land these are server-sent-event
/// streams on `GET /events`: some want everything, some a few routers, some read
/// slowly, some churn (reset abruptly or close, then come back).
struct Subscriber: Sendable {
    enum Mode: Sendable { case all, filtered, slow, churn }
    let index: Int
    let mode: Mode
    let address: SocketAddress
    let loop: EventLoop
    let targets: Targets
    let stats: SoakStats
    let open: OpenStreams

    func run() async {
        while !stats.isStopping {
            let target: String
            switch mode {
            case .filtered:
                target = "/events?routers=" + (0..<3).compactMap { _ in targets.stable.randomElement() }.joined(separator: ",")
            default:
                target = "/events"
            }
            var client: MiniHTTPClient?
            do {
                let c = try await MiniHTTPClient.connect(to: address, on: loop)
                client = c
                open.add(c)
                try await c.send("GET", target)
                let (status, _) = try await c.readHead()
                guard status == 200 else {
                    stats.fail("subscriber \(index): status \(status)") { $0.subscriberFailures += 1 }
                    throw MiniHTTPClient.ClientError.closed
                }
                stats.update { $0.subscriberSessions += 1 }
                try await consume(c)
            } catch {
                if mode == .slow {
                    // A reader that falls too far behind is the hub's to drop (its queue
                    // drops events, and the send timeout closes a stalled stream).
                    stats.update { $0.slowSubscribers += 1 }
                } else if !stats.isStopping && mode != .churn {
                    stats.fail("subscriber \(index) (\(mode)) stream ended: \(error)") { $0.subscriberFailures += 1 }
                }
            }
            if let c = client {
                open.remove(c)
                await c.close(flush: false)
            }
            if !stats.isStopping { try? await Task.sleep(for: .milliseconds(Int.random(in: 200...1000))) }
        }
    }

    private func consume(_ c: MiniHTTPClient) async throws {
        let clock = ContinuousClock()
        let until = mode == .churn ? clock.now + .seconds(Double.random(in: 5...20)) : clock.now + .seconds(1 << 30)
        var events = 0
        var pings = 0
        defer {
            let (e, p) = (events, pings)
            stats.update {
                $0.subscriberEvents += e
                $0.subscriberPings += p
            }
        }
        while !stats.isStopping {
            let line = try await c.readLine()
            if line.hasPrefix("event: ") {
                events += 1
                // About half the event rate of an all-events stream: the hub's queue
                // for it fills and drops the oldest events.
                if mode == .slow { try? await Task.sleep(for: .milliseconds(20)) }
            } else if line == ": ping" {
                pings += 1
            }
            if events >= 200 {
                let e = events
                stats.update { $0.subscriberEvents += e }
                events = 0
            }
            if mode == .churn && clock.now > until {
                if Bool.random() {
                    let connection = c.connection.connection
                    connection.loop.execute { connection.reset() }
                    stats.update { $0.subscriberResets += 1 }
                }
                return
            }
        }
    }
}
