import ArgumentParser
import Glibc
import Torus
import TorusHub
import UnixSignals

/// Simulated routers beside a hub, so its page has something to show: each sends
/// sensor events, answers commands, and now and then vanishes and comes back.
@main
struct TorusSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-sim",
        abstract: "Simulated routers for torus-hub (events, command replies, comings and goings).",
        discussion: """
            --prepare adds the routers' secrets to the hub's credential file (and an admin \
            token, kept in FILE.demo-token), prints "token: TOKEN" and exits; start the hub \
            on that file afterwards (or send it SIGHUP). Without --prepare it runs the \
            routers against --host:--router-port until SIGINT or SIGTERM.
            """)

    @Option(help: "The hub's credential file (the routers' secrets are read from it).")
    var credentials: String = "torus-hub-credentials.json"

    @Flag(help: "Add the routers' secrets and an admin token to the credential file, print the token, exit.")
    var prepare = false

    @Option(help: "Simulated routers.")
    var routers: Int = 50

    @Option(help: "Router ids are PREFIX001, PREFIX002, …")
    var prefix: String = "sim-"

    @Option(help: "The hub's host.")
    var host: String = "127.0.0.1"

    @Option(help: "The hub's router port.")
    var routerPort: UInt16 = 7100

    @Option(help: "Mean seconds between two events of one router.")
    var eventInterval: Double = 2

    @Option(help: "Mean seconds a router stays online before it leaves for a few seconds.")
    var sessionSeconds: Double = 90

    func validate() throws {
        guard (1...100_000).contains(routers) else { throw ValidationError("--routers must be 1…100000") }
        guard eventInterval > 0, sessionSeconds > 0 else { throw ValidationError("intervals must be positive") }
        guard HubFrame.isValidID(prefix + "1") else { throw ValidationError("invalid router id prefix") }
    }

    var ids: [String] {
        let width = String(routers).count
        return (1...routers).map { n in prefix + String(repeating: "0", count: max(0, width - String(n).count)) + String(n) }
    }

    mutating func run() async throws {
        if prepare {
            let token = try SimCredentials.prepare(path: credentials, ids: ids)
            print("token: \(token)")
            return
        }
        let store = try HubCredentials.load(path: credentials)
        let missing = ids.filter { store.routers[$0] == nil }
        guard missing.isEmpty else {
            throw ValidationError("\(missing.count) router secrets are missing from \(credentials): run with --prepare first")
        }
        let group = try EventLoopGroup(loops: 1)
        let settings = SimSettings(address: try .tcp(host, routerPort), eventInterval: eventInterval,
                                   sessionSeconds: sessionSeconds)
        let ids = ids
        let count = routers
        let fleet = Task {
            await withTaskGroup(of: Void.self) { tasks in
                for (n, id) in ids.enumerated() {
                    let router = SimRouter(id: id, secret: store.routers[id] ?? [], loop: group.loops[0], settings: settings)
                    tasks.addTask {
                        // Spread the first connections over a second or two.
                        try? await Task.sleep(for: .milliseconds(n * 2000 / max(1, count)))
                        await router.run()
                    }
                }
            }
        }
        print("simulating \(count) routers against \(host):\(routerPort)")
        fflush(nil)
        for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { break }
        fleet.cancel()
        await fleet.value
        let ledger = await group.shutdownGracefully()
        print("simulation over; ledger \(ledger.isQuiescent ? "quiescent" : "NOT quiescent")")
    }
}
