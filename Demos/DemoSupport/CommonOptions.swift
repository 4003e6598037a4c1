import ArgumentParser
import Glibc
import Torus

/// Options every demo takes: where to listen, how many loops to run, liveness and
/// logging.
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

    @Option(help: "Opt-in completion coalescing: a busy loop waits for up to this many completions per io_uring_enter (0: off, the default).")
    public var coalesceCompletions: Int = 0

    @Option(help: "Completion coalescing: the longest one wait holds completions back, in microseconds (the latency it may add).")
    public var coalesceWaitUs: Int = 50

    @Option(name: .customLong("kernel-fallback"),
            help: "Use a kernel fallback although the kernel has the feature (repeatable; to measure what a feature saves).")
    public var kernelFallbacks: [KernelFallbackName] = []

    @Option(help: "Print a one-line ledger summary every N seconds (0: never).")
    public var statsInterval: Int = 0

    @OptionGroup public var logging: LoggingOptions

    public init() {}

    public func validate() throws {
        if coalesceCompletions < 0 { throw ValidationError("--coalesce-completions must be 0 (off) or more") }
        if coalesceWaitUs < 1 || coalesceWaitUs > 1_000_000 {
            throw ValidationError("--coalesce-wait-us must be between 1 and 1000000")
        }
    }

    /// The loop configuration these options describe.
    public var configuration: EventLoop.Configuration {
        var c = EventLoop.Configuration()
        c.receiveBufferCount = receiveBuffers
        for name in kernelFallbacks { c.fallbacks.insert(name.fallback) }
        if coalesceCompletions > 0 {
            c.completionCoalescing = CompletionCoalescing(maxCompletions: coalesceCompletions,
                                                          maxWait: .microseconds(coalesceWaitUs))
        }
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

    /// Prepares the process before any loop starts: log lines to stderr at
    /// `--log-level` (stdout carries only the lines scripts read: `listening on`,
    /// `stats:`, the ledger), then the `--nofile` limit.
    public func prepareProcess() throws {
        logging.bootstrap()
        try applyLimits()
    }

    /// Applies `--nofile` to this process.
    func applyLimits() throws {
        guard let nofile else { return }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = rlim_t(nofile)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            throw ValidationError("setrlimit(RLIMIT_NOFILE, \(nofile)) failed")
        }
    }
}

/// The `--kernel-fallback` values, one per ``KernelFallbacks`` member.
public enum KernelFallbackName: String, CaseIterable, ExpressibleByArgument, Sendable {
    case plainRingSetup = "plain-ring-setup"
    case singleShotAccept = "single-shot-accept"
    case singleShotReceive = "single-shot-receive"
    case plainRingDescriptor = "plain-ring-descriptor"
    case plainSocketDescriptors = "plain-socket-descriptors"

    public var fallback: KernelFallbacks {
        switch self {
        case .plainRingSetup: .plainRingSetup
        case .singleShotAccept: .singleShotAccept
        case .singleShotReceive: .singleShotReceive
        case .plainRingDescriptor: .unregisteredRingDescriptor
        case .plainSocketDescriptors: .plainSocketDescriptors
        }
    }
}
