import ArgumentParser
import Glibc
import Torus

/// Options every demo takes: where to listen and how many loops to run.
public struct CommonOptions: ParsableArguments, Sendable {
    @Option(help: "Address to listen on.")
    public var host = "127.0.0.1"

    @Option(help: "Number of event loops (one thread each). Default: one per CPU.")
    public var threads: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    @Option(help: "Provided receive buffers per loop (a power of two).")
    public var receiveBuffers: Int = 1024

    @Option(help: "Lower the open-file limit (RLIMIT_NOFILE) first; for resource-exhaustion tests.")
    public var nofile: Int?

    public init() {}

    /// The loop configuration these options describe.
    public var configuration: EventLoop.Configuration {
        var c = EventLoop.Configuration()
        c.receiveBufferCount = receiveBuffers
        return c
    }

    /// Applies `--nofile` to this process.
    public func applyLimits() throws {
        guard let nofile else { return }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = rlim_t(nofile)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            throw ValidationError("setrlimit(RLIMIT_NOFILE, \(nofile)) failed")
        }
    }
}

/// The demos' process life cycle: block SIGINT/SIGTERM before any loop thread
/// exists (so only the main thread sees them), run, wait for a signal, then stop
/// gracefully and print the ledger.
public enum DemoRuntime {
    /// Blocks SIGINT and SIGTERM in the calling (main) thread and every thread it
    /// creates afterwards. Call first.
    public static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits until SIGINT or SIGTERM arrives; returns its number.
    public static func waitForSignal() -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        var sig: Int32 = 0
        sigwait(&set, &sig)
        return sig
    }

    /// Prints a line and flushes stdout (scripts wait for these lines).
    public static func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    /// Stops `group`, prints the final ledger, and exits 0 when it is quiescent.
    public static func shutdown(_ group: EventLoopGroup, signal: Int32) -> Never {
        say("received signal \(signal), shutting down")
        let ledger = group.shutdown()
        say(ledger.description)
        exit(ledger.isQuiescent ? 0 : 1)
    }
}
