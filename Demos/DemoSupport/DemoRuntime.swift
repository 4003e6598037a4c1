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

    @Option(help: "TCP keepalive: seconds idle before the first probe (0: keepalive off).")
    public var keepaliveIdle: Int32 = 60

    @Option(help: "TCP keepalive: seconds between probes.")
    public var keepaliveInterval: Int32 = 10

    @Option(help: "TCP keepalive: unanswered probes before the link is declared dead.")
    public var keepaliveCount: Int32 = 5

    @Option(help: "TCP_USER_TIMEOUT in milliseconds: how long sent data may stay unacknowledged (0: kernel default).")
    public var userTimeoutMs: Int = 60_000

    @Option(help: "Close a connection whose queued output makes no progress for this many seconds (0: never).")
    public var sendTimeout: Int = 60

    @Option(help: "Print a one-line ledger summary every N seconds (0: never).")
    public var statsInterval: Int = 0

    public init() {}

    /// The loop configuration these options describe.
    public var configuration: EventLoop.Configuration {
        var c = EventLoop.Configuration()
        c.receiveBufferCount = receiveBuffers
        return c
    }

    /// Socket options from the liveness flags (idle timeout is per demo).
    public var socketOptions: SocketOptions {
        var o = SocketOptions()
        o.keepAlive = keepaliveIdle > 0
            ? SocketOptions.KeepAlive(idle: keepaliveIdle, interval: keepaliveInterval, count: keepaliveCount)
            : nil
        o.userTimeout = userTimeoutMs > 0 ? .milliseconds(userTimeoutMs) : nil
        o.sendTimeout = sendTimeout > 0 ? .seconds(sendTimeout) : nil
        return o
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

    /// Starts the `--stats-interval` printer: one line per interval with the summed
    /// ledger and the process RSS (for scripts that watch a server from outside).
    public static func startStats(_ group: EventLoopGroup, every seconds: Int) {
        guard seconds > 0 else { return }
        let thread = StatsThread(group: group, seconds: seconds)
        thread.start()
    }

    /// Resident set size of a process in KiB (default: this one).
    public static func residentKiB(pid: String = "self") -> Int {
        ProcessMemory.residentBytes(pid: pid) / 1024
    }

    /// Runs an async graceful-stop step (a server's `shutdown`) from the main thread.
    public static func stopGracefully(_ stop: @escaping @Sendable (Duration) async -> Void,
                                      grace: Duration = .seconds(5)) {
        let done = DispatchSemaphoreLite()
        Task.detached {
            await stop(grace)
            done.signal()
        }
        done.wait()
    }

    /// Stops `group`, prints the final ledger, and exits 0 when it is quiescent.
    public static func shutdown(_ group: EventLoopGroup, signal: Int32) -> Never {
        say("received signal \(signal), shutting down")
        let ledger = group.shutdown()
        say(ledger.description)
        exit(ledger.isQuiescent ? 0 : 1)
    }
}

/// Prints `stats: …` lines from a plain thread (the loops stay undisturbed but for
/// the snapshot job).
final class StatsThread: @unchecked Sendable {
    let group: EventLoopGroup
    let seconds: Int
    init(group: EventLoopGroup, seconds: Int) {
        self.group = group
        self.seconds = seconds
    }
    func start() {
        var tid = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            let me = Unmanaged<StatsThread>.fromOpaque(arg).takeRetainedValue()
            while true {
                sleep(UInt32(me.seconds))
                let l = me.group.ledgerSnapshot()
                DemoRuntime.say("stats: connections=\(l.connections) in_flight=\(l.inFlight) parked=\(l.parked) buffers_out=\(l.buffersOut) rss_kib=\(DemoRuntime.residentKiB())")
            }
        }, box)
        pthread_detach(tid)
    }
}

/// A one-shot semaphore for the main thread (no Dispatch dependency).
final class DispatchSemaphoreLite: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var done = false
    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }
    func signal() {
        pthread_mutex_lock(&mutex)
        done = true
        pthread_cond_signal(&cond)
        pthread_mutex_unlock(&mutex)
    }
    func wait() {
        pthread_mutex_lock(&mutex)
        while !done { pthread_cond_wait(&cond, &mutex) }
        pthread_mutex_unlock(&mutex)
    }
}
