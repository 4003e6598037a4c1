import Foundation
import Testing
@testable import Torus
import TorusTestSupport

/// Installs a seccomp filter that answers `io_uring_setup` (syscall 425 on every
/// architecture) with the errno given as the first argument, then executes the rest
/// of the arguments. Unprivileged (`PR_SET_NO_NEW_PRIVS`), and it binds only this
/// child process and what it executes.
private let denyIOUringSetup = #"""
import ctypes, os, sys
err = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
class F(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
class P(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(F))]
# ld [nr]; jeq 425 ? next : allow; ret ERRNO|err; ret ALLOW
prog = (F * 4)(F(0x20, 0, 0, 0), F(0x15, 0, 1, 425), F(0x06, 0, 0, 0x00050000 | err), F(0x06, 0, 0, 0x7fff0000))
fprog = P(4, prog)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit("seccomp filter refused: %s" % os.strerror(ctypes.get_errno()))
os.execv(sys.argv[2], sys.argv[2:])
"""#

@Suite("io_uring refused at start")
struct KernelRefusalTests {
    typealias Sysctls = KernelRefusal.Sysctls

    @Test("EPERM is explained by kernel.io_uring_disabled, the io_uring group, or a sandbox")
    func permissionMapping() {
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: 2, group: nil, inGroup: false))
                == .disabledBySysctl)
        // Disabled = 2 wins even for a member of the group (the kernel refuses everyone).
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: 2, group: 7, inGroup: true))
                == .disabledBySysctl)
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: 1, group: 1234, inGroup: false))
                == .restrictedToGroup(1234))
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: 1, group: nil, inGroup: false))
                == .restrictedToGroup(nil))
        // Allowed by the sysctl (or a kernel before 6.6 without it): something else blocks it.
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: 1, group: 1234, inGroup: true))
                == .blockedBySandbox)
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: 0, group: nil, inGroup: false))
                == .blockedBySandbox)
        #expect(KernelRefusal.diagnose(setupErrno: EPERM, sysctls: Sysctls(disabled: nil, group: nil, inGroup: false))
                == .blockedBySandbox)
    }

    @Test("ENOSYS, ENOMEM and EINVAL name their cause; other errnos are left plain")
    func otherErrnos() {
        let none = Sysctls(disabled: nil, group: nil, inGroup: false)
        #expect(KernelRefusal.diagnose(setupErrno: ENOSYS, sysctls: none) == .notAvailable)
        #expect(KernelRefusal.diagnose(setupErrno: ENOMEM, sysctls: none, memlockLimit: 65536)
                == .lockedMemory(limit: 65536))
        #expect(KernelRefusal.diagnose(setupErrno: EINVAL, sysctls: none, running: "5.4.0")
                == .kernelTooOld(feature: "io_uring_setup with SUBMIT_ALL and R_DISABLED",
                                 minimum: KernelVersion(5, 19), running: "5.4.0"))
        #expect(KernelRefusal.diagnose(setupErrno: EFAULT, sysctls: none) == nil)
        #expect(KernelRefusal.diagnose(setupErrno: EMFILE, sysctls: none) == nil)
    }

    @Test("each description says how to enable io_uring")
    func descriptions() {
        #expect("\(KernelRefusal.disabledBySysctl)".contains("sysctl -w kernel.io_uring_disabled=0"))
        #expect("\(KernelRefusal.restrictedToGroup(1234))".contains("kernel.io_uring_group = 1234"))
        #expect("\(KernelRefusal.blockedBySandbox)".contains("--security-opt seccomp="))
        #expect("\(KernelRefusal.notAvailable)".contains("CONFIG_IO_URING"))
        #expect("\(KernelRefusal.lockedMemory(limit: 65536))".contains("RLIMIT_MEMLOCK is too low (now 64 KiB)"))
        #expect("\(KernelRefusal.kernelTooOld(feature: "provided buffer rings", minimum: KernelVersion(5, 19), running: "5.15.0"))"
                == "provided buffer rings needs Linux 5.19 or later; this kernel is 5.15.0")
        let error = IOError(.disabledBySysctl, errno: EPERM, "io_uring_queue_init_params")
        #expect(error.refusal == .disabledBySysctl)
        #expect(error.description.hasPrefix("io_uring_queue_init_params: Operation not permitted (1): io_uring is disabled"))
        #expect(IOError(errno: EPERM, "open").refusal == nil)
        #expect(IOError(errno: EPERM, "open").description == "open: Operation not permitted (1)")
    }

    @Test("the setup error reads this host's sysctl")
    func setupErrorOnThisHost() throws {
        let error = Ring.setupError(EPERM)
        #expect(error.errno == EPERM)
        let refusal = try #require(error.refusal)
        let disabled = (try? String(contentsOfFile: "/proc/sys/kernel/io_uring_disabled", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        switch disabled {
        case 2?: #expect(refusal == .disabledBySysctl)
        case 1?: #expect(refusal != .disabledBySysctl)
        default: #expect(refusal == .blockedBySandbox)
        }
        #expect(Ring.setupError(EBADF).refusal == nil)
    }

    /// A real refusal: torus-echo started under a seccomp filter that answers
    /// io_uring_setup with `errno` prints the explained error and exits 1; no trap.
    @Test("torus-echo refused io_uring by seccomp: the error names the cause, exit 1, no trap",
          arguments: [(EPERM, "a seccomp profile or security module blocks it"),
                      (ENOSYS, "built without CONFIG_IO_URING"),
                      (ENOMEM, "RLIMIT_MEMLOCK")])
    func refusedUnderSeccomp(_ errno: Int32, _ cause: String) async throws {
        let echo = try ChildProcess("/usr/bin/env", ["python3", "-c", denyIOUringSetup, "\(errno)",
                                                 BuiltProducts.path("torus-echo"), "--port", "0", "--threads", "1"])
        let status = await echo.wait(timeout: .seconds(30))
        #expect(echo.terminationSignal == nil, "ended by a signal:\n\(echo.text)")
        #expect(status == 1, "\(echo.text)")
        #expect(echo.text.contains("Error: io_uring_queue_init_params: "), "\(echo.text)")
        #expect(echo.text.contains(cause), "\(echo.text)")
        #expect(!echo.text.contains("listening on"))
        #expect(!echo.text.contains("Fatal error"))
    }
}
