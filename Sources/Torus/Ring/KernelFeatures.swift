import CLiburing
import Glibc

/// A Linux kernel version, read from the release `uname` reports.
public struct KernelVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let major: Int
    public let minor: Int
    public let patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses the leading `MAJOR.MINOR[.PATCH]` of a release such as
    /// `6.18.44-fc-v973` or `5.19.0-50-generic`; nil when it does not start that way.
    public init?(release: String) {
        var numbers: [Int] = []
        var current: Int? = nil
        for byte in release.utf8 {
            if byte >= 0x30 && byte <= 0x39 {
                // Release strings are short; a number too long to be a version ends parsing.
                let (times, o1) = (current ?? 0).multipliedReportingOverflow(by: 10)
                let (sum, o2) = times.addingReportingOverflow(Int(byte - 0x30))
                guard !o1, !o2 else { return nil }
                current = sum
            } else {
                guard let value = current else { break }
                numbers.append(value)
                current = nil
                if byte != 0x2E || numbers.count == 3 { break }   // only '.' continues
            }
        }
        if let current, numbers.count < 3 { numbers.append(current) }
        guard numbers.count >= 2 else { return nil }
        self.init(numbers[0], numbers[1], numbers.count > 2 ? numbers[2] : 0)
    }

    public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    public var description: String { "\(major).\(minor)" + (patch > 0 ? ".\(patch)" : "") }

    /// The running kernel's release string (`uname -r`).
    static func runningRelease() -> String {
        var names = utsname()
        guard uname(&names) == 0 else { return "unknown" }
        return withUnsafeBytes(of: &names.release) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}

/// How a listener accepts or a connection receives.
public enum ArmingMode: Sendable, Equatable, CustomStringConvertible {
    /// One submission yields completions until it ends (`IORING_CQE_F_MORE`).
    case multishot
    /// One completion per submission; the loop re-arms after each (`Rearm.rearm`).
    case singleShot

    public var description: String { self == .multishot ? "multishot" : "single-shot" }
}

/// Kernel features a loop can do without, each replaced by a fallback. Set in
/// ``EventLoop/Configuration/fallbacks`` to use the fallback even where the kernel
/// offers the feature (a kernel or sandbox where the feature misbehaves; the tests,
/// which run every fallback on a kernel that has everything).
public struct KernelFallbacks: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// A ring set up without `SINGLE_ISSUER`, `DEFER_TASKRUN` or `COOP_TASKRUN`
    /// (task work then runs whenever the loop thread enters the kernel).
    public static let plainRingSetup = KernelFallbacks(rawValue: 1 << 0)
    /// One single-shot `accept` per connection, re-armed after each, instead of one
    /// multishot `accept` per listener (kernels before 5.19).
    public static let singleShotAccept = KernelFallbacks(rawValue: 1 << 1)
    /// One single-shot `recv` per received buffer (still selected from the provided
    /// buffer ring), re-armed after each, instead of one multishot `recv` per
    /// connection (kernels before 6.0).
    public static let singleShotReceive = KernelFallbacks(rawValue: 1 << 2)
    /// The ring's own descriptor on every `io_uring_enter` instead of an index
    /// registered with the loop thread (kernels before 5.18; or to measure what the
    /// registration saves).
    public static let unregisteredRingDescriptor = KernelFallbacks(rawValue: 1 << 3)
    /// Every socket operation names the connection's descriptor instead of its slot in
    /// the ring's registered file table (no table is registered; kernels before 5.19,
    /// or to measure what the table saves). See ``KernelFeatures/SocketDescriptors``.
    public static let plainSocketDescriptors = KernelFallbacks(rawValue: 1 << 4)

    /// Every fallback.
    public static let all: KernelFallbacks = [.plainRingSetup, .singleShotAccept, .singleShotReceive,
                                              .unregisteredRingDescriptor, .plainSocketDescriptors]
}

