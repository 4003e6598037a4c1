import CLiburing
import Glibc

/// Why the kernel would not give a loop what it cannot run without, and how to
/// enable it. Carried by the `IOError` that ``EventLoop/init(configuration:index:)``
/// throws (``IOError/refusal``); its description is the message to show.
public enum KernelRefusal: Sendable, Equatable, CustomStringConvertible {
    /// `io_uring_setup` answered `EPERM`: `kernel.io_uring_disabled` is 2.
    case disabledBySysctl
    /// `EPERM`: `kernel.io_uring_disabled` is 1 and this process is neither in
    /// `kernel.io_uring_group` (the group id; nil when none is set) nor privileged.
    case restrictedToGroup(Int?)
    /// `EPERM` while the kernel allows io_uring (or predates the sysctl): a seccomp
    /// profile (Docker's and containerd's defaults block io_uring) or a security module.
    case blockedBySandbox
    /// `ENOSYS`: the kernel is built without io_uring, or a sandbox hides the syscall.
    case notAvailable
    /// `ENOMEM`: the ring's memory was refused (memory short; before 5.12 rings are
    /// charged to `RLIMIT_MEMLOCK`: its soft limit in bytes, nil when unlimited).
    case lockedMemory(limit: UInt64?)
    /// The kernel lacks a feature Torus has no fallback for.
    case kernelTooOld(feature: String, minimum: KernelVersion, running: String)

    /// The io_uring sysctls, as read from `/proc/sys/kernel` (nil: absent, before 6.6).
    struct Sysctls: Equatable {
        var disabled: Int?
        var group: Int?
        /// This process is in `group` (effective or supplementary group).
        var inGroup: Bool

        static func read() -> Sysctls {
            let disabled = readInteger("/proc/sys/kernel/io_uring_disabled")
            let group = readInteger("/proc/sys/kernel/io_uring_group").flatMap { $0 >= 0 ? $0 : nil }
            return Sysctls(disabled: disabled, group: group, inGroup: group.map(processIsInGroup) ?? false)
        }

        private static func readInteger(_ path: String) -> Int? {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return nil }
            let text = String(decoding: buffer.prefix(n), as: UTF8.self)
            return Int(text.trimmingWhitespace())
        }

        private static func processIsInGroup(_ group: Int) -> Bool {
            if Int(getegid()) == group { return true }
            let count = getgroups(0, nil)
            guard count > 0 else { return false }
            var groups = [gid_t](repeating: 0, count: Int(count))
            let got = getgroups(count, &groups)
            return got > 0 && groups.prefix(Int(got)).contains { Int($0) == group }
        }
    }

    /// Explains a failed `io_uring_queue_init_params` (`errno` positive), given the
    /// io_uring sysctls; nil for an errno that says nothing about the kernel's will.
    static func diagnose(setupErrno errno: Int32, sysctls: Sysctls,
                         memlockLimit: UInt64? = nil, running: String = "") -> KernelRefusal? {
        switch errno {
        case EPERM:
            switch sysctls.disabled {
            case 2?: return .disabledBySysctl
            case 1? where !sysctls.inGroup: return .restrictedToGroup(sysctls.group)
            default: return .blockedBySandbox
            }
        case ENOSYS:
            return .notAvailable
        case ENOMEM:
            return .lockedMemory(limit: memlockLimit)
        case EINVAL:
            // Even the plainest setup Torus asks for (CQSIZE, SUBMIT_ALL, R_DISABLED).
            return .kernelTooOld(feature: "io_uring_setup with SUBMIT_ALL and R_DISABLED",
                                 minimum: KernelFeatures.minimumKernel, running: running)
        default:
            return nil
        }
    }

    /// The soft `RLIMIT_MEMLOCK` in bytes; nil when unlimited or unreadable.
    static func memlockLimit() -> UInt64? {
        var limit = rlimit()
        guard getrlimit(Int32(__RLIMIT_MEMLOCK.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return UInt64(limit.rlim_cur)
    }

    public var description: String {
        switch self {
        case .disabledBySysctl:
            return "io_uring is disabled on this host (sysctl kernel.io_uring_disabled = 2). "
                + "Enable it: sysctl -w kernel.io_uring_disabled=0 (or 1, with kernel.io_uring_group "
                + "set to a group this process runs in)"
        case .restrictedToGroup(let group):
            let which = group.map { "kernel.io_uring_group = \($0)" } ?? "kernel.io_uring_group unset"
            return "io_uring is restricted on this host (sysctl kernel.io_uring_disabled = 1, \(which)) "
                + "and this process is not allowed. Enable it: run the process in that group (or with "
                + "CAP_SYS_ADMIN), set kernel.io_uring_group to its group, or sysctl -w kernel.io_uring_disabled=0"
        case .blockedBySandbox:
            return "io_uring_setup was refused (EPERM) although the kernel allows io_uring: a seccomp "
                + "profile or security module blocks it. Docker's and containerd's default seccomp profiles "
                + "do: run with --security-opt seccomp=PROFILE.json allowing io_uring_setup, io_uring_enter "
                + "and io_uring_register (or seccomp=unconfined); in Kubernetes set "
                + "securityContext.seccompProfile"
        case .notAvailable:
            return "io_uring is not available (ENOSYS): the kernel is built without CONFIG_IO_URING, or a "
                + "sandbox (gVisor, a seccomp profile answering ENOSYS) hides it. Torus needs Linux "
                + "\(KernelFeatures.minimumKernel) or later with io_uring"
        case .lockedMemory(let limit):
            let now = limit.map { "now \($0 / 1024) KiB" } ?? "now unlimited"
            return "the kernel refused the ring's memory (ENOMEM): memory or the cgroup's memory limit is "
                + "short, or (kernels before 5.12 charge rings to it) RLIMIT_MEMLOCK is too low (\(now)). "
                + "Raise it (ulimit -l unlimited; docker run --ulimit memlock=-1), or make the ring smaller "
                + "(EventLoop.Configuration.ringEntries)"
        case .kernelTooOld(let feature, let minimum, let running):
            return "\(feature) needs Linux \(minimum) or later; this kernel is \(running.isEmpty ? "older" : running)"
        }
    }
}

extension String {
    /// The string without leading and trailing ASCII whitespace (no Foundation here).
    fileprivate func trimmingWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        let start = firstIndex { !isSpace($0) } ?? endIndex
        let end = lastIndex { !isSpace($0) }.map { index(after: $0) } ?? start
        return self[start..<end]
    }
}
