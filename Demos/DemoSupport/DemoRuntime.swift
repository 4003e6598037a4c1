import Glibc
import Logging
import ServiceLifecycle
import Torus

/// The demos' process life cycle: the servers run as services of one `ServiceGroup`
/// that turns SIGTERM and SIGINT into a graceful shutdown; once the group returns,
/// the loops stop (from outside them), the final ledger is printed and the exit
/// status says whether it is quiescent.
///
/// Stdout carries the lines scripts and tests read, each flushed at once:
/// `listening on HOST:PORT` (once the signals are trapped and the servers accept),
/// `stats: …` (with `--stats-interval`), `received signal, shutting down`, and the
/// ledger (`ledger: quiescent` first when it is). Log lines go to stderr.
public enum DemoRuntime {
    /// Runs `services` (already bound and accepting) until SIGTERM or SIGINT, then
    /// stops them gracefully, last one first; then shuts `group` down, prints its
    /// ledger and exits: 0 when it is quiescent and no service failed. `label` names
    /// the process's logger (the group logs through it).
    public static func serve(_ services: [any Service], listeningOn addresses: [SocketAddress],
                             group: EventLoopGroup, options: CommonOptions, label: String) async -> Never {
        let logger = Logger(label: label)
        var all = services
        if options.statsInterval > 0 {
            all.append(LedgerStatsPrinter(group: group, interval: .seconds(options.statsInterval)))
        }
        // Last, so it is the first to hear of the shutdown.
        all.append(ListeningNotice(addresses: addresses))
        var configuration = ServiceGroupConfiguration(services: all, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger)
        // A stop that hangs is escalated to cancellation: the servers then close
        // every connection at once.
        configuration.maximumGracefulShutdownDuration = .seconds(12)
        var failed = false
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            logger.error("a service failed; stopping", metadata: ["error": "\(error)"])
            failed = true
        }
        let ledger = await group.shutdownGracefully()
        say(ledger.description)
        exit(ledger.isQuiescent && !failed ? 0 : 1)
    }

    /// Prints a line and flushes stdout (scripts wait for these lines).
    public static func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    /// Resident set size of a process in KiB (default: this one).
    static func residentKiB(pid: String = "self") -> Int {
        ProcessMemory.residentBytes(pid: pid) / 1024
    }
}

/// A stop step as a service: waits for graceful shutdown, then runs `stop` (closing
/// what a server's own shutdown does not, such as upgraded WebSocket connections).
public struct AtGracefulShutdown: Service {
    let stop: @Sendable () async -> Void

    public init(_ stop: @escaping @Sendable () async -> Void) {
        self.stop = stop
    }

    public func run() async throws {
        try await gracefulShutdown()
        await stop()
    }
}

/// Prints the `listening on` lines when the group starts (its signal handlers are
/// in place by then), and a line when the graceful shutdown begins.
struct ListeningNotice: Service {
    let addresses: [SocketAddress]

    func run() async throws {
        for address in addresses { DemoRuntime.say("listening on \(address)") }
        try await gracefulShutdown()
        DemoRuntime.say("received signal, shutting down")
    }
}

/// Prints `stats: …` every interval until graceful shutdown: the summed ledger and
/// the process RSS (for scripts that watch a server from outside).
struct LedgerStatsPrinter: Service {
    let group: EventLoopGroup
    let interval: Duration

    func run() async throws {
        let group = group
        let interval = interval
        do {
            try await cancelWhenGracefulShutdown {
                while true {
                    try await Task.sleep(for: interval)
                    let l = await group.ledgerSnapshot()
                    DemoRuntime.say("stats: connections=\(l.connections) in_flight=\(l.inFlight) parked=\(l.parked) buffers_out=\(l.buffersOut) rss_kib=\(DemoRuntime.residentKiB()) direct_descriptors=\(l.directDescriptors) timers=\(l[.timeout].inFlight)")
                }
            }
        } catch is CancellationError {
            // Graceful shutdown (or the group's cancellation) ends the printing.
            return
        }
    }
}
