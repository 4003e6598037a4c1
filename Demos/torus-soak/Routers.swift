import Synchronization
import Torus
import TorusHub

/// How simulated routers behave.
struct FleetSettings: Sendable {
    /// The router port of each hub node (one entry for a single hub).
    var addresses: [SocketAddress]
    /// Router id → secret (from the credential file the hub was given).
    var secrets: [String: [UInt8]] = [:]
    var eventInterval: Duration
    var eventSize: Int
    /// Churn routers end each session after this many seconds (random in range).
    var sessionSeconds: ClosedRange<Double> = 10...40
    /// Extra time beyond the heartbeat timeout the hub gets to reap a vanished router.
    var reapMargin: Duration = .seconds(3)
}

enum RouterRole: Sendable {
    /// Never churns; commands to it must succeed.
    case stable
    /// Like stable, but never answers commands (every command to it must be 504).
    case mute
    /// Ends sessions in every way a real router does: vanishes, says BYE, resets,
    /// reconnects over its own live link.
    case churn
}

/// Loop-shared flags of one router session.
final class SessionFlags: Sendable {
    let ended = Atomic<Bool>(false)
    /// A vanished router stops answering too.
    let silent = Atomic<Bool>(false)
}

/// Why a session's reader stopped.
struct SessionEnd: Sendable {
    var bye: String?
    var error: String?
}

/// One simulated router: a task that keeps a session open to the hub and plays its
/// role until the soak stops.
struct RouterSim: Sendable {
    let id: String
    let role: RouterRole
    /// The hub node (index into the fleet's addresses) a stable or mute router keeps
    /// to; churning routers pick a node at random for every session, so in a cluster
    /// they move between nodes (and a reconnect over a live link is a cross-node
    /// takeover whenever the pick differs).
    let home: Int
    let loop: EventLoop
    let settings: FleetSettings
    let stats: SoakStats

