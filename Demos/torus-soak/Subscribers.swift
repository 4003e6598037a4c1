import Synchronization
import Torus
import TorusWebSocket

/// Open subscriber sockets, so the end of the run can close them.
final class OpenSockets: Sendable {
    private let sockets = Mutex<[ObjectIdentifier: WebSocketConnection]>([:])
    func add(_ ws: WebSocketConnection) { sockets.withLock { $0[ObjectIdentifier(ws)] = ws } }
    func remove(_ ws: WebSocketConnection) { _ = sockets.withLock { $0.removeValue(forKey: ObjectIdentifier(ws)) } }

    /// Every open socket reads again and starts the closing handshake (1001).
    func closeAll() {
        for ws in sockets.withLock({ Array($0.values) }) {
            ws.loop.execute {
                ws.resumeReading()
                ws.close(code: .goingAway, reason: "soak over")
            }
        }
    }
}

/// How the hub's WebSocket faces are timed (to bound what the soak waits for).
struct FaceTiming: Sendable {
    var pingInterval: Duration
    var pingTimeout: Duration
    var closeTimeout: Duration

    /// Longest a client that stopped reading may stay connected: up to two ping
    /// intervals before the ping goes out (the check ticks every interval), the
    /// ping timeout, the close timeout, and scheduling slack.
    var removalBound: Duration { pingInterval * 2 + pingTimeout + closeTimeout + .seconds(3) }
}

/// One WebSocket client of the hub, playing one part until the soak stops:
///
/// - `web`: `/web`, reads every event;
/// - `app`: `/app` with three stable routers, checks that only their events arrive,
///   and every 10–20 s swaps one router for another (the hub acknowledges with the
///   new set; from then on the old router's events must not arrive);
/// - `slow`: `/web`, reads at about half the event rate: the hub drops events for it
///   and, once its reading pauses (TCP backpressure), closes it by ping timeout;
/// - `frozen`: subscribes, then never reads: the hub must remove it by ping timeout
///   (checked: after the bound it reads again and must find the end);
/// - `reset`: reads 3–10 s, then resets the TCP connection (no close frame);
/// - `churn`: reads 3–8 s, then closes normally; comes back.
///
/// `reset`, `churn` and `frozen` alternate between `/app` and `/web`.
struct Subscriber: Sendable {
    enum Mode: String, Sendable { case web, app, slow, frozen, reset, churn }
    let index: Int
    let mode: Mode
    /// Every hub node's HTTP face: each session subscribes on one at random.
    let endpoints: [HubEndpoint]
    let loop: EventLoop
    let targets: Targets
    let stats: SoakStats
    let open: OpenSockets
    let timing: FaceTiming

    /// Whether this one uses `/app` (else `/web`).
    var usesApp: Bool {
        switch mode {
        case .app: true
        case .web, .slow: false
        case .frozen, .reset, .churn: (index / 10) % 2 == 0
        }
    }

    func run() async {
        var configuration = WebSocketClientConfiguration()
        configuration.connection.pingInterval = nil  // the hub pings; we answer
        configuration.connection.inboundBufferLimit = 256 << 10
        configuration.connection.closeTimeout = .seconds(3)
        configuration.connectTimeout = .seconds(5)
        configuration.handshakeTimeout = .seconds(5)
        while !stats.isStopping {
            let node = Int.random(in: 0..<endpoints.count)
            let endpoint = endpoints[node]
            configuration.headers = [HandshakeHeader("Authorization", endpoint.authorization())]
            var chosen = Set<String>()
            var target = "/web"
            if usesApp {
                chosen = Set((0..<3).compactMap { _ in targets.stable.randomElement() })
                target = "/app?routers=" + chosen.sorted().joined(separator: ",")
            }
            var socket: WebSocketConnection?
            do {
                let ws = try await WebSocketClient.connect(to: endpoint.webSocketURL(target), on: loop,
                                                           configuration: configuration)
                socket = ws
                open.add(ws)
                stats.update { $0.subscriberSessions += 1 }
                let first = try await ws.nextMessage()
                let expected = usesApp ? Self.subscribedJSON(chosen) : #"{"subscribed":["*"]}"#
                guard case .text(let ack)? = first, ack == expected else {
                    throw SoakError("first message \(String(describing: first)), expected \(expected)")
                }
                try await session(ws, chosen: chosen, node: node)
            } catch {
                if stats.isStopping {
                    // The run's own wind-down.
                } else if mode == .slow {
                    // A reader that falls too far behind is the hub's to drop.
                    stats.update { $0.slowSubscribers += 1 }
                } else if mode != .reset {
                    stats.fail("subscriber \(index) (\(mode.rawValue) \(target)) ended: \(error)") {
                        $0.subscriberFailures += 1
                    }
                }
            }
            if let ws = socket {
                open.remove(ws)
                ws.loop.execute { if ws.closeInfo == nil { ws.connection.reset() } }
                _ = await ws.closed()
            }
            if !stats.isStopping { try? await Task.sleep(for: .milliseconds(Int.random(in: 200...1000))) }
        }
    }