/// What the running kernel offers a loop, and what the loop uses: found once at ring
/// setup (``EventLoop/kernelFeatures``).
///
/// Setup flags are found by trying them (the kernel answers `EINVAL` to flags it does
/// not know, and the next smaller set is tried); operations by the kernel's opcode
/// probe; what neither can tell (multishot `accept` and `recv` share their opcode with
/// the single-shot forms) by the kernel version, erring toward the fallback. What has a fallback falls back (and
/// ``KernelFallbacks`` forces it); what has none (io_uring itself, provided buffer
/// rings, an operation Torus needs) stops the loop from starting with an `IOError`
/// carrying a ``KernelRefusal``.
public struct KernelFeatures: Sendable, Equatable, CustomStringConvertible {
    /// Optional `io_uring_setup` flags.
    public struct SetupFlags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// `IORING_SETUP_SINGLE_ISSUER` (6.0): only the loop thread submits.
        public static let singleIssuer = SetupFlags(rawValue: IORING_SETUP_SINGLE_ISSUER)
        /// `IORING_SETUP_DEFER_TASKRUN` (6.1): completions are posted only when the
        /// loop thread asks for them.
        public static let deferTaskrun = SetupFlags(rawValue: IORING_SETUP_DEFER_TASKRUN)
        /// `IORING_SETUP_COOP_TASKRUN` (5.19): no interrupting IPI to run task work.
        public static let coopTaskrun = SetupFlags(rawValue: IORING_SETUP_COOP_TASKRUN)
    }

    /// The oldest kernel Torus runs on: provided buffer rings, multishot accept,
    /// `ASYNC_CANCEL_FD | ALL | ANY` and `SUBMIT_ALL` are all there from 5.19.
    public static let minimumKernel = KernelVersion(5, 19)
    /// From these versions on the kernel has multishot `recv`, multishot `accept`,
    /// `SINGLE_ISSUER`, `DEFER_TASKRUN` (used when the probe cannot tell).
    public static let multishotReceiveKernel = KernelVersion(6, 0)
    public static let multishotAcceptKernel = KernelVersion(5, 19)
    public static let providedBufferRingKernel = KernelVersion(5, 19)
    public static let registeredRingDescriptorKernel = KernelVersion(5, 18)
    /// Sparse file tables (`IORING_RSRC_REGISTER_SPARSE`) and `close_direct`.
    public static let directDescriptorKernel = KernelVersion(5, 19)

    /// How the loop names its ring to `io_uring_enter`.
    public enum RingDescriptor: Sendable, Equatable, CustomStringConvertible {
        /// An index the loop thread registered (`IORING_REGISTER_RING_FDS`, 5.18):
        /// the kernel skips the descriptor-table lookup and the file reference count
        /// on every enter.
        case registered
        /// The ring's descriptor, looked up on every enter.
        case plain

        public var description: String { self == .registered ? "registered" : "plain" }
    }

    /// How a connection's operations name its socket.
    public enum SocketDescriptors: Sendable, Equatable, CustomStringConvertible {
        /// By its slot in the ring's registered file table (`IOSQE_FIXED_FILE`), once
        /// the socket is installed there: the kernel reads the ring's table instead of
        /// taking and dropping a file reference (`fget`/`fput`) for every SQE. The
        /// regular descriptor stays open for `getpeername` and `setsockopt`. A loop
        /// whose table the kernel refuses, or a connection that finds it full, names
        /// the descriptor instead.
        case direct
        /// By its descriptor, looked up on every SQE.
        case plain

        public var description: String { self == .direct ? "direct" : "plain" }
    }

    /// The kernel release (`uname -r`) and the version parsed from it (nil when the
    /// release does not start with one; the features are then assumed present and
    /// the probes decide).
    public let release: String
    public let version: KernelVersion?
    /// The optional setup flags the kernel accepted for this loop's ring.
    public let setupFlags: SetupFlags
    /// How listeners on this loop accept.
    public let accept: ArmingMode
    /// How connections on this loop receive.
    public let receive: ArmingMode
    /// How the loop names its ring to `io_uring_enter`. When the kernel refuses the
    /// registration after all, the loop logs it and goes on with the descriptor.
    public let ringDescriptor: RingDescriptor
    /// How connections on this loop name their sockets. When the kernel refuses the
    /// table after all, the loop logs it and every connection names its descriptor.
    public let socketDescriptors: SocketDescriptors
    /// The fallbacks in use, and why each (configured, or what the kernel lacks).
    public let fallbackReasons: [String]

    /// The operations Torus submits, by name; each must pass the kernel's probe.
    static let requiredOperations: [(io_uring_op, String)] = [
        (IORING_OP_ACCEPT, "accept"), (IORING_OP_RECV, "recv"), (IORING_OP_SEND, "send"),
        (IORING_OP_SENDMSG, "sendmsg"), (IORING_OP_CONNECT, "connect"), (IORING_OP_CLOSE, "close"),
        (IORING_OP_SHUTDOWN, "shutdown"), (IORING_OP_ASYNC_CANCEL, "async_cancel"),
        (IORING_OP_TIMEOUT, "timeout"), (IORING_OP_TIMEOUT_REMOVE, "timeout_remove"),
        (IORING_OP_LINK_TIMEOUT, "link_timeout"), (IORING_OP_READ, "read"), (IORING_OP_WRITE, "write"),
        (IORING_OP_OPENAT, "openat"), (IORING_OP_OPENAT2, "openat2"), (IORING_OP_STATX, "statx"),
    ]

    /// Whether the running kernel has `feature` (from `minimum` on), by version.
    /// An unparsable release counts as new enough (the probes and the kernel's own
    /// answers still decide what has no fallback).
    static func versionHas(_ version: KernelVersion?, _ minimum: KernelVersion) -> Bool {
        guard let version else { return true }
        return version >= minimum
    }

    /// Checks what has no fallback and decides the rest, for a ring just set up
    /// (still disabled, on the thread building the loop). Throws when the kernel
    /// lacks an operation or provided buffer rings.
    static func detect(ring: Ring, fallbacks: KernelFallbacks) throws(IOError) -> KernelFeatures {
        let release = KernelVersion.runningRelease()
        let version = KernelVersion(release: release)
        // Nothing is refused by version alone: distribution kernels backport io_uring
        // (RHEL 9's 5.14 has provided buffer rings). What has no fallback is probed
        // (operations here, the buffer ring by registering it); the version only
        // decides what cannot be probed, and only toward a fallback.
        if let probe = io_uring_get_probe_ring(ring.raw) {
            defer { io_uring_free_probe(probe) }
            for (op, name) in requiredOperations where io_uring_opcode_supported(probe, Int32(op.rawValue)) == 0 {
                throw IOError(KernelRefusal.kernelTooOld(feature: "the \(name) operation", minimum: minimumKernel,
                                                         running: release),
                              errno: EOPNOTSUPP, "io_uring probe")
            }
        }
        // A kernel that cannot answer the probe (a seccomp profile refusing
        // io_uring_register?) is not refused here: the buffer ring registration that
        // follows needs io_uring_register too, and a missing operation fails its own
        // operations with an errno instead of stopping the loop.
        let setup = SetupFlags(rawValue: ring.setupFlags).intersection([.singleIssuer, .deferTaskrun, .coopTaskrun])
        return decide(release: release, version: version, setup: setup, fallbacks: fallbacks)
    }

    /// What a loop uses, given the kernel's version, the setup flags its ring got and
    /// the configured fallbacks (separate from the probes so every kernel's answer
    /// can be tested on one).
    static func decide(release: String, version: KernelVersion?, setup: SetupFlags,
                       fallbacks: KernelFallbacks) -> KernelFeatures {
        var reasons: [String] = []
        if fallbacks.contains(.plainRingSetup) {
            reasons.append("plain ring setup: configured")
        } else if !setup.contains(.deferTaskrun) {
            reasons.append("no DEFER_TASKRUN: the kernel refused it (needs 6.1)")
        }
        /// One feature with a fallback: the fallback when configured or when the
        /// kernel is older than `since` (each noted with its reason), else the feature.
        func choose<Mode>(_ feature: Mode, or fallback: Mode, forced: KernelFallbacks, since: KernelVersion,
                          configured: String, missing: String) -> Mode {
            if fallbacks.contains(forced) {
                reasons.append(configured)
                return fallback
            }
            if !versionHas(version, since) {
                reasons.append(missing)
                return fallback
            }
            return feature
        }
        let accept = choose(ArmingMode.multishot, or: .singleShot, forced: .singleShotAccept,
                            since: multishotAcceptKernel, configured: "single-shot accept: configured",
                            missing: "single-shot accept: multishot needs \(multishotAcceptKernel)")
        let receive = choose(ArmingMode.multishot, or: .singleShot, forced: .singleShotReceive,
                             since: multishotReceiveKernel, configured: "single-shot receive: configured",
                             missing: "single-shot receive: multishot needs \(multishotReceiveKernel)")
        let ringDescriptor = choose(RingDescriptor.registered, or: .plain, forced: .unregisteredRingDescriptor,
                                    since: registeredRingDescriptorKernel,
                                    configured: "plain ring descriptor: configured",
                                    missing: "plain ring descriptor: registering it needs \(registeredRingDescriptorKernel)")
        let socketDescriptors = choose(SocketDescriptors.direct, or: .plain, forced: .plainSocketDescriptors,
                                       since: directDescriptorKernel,
                                       configured: "plain socket descriptors: configured",
                                       missing: "plain socket descriptors: a sparse file table needs \(directDescriptorKernel)")
        return KernelFeatures(release: release, version: version, setupFlags: setup, accept: accept,
                              receive: receive, ringDescriptor: ringDescriptor, socketDescriptors: socketDescriptors,
                              fallbackReasons: reasons)
    }

    public var description: String {
        var flags: [String] = []
        if setupFlags.contains(.singleIssuer) { flags.append("SINGLE_ISSUER") }
        if setupFlags.contains(.deferTaskrun) { flags.append("DEFER_TASKRUN") }
        if setupFlags.contains(.coopTaskrun) { flags.append("COOP_TASKRUN") }
        var text = "kernel \(release): setup \(flags.isEmpty ? "plain" : flags.joined(separator: "|")), "
            + "\(accept) accept, \(receive) receive, provided buffer rings, \(ringDescriptor) ring descriptor, "
            + "\(socketDescriptors) socket descriptors"
        if !fallbackReasons.isEmpty { text += " (fallbacks: \(fallbackReasons.joined(separator: "; ")))" }
        return text
    }
}