    func run() async {
        var carried: (HubRouterClient, SessionFlags, Task<SessionEnd, Never>)?
        while !stats.isStopping {
            let session: (HubRouterClient, SessionFlags, Task<SessionEnd, Never>)
            if let c = carried {
                session = c
                carried = nil
            } else {
                guard let s = await open() else {
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                session = s
            }
            carried = await play(session)
        }
    }

    /// Connects, says HELLO, starts the reader.
    func open() async -> (HubRouterClient, SessionFlags, Task<SessionEnd, Never>)? {
        do {
            let node = role == .churn ? Int.random(in: 0..<settings.addresses.count) : home
            let client = try await HubRouterClient.connect(to: settings.addresses[node], on: loop, id: id,
                                                           secret: settings.secrets[id] ?? [])
            stats.update { $0.routerSessions += 1 }
            let flags = SessionFlags()
            let reader = Task(executorPreference: loop) { await read(client, flags) }
            return (client, flags, reader)
        } catch {
            stats.fail("router \(id): connect failed: \(error)") { $0.connectFailures += 1 }
            return nil
        }
    }

    /// Answers commands (unless mute or vanished) until the link ends.
    func read(_ client: HubRouterClient, _ flags: SessionFlags) async -> SessionEnd {
        var end = SessionEnd()
        do {
            while let frame = try await client.nextFrame() {
                switch frame {
                case .command(let requestID, let body):
                    guard role != .mute, !flags.silent.load(ordering: .relaxed) else { continue }
                    try await client.send(.reply(requestID: requestID, body: Array("ack:".utf8) + body))
                    stats.update { $0.commandsAnswered += 1 }
                case .bye(let reason):
                    end.bye = reason
                    // Only a churn router reconnects over its own live link; any
                    // other router replaced means someone else got in as it.
                    if role != .churn, reason.contains("replaced") {
                        stats.fail("router \(id) was displaced: \(reason)") { $0.displaced += 1 }
                    }
                default:
                    break
                }
            }
        } catch {
            end.error = "\(error)"
        }
        flags.ended.store(true, ordering: .releasing)
        return end
    }

    /// Runs one session to its end; returns a session to carry on with (after a
    /// replacement), or nil to reconnect.
    func play(_ session: (HubRouterClient, SessionFlags, Task<SessionEnd, Never>))
        async -> (HubRouterClient, SessionFlags, Task<SessionEnd, Never>)? {
        let (client, flags, reader) = session
        let heartbeat = client.heartbeatTimeout / 4
        let clock = ContinuousClock()
        let started = clock.now
        let lifetime: Duration = role == .churn
            ? .milliseconds(Int(Double.random(in: settings.sessionSeconds) * 1000)) : .seconds(1 << 30)
        var nextEvent = started + settings.eventInterval * Double.random(in: 0.1...1)
        var nextBeat = started + heartbeat
        var sequence = 0
        while !stats.isStopping, !flags.ended.load(ordering: .acquiring), clock.now - started < lifetime {
            let now = clock.now
            do {
                if now >= nextEvent {
                    sequence += 1
                    try await client.send(.event(eventPayload(sequence)))
                    stats.update { $0.eventsSent += 1 }
                    nextEvent = now + settings.eventInterval * Double.random(in: 0.8...1.2)
                    nextBeat = now + heartbeat
                } else if now >= nextBeat {
                    try await client.send(.heartbeat)
                    nextBeat = now + heartbeat
                }
            } catch {
                break
            }
            let wake = min(nextEvent, nextBeat)
            try? await Task.sleep(until: min(wake, clock.now + .milliseconds(500)), clock: clock)
        }
        if stats.isStopping {
            try? await client.send(.bye(reason: "soak over"))
            await client.close()
            _ = await reader.value
            return nil
        }
        if flags.ended.load(ordering: .acquiring) {
            // The hub ended a session nobody asked it to end.
            let end = await reader.value
            await client.close(flush: false)
            if role != .churn {
                stats.fail("stable router \(id) dropped by the hub (bye: \(end.bye ?? "-"), error: \(end.error ?? "-"))") {
                    $0.stableDropped += 1
                }
            }
            return nil
        }
        return await churn(session)
    }

    /// Ends a churn router's session in one of the ways real routers do.
    func churn(_ session: (HubRouterClient, SessionFlags, Task<SessionEnd, Never>))
        async -> (HubRouterClient, SessionFlags, Task<SessionEnd, Never>)? {
        let (client, flags, reader) = session
        switch Int.random(in: 0..<100) {
        case 0..<30:
            // Vanish: stop sending and answering, never close. The hub must reap it.
            flags.silent.store(true, ordering: .relaxed)
            stats.update { $0.vanished += 1 }
            let deadline = client.heartbeatTimeout + settings.reapMargin
            if await finished(reader, flags, within: deadline) {
                stats.update { $0.reaped += 1 }
            } else if !stats.isStopping {
                stats.fail("router \(id): vanished but not reaped within \(deadline)") { $0.reapFailures += 1 }
            }
            await client.close(flush: false)
            _ = await reader.value
        case 30..<55:
            try? await client.send(.bye(reason: "reboot"))
            await client.close()
            _ = await reader.value
            stats.update { $0.byes += 1 }
        case 55..<75:
            let connection = client.connection.connection
            connection.loop.execute { connection.reset() }
            await client.close(flush: false)
            _ = await reader.value
            stats.update { $0.resets += 1 }
        default:
            // Reconnect while the old link is still up: the hub must replace it.
            guard let next = await open() else {
                await client.close(flush: false)
                _ = await reader.value
                return nil
            }
            if await finished(reader, flags, within: .seconds(3)), (await reader.value).bye?.contains("replaced") == true {
                stats.update { $0.replacements += 1 }
            } else if !stats.isStopping {
                stats.fail("router \(id): old link not replaced") { $0.replaceFailures += 1 }
            }
            await client.close(flush: false)
            _ = await reader.value
            return next
        }
        try? await Task.sleep(for: .milliseconds(Int.random(in: 200...2000)))
        return nil
    }

    private func finished(_ reader: Task<SessionEnd, Never>, _ flags: SessionFlags,
                          within limit: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while clock.now < deadline && !stats.isStopping {
            if flags.ended.load(ordering: .acquiring) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return flags.ended.load(ordering: .acquiring)
    }

    private func eventPayload(_ sequence: Int) -> [UInt8] {
        var s = #"{"router":"\#(id)","seq":\#(sequence),"temp":\#(Int.random(in: 150...300)),"pad":""#
        let pad = max(0, settings.eventSize - s.utf8.count - 2)
        s += String(repeating: "x", count: pad) + #""}"#
        return Array(s.utf8)
    }
}