    static func subscribedJSON(_ ids: Set<String>) -> String {
        #"{"subscribed":["# + ids.sorted().map { "\"\($0)\"" }.joined(separator: ",") + "]}"
    }

    /// The router of an event message (`{"router":"ID",...`), without a JSON parse.
    static func router(of text: String) -> Substring? {
        let prefix = #"{"router":""#
        guard text.hasPrefix(prefix) else { return nil }
        let rest = text.dropFirst(prefix.count)
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return rest[..<end]
    }

    /// Reads one session on hub node `node` (events of routers homed elsewhere are
    /// counted as crossing nodes).
    private func session(_ ws: WebSocketConnection, chosen initial: Set<String>, node: Int) async throws {
        let clock = ContinuousClock()
        switch mode {
        case .frozen:
            await onLoop(ws) { $0.pauseReading() }
            await sleepUnlessStopping(timing.removalBound)
            if stats.isStopping { return }
            // Read again: the hub must have closed us by now, so what is left in the
            // socket ends quickly.
            await onLoop(ws) { $0.resumeReading() }
            let ended = await within(.seconds(10)) {
                // Ends when the hub closed us, cleanly or by an error (a reset): both count.
                while (try? await ws.nextMessage()) != nil {}
            }
            if ended {
                stats.update { $0.frozenRemoved += 1 }
            } else {
                stats.fail("frozen subscriber \(index) still connected \(timing.removalBound) after it stopped reading") {
                    $0.frozenNotRemoved += 1
                }
            }
            return
        default:
            break
        }
        let until: ContinuousClock.Instant? = switch mode {
        case .reset: clock.now + .milliseconds(Int.random(in: 3000...10000))
        case .churn: clock.now + .milliseconds(Int.random(in: 3000...8000))
        default: nil
        }
        var allowed = initial
        var pending: (next: Set<String>, ack: String)?
        var nextSwap = clock.now + .seconds(Double.random(in: 10...20))
        var events = 0
        var crossed = 0
        defer {
            let (e, c) = (events, crossed)
            stats.update {
                $0.subscriberEvents += e
                $0.crossNodeEvents += c
            }
        }
        while !stats.isStopping {
            if let until, clock.now >= until { break }
            if mode == .app, pending == nil, clock.now >= nextSwap, let old = allowed.randomElement(),
               let new = targets.stable.randomElement(), !allowed.contains(new) {
                nextSwap = clock.now + .seconds(Double.random(in: 10...20))
                var next = allowed
                next.remove(old)
                next.insert(new)
                pending = (next, Self.subscribedJSON(next))
                allowed.insert(new)  // until the acknowledgement, both old and new may arrive
                try await ws.send(text: #"{"unsubscribe":["\#(old)"],"subscribe":["\#(new)"]}"#)
            }
            guard let message = try await ws.nextMessage() else { break }
            guard case .text(let text) = message else { throw SoakError("binary message from the hub") }
            if let router = Self.router(of: text) {
                events += 1
                if endpoints.count > 1, let home = targets.home[String(router)], home != node { crossed += 1 }
                if usesApp && !allowed.contains(String(router)) {
                    stats.fail("app subscriber \(index): event of \(router), subscribed to \(allowed.sorted())") {
                        $0.filterViolations += 1
                    }
                }
                if events >= 200 {
                    let (e, c) = (events, crossed)
                    stats.update {
                        $0.subscriberEvents += e
                        $0.crossNodeEvents += c
                    }
                    events = 0
                    crossed = 0
                }
                // About half the event rate of a /web client: it falls behind.
                if mode == .slow { try? await Task.sleep(for: .milliseconds(20)) }
            } else if text.hasPrefix(#"{"subscribed":"#) {
                guard let p = pending, text == p.ack else { throw SoakError("unexpected acknowledgement \(text)") }
                allowed = p.next
                pending = nil
                stats.update { $0.subscriptionChanges += 1 }
            } else {
                throw SoakError("unexpected message \(text.prefix(100))")
            }
        }
        if stats.isStopping { return }
        switch mode {
        case .reset:
            await onLoop(ws) { $0.connection.reset() }
            stats.update { $0.subscriberResets += 1 }
        case .churn:
            await ws.close(code: .normalClosure, reason: "churn")
            stats.update { $0.subscriberCloses += 1 }
        default:
            throw SoakError("the hub ended the stream")
        }
    }

    private func onLoop(_ ws: WebSocketConnection, _ body: @escaping @Sendable (WebSocketConnection) -> Void) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            ws.loop.execute {
                body(ws)
                c.resume()
            }
        }
    }

    private func sleepUnlessStopping(_ d: Duration) async {
        let clock = ContinuousClock()
        let end = clock.now + d
        while !stats.isStopping && clock.now < end {
            try? await Task.sleep(for: min(.milliseconds(250), end - clock.now))
        }
    }

    /// Runs `body`; true when it finished within `limit`.
    private func within(_ limit: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        await withTaskGroup(of: Bool.self) { g in
            g.addTask { await body(); return true }
            g.addTask { try? await Task.sleep(for: limit); return false }
            let first = await g.next() ?? false
            g.cancelAll()
            return first
        }
    }
}
