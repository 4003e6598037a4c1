import Glibc
import Synchronization
import Torus
import TorusHub

/// How the simulated routers behave.
struct SimSettings: Sendable {
    var address: SocketAddress
    /// Mean seconds between two events of one router.
    var eventInterval: Double
    /// Mean seconds a router stays online before it vanishes for a while.
    var sessionSeconds: Double
    /// Seconds a vanished router stays away (random in range).
    var awaySeconds: ClosedRange<Double> = 3...12
}

/// One simulated router: connects with `HubRouterClient` (the client torus-soak's
/// routers use), sends sensor events, answers every COMMAND with a JSON REPLY, and
/// now and then leaves (BYE or a dropped link) and comes back. Runs until its task
/// is cancelled; every wait is bounded.
struct SimRouter: Sendable {
    let id: String
    let secret: [UInt8]
    let loop: EventLoop
    let settings: SimSettings

    func run() async {
        var failures = 0
        while !Task.isCancelled {
            let client: HubRouterClient
            do {
                client = try await HubRouterClient.connect(to: settings.address, on: loop, id: id, secret: secret)
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 { print("router \(id): cannot connect: \(error)") }
                try? await Task.sleep(for: .seconds(min(10, failures)))
                continue
            }
            await session(client)
            try? await Task.sleep(for: .milliseconds(Int(Double.random(in: settings.awaySeconds) * 1000)))
        }
    }

    /// One online session: events and heartbeats until its random end (or the hub
    /// closes the link, or the task is cancelled).
    private func session(_ client: HubRouterClient) async {
        let ended = LinkEnded()
        let reader = Task(executorPreference: loop) { await answer(client, ended) }
        let clock = ContinuousClock()
        let end = clock.now + .milliseconds(Int(-log(Double.random(in: 0.01...1)) * settings.sessionSeconds * 1000))
        let heartbeat = client.heartbeatTimeout / 4
        var nextBeat = clock.now + heartbeat
        var sequence = 0
        while !Task.isCancelled, !ended.value.load(ordering: .acquiring), clock.now < end {
            let pause = -log(Double.random(in: 0.001...1)) * settings.eventInterval
            try? await Task.sleep(for: .milliseconds(Int(min(pause, 30) * 1000) + 1))
            do {
                if clock.now >= nextBeat && pause > 1 {
                    try await client.send(.heartbeat)
                }
                sequence += 1
                try await client.send(.event(Array(reading(sequence).utf8)))
                nextBeat = clock.now + heartbeat
            } catch {
                break
            }
        }
        if Task.isCancelled || Bool.random() {
            try? await client.send(.bye(reason: Task.isCancelled ? "simulation over" : "reboot"))
            await client.close()
        } else {
            await client.close(flush: false)
        }
        _ = await reader.value
    }

    /// Answers commands until the link ends.
    private func answer(_ client: HubRouterClient, _ ended: LinkEnded) async {
        defer { ended.value.store(true, ordering: .releasing) }
        do {
            while let frame = try await client.nextFrame() {
                guard case .command(let requestID, let body) = frame else { continue }
                let reply = #"{"router":"\#(id)","ok":true,"received":"#
                    + String(decoding: HubEventJSON.quoted(body), as: UTF8.self) + "}"
                try await client.send(.reply(requestID: requestID, body: Array(reply.utf8)))
            }
        } catch {
            // The link ended (the session's loop notices through `ended`).
        }
    }

    /// A sensor reading as the event's JSON payload.
    private func reading(_ sequence: Int) -> String {
        let kinds = ["temperature", "humidity", "motion", "door", "power"]
        let kind = kinds[(id.utf8.reduce(0) { $0 &+ Int($1) } &+ sequence) % kinds.count]
        let value: String = switch kind {
        case "temperature": String(format2(Double.random(in: 17...26)))
        case "humidity": String(Int.random(in: 30...70))
        case "power": String(Int.random(in: 0...2400))
        default: Bool.random() ? "true" : "false"
        }
        return #"{"seq":\#(sequence),"sensor":"\#(kind)","value":\#(value)}"#
    }

    private func format2(_ x: Double) -> String {
        let centi = Int((x * 100).rounded())
        return "\(centi / 100).\(centi % 100 < 10 ? "0" : "")\(centi % 100)"
    }
}

/// Set by a session's reader when the link ends.
final class LinkEnded: Sendable {
    let value = Atomic<Bool>(false)
}
