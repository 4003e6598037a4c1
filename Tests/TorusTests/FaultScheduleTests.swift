import Foundation
import Glibc
import Testing
@testable import Torus
import TorusTestSupport

/// SplitMix64: a seeded generator, so a failing schedule replays from its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// A client connection of the schedule: what it sent, and a check at every delivery
/// that what comes back is exactly the next bytes it sent (nothing lost, repeated or
/// reordered, whatever faults the loops met).
private final class ScheduleClient: ConnectionHandler {
    var connection: Connection?
    var sent: [UInt8] = []
    var received = 0
    var mismatch = false
    var ended = false
    var paused = false

    func connected(_ connection: Connection) { self.connection = connection }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        bytes.withUnsafeBytes { raw in
            guard received + raw.count <= sent.count else { mismatch = true; return }
            var i = 0
            while i < raw.count {
                if raw[i] != sent[received + i] { mismatch = true; break }
                i += 1
            }
        }
        received += bytes.count
    }

    func closed(_ connection: Connection, error: (any Error)?) {
        ended = true
        self.connection = nil
    }

    var isLive: Bool { !ended && connection?.isOpen == true }
}

/// The server side: an echo that, at random (from the schedule's seed), pauses reading
/// and resumes it after a timer, cancels its receive and re-arms it at once, or resets.
private final class ScheduleServer: ConnectionHandler {
    var rng: SplitMix
    init(seed: UInt64) { rng = SplitMix(state: seed) }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
        if !connection.isWritable { connection.pauseReading() }
        switch rng.below(200) {
        case 0..<4:
            connection.pauseReading()
            connection.loop.schedule(after: .microseconds(rng.below(3000))) { connection.resumeReading() }
        case 4..<8:
            connection.pauseReading()
            connection.resumeReading()   // the cancel races the receive's next CQE
        case 8:
            connection.reset()
        default:
            break
        }
    }

    func writable(_ connection: Connection) { connection.resumeReading() }
}

/// Everything the schedule drives, touched only on the client loop's thread.
private final class Schedule: @unchecked Sendable {
    let clientLoop: EventLoop
    let serverLoop: EventLoop
    let address: SocketAddress
    var rng: SplitMix
    let steps: Int
    let maxOpen = 150
    var clients: [ScheduleClient] = []
    var step = 0
    var opened = 0
    var faultsInjected = 0
    var timersCancelled = 0
    var settling = false
    var done: CheckedContinuation<(mismatches: Int, unfinished: Int), Never>?
    var deadline: UInt64 = 0

    init(clientLoop: EventLoop, serverLoop: EventLoop, address: SocketAddress, seed: UInt64, steps: Int) {
        self.clientLoop = clientLoop
        self.serverLoop = serverLoop
        self.address = address
        self.rng = SplitMix(state: seed)
        self.steps = steps
    }

    var live: [ScheduleClient] { clients.filter { $0.isLive } }

    func randomLive() -> ScheduleClient? {
        let l = live
        return l.isEmpty ? nil : l[rng.below(l.count)]
    }

    func open() {
        guard live.count < maxOpen else { return }
        let client = ScheduleClient()
        clients.append(client)
        opened += 1
        Connection.connect(to: address, on: clientLoop, timeout: .seconds(10), makeHandler: { _ in client }) { result in
            if case .failure = result { client.ended = true }
        }
    }

    func send(_ client: ScheduleClient) {
        guard let c = client.connection, c.isOpen else { return }
        let count = 1 + rng.below(rng.below(8) == 0 ? 32 * 1024 : 2048)
        var bytes = [UInt8](repeating: 0, count: count)
        for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        if c.send(bytes) { client.sent += bytes }
    }

    /// One random fault on one of the two loops.
    func injectFault() {
        faultsInjected += 1
        let onServer = rng.below(2) == 0
        let choice = rng.below(20)
        let count = 1 + rng.below(3)
        let errno = [ENOBUFS, ECANCELED, EINTR, EAGAIN][rng.below(4)]
        let again = [EINTR, EAGAIN][rng.below(2)]
        let apply: @Sendable (inout FaultInjection) -> Void = { f in
            switch choice {
            case 0..<6: f.fail(.recv, with: errno, count: count)
            case 6..<9: f.fail(.send, with: again, count: count)
            case 9..<12: f.shortenSends(count: count)
            case 12..<14: f.busyEnters += count
            case 14..<16: f.withheldReaps += 1 + count * 5
            case 16: f.fail(.recv, with: ECONNRESET, count: 1)
            case 17: f.fail(.send, with: EPIPE, count: 1)
            case 18: f.fail(.accept, with: EMFILE, count: 1)
            default: f.fail(.recv, with: ENOBUFS, count: 20)
            }
        }
        if onServer {
            serverLoop.execute { [serverLoop] in apply(&serverLoop.ring.faults) }
        } else if choice != 18 {
            apply(&clientLoop.ring.faults)
        }
    }

    /// One step of the seeded mix.
    func act() {
        step += 1
        let r = rng.below(100)
        switch r {
        case 0..<10:
            open()
        case 10..<50:
            if let c = randomLive() { send(c) }
        case 50..<58:
            if let c = randomLive(), let conn = c.connection {
                if c.paused { conn.resumeReading() } else { conn.pauseReading() }
                c.paused.toggle()
            }
        case 58..<63:
            randomLive()?.connection?.closeAfterWriting()
        case 63..<65:
            randomLive()?.connection?.reset()
        case 65..<72:
            // Cancel racing completion on the client side.
            if let c = randomLive(), let conn = c.connection, !c.paused {
                conn.pauseReading()
                conn.resumeReading()
            }
        case 72..<84:
            // A timer that sends later, cancelled at once one time in three.
            if let c = randomLive() {
                let timer = clientLoop.schedule(after: .microseconds(rng.below(2000))) { [self] in send(c) }
                if rng.below(3) == 0 { timer.cancel(); timersCancelled += 1 }
            }
        default:
            injectFault()
        }
    }

    func tick(_ timer: Torus.Timer) {
        if !settling {
            for _ in 0..<25 where step < steps { act() }
            if step >= steps { startSettling() }
            return
        }
        // Settling: every live client has its echo back, then all close.
        let pending = live.filter { $0.received < $0.sent.count }
        if pending.isEmpty || clientLoop.now > deadline {
            if !live.isEmpty {
                for c in live { c.connection?.closeAfterWriting() }
                return
            }
            guard clients.allSatisfy({ $0.ended || $0.connection == nil }) || clientLoop.now > deadline + 5_000_000_000
            else { return }
            timer.cancel()
            let mismatches = clients.filter { $0.mismatch }.count
            done?.resume(returning: (mismatches, pending.count))
            done = nil
        }
    }

    func startSettling() {
        settling = true
        deadline = clientLoop.now + 20_000_000_000
        clientLoop.ring.faults.clearAll()
        serverLoop.execute { [serverLoop] in serverLoop.ring.faults.clearAll() }
        for c in live where c.paused {
            c.connection?.resumeReading()
            c.paused = false
        }
    }
}

@Suite("Faults: a seeded random schedule")
struct FaultScheduleTests {
    @Test("thousands of connections, a seeded mix of send, receive, pause, resume, close, cancel, reset and timers, faults at random: every byte echoed exactly, quiescent")
    func randomSchedule() async throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["TORUS_FAULT_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let steps = env["TORUS_FAULT_STEPS"].flatMap { Int($0) } ?? 20_000
        print("fault schedule: seed \(seed), \(steps) steps (replay: TORUS_FAULT_SEED=\(seed) TORUS_FAULT_STEPS=\(steps))")
        var config = EventLoop.Configuration()
        config.ringEntries = 64
        config.receiveBufferCount = 64
        config.receiveBufferSize = 4096
        config.receiveBufferMaxCount = 256
        config.outboundInitialChunks = 64
        let clientLoop = try EventLoop(configuration: config)
        let serverLedger = try await withLoop(config) { serverLoop in
            let next = Locked<UInt64>(seed)
            let server = try Server.start(on: [serverLoop], address: try .tcp("127.0.0.1", 0)) { _ in
                ScheduleServer(seed: next.withLock { $0 &+= 0x9E37_79B9; return $0 })
            }
            await atLoop(serverLoop) { server.listeners[0].retryDelay = .milliseconds(5) }
            let schedule = Schedule(clientLoop: clientLoop, serverLoop: serverLoop, address: server.address,
                                    seed: seed, steps: steps)
            let outcome = await withCheckedContinuation { (c: CheckedContinuation<(mismatches: Int, unfinished: Int), Never>) in
                clientLoop.execute {
                    schedule.done = c
                    clientLoop.scheduleRepeating(every: .milliseconds(1)) { schedule.tick($0) }
                }
            }
            let summary = await atLoop(clientLoop) {
                "\(schedule.opened) connections, \(schedule.faultsInjected) faults, \(schedule.timersCancelled) timers cancelled, "
                    + "\(schedule.clients.reduce(0) { $0 + $1.sent.count }) bytes sent, "
                    + "\(schedule.clients.reduce(0) { $0 + $1.received }) echoed and checked"
            }
            print("fault schedule seed \(seed): \(summary)")
            #expect(outcome.mismatches == 0, "echoed bytes differed from what was sent (seed \(seed))")
            #expect(outcome.unfinished == 0, "clients still waiting for their echo after 20 s (seed \(seed))")
            let opened = await atLoop(clientLoop) { schedule.opened }
            #expect(opened >= 1000, "thousands of connections: \(opened)")
            server.close()
        }
        #expect(serverLedger.staleCompletions == 0)
        let clientLedger = await clientLoop.shutdownGracefully()
        expectQuiescent(clientLedger, "client loop, seed \(seed)")
        #expect(clientLedger.staleCompletions == 0)
    }
}
