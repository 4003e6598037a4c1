#if DEBUG
import CLiburing

/// Faults a test switches on, so the rare paths of a real kernel can be taken on
/// purpose (debug builds only: release builds have no such type and no branch for it).
///
/// - `fail(_:with:count:)`: the next `count` submissions of a kind complete with a
///   chosen error (`-ENOBUFS`, `-EMFILE`, `-ECONNRESET`, `-EPIPE`, `-ECANCELED`,
///   `-EINTR`, `-EAGAIN`, …). The operation is not run: its SQE is turned into a NOP
///   that keeps its `user_data`, and the NOP's result is replaced at reap time. So no
///   resource is consumed behind the owner's back (no provided buffer taken, no byte
///   sent, no fd accepted) and the faked result means exactly what the kernel's would
///   mean to the owner: nothing happened, here is why.
/// - `shortenSends(count:)`: the next `count` sends really run but are cut to half
///   their length (a `sendmsg` to half its first iovec): a real short send.
/// - `busyEnters`: the next `io_uring_enter`s that would submit return `-EBUSY` without
///   submitting (completions already posted are still collected, as the kernel does
///   when it refuses submissions while its CQ is backed up). `Ring.injectedBusySubmits`
///   does the same for the early submit of a full SQ.
/// - `withheldReaps`: the loop's next reaps find nothing, so completions pile up and a
///   small CQ overflows into the kernel's overflow list.
///
/// Ownership: a value inside the loop's `Ring`, touched on the loop thread only (set it
/// from a job the test runs on the loop: `loop.execute { loop.ring.faults... }`).
package struct FaultInjection {
    /// What an armed fault does to one submission.
    enum Fault: Equatable {
        /// Complete with this negative errno instead of running.
        case error(Int32)
        /// Send half the bytes.
        case shortSend
    }

    /// Armed faults per kind, each with how many submissions it still applies to.
    private var armed: [OperationKind: (fault: Fault, remaining: Int)] = [:]
    /// NOPs standing in for an operation, and the result their CQE is given.
    private var rewrites: [UInt64: Int32] = [:]
    /// Enters that return `-EBUSY` without submitting.
    package var busyEnters = 0
    /// Reaps that find nothing.
    package var withheldReaps = 0
    /// Counters a test reads to prove what happened (and that nothing spun).
    package private(set) var injectedErrors = 0
    package private(set) var shortSends = 0
    package private(set) var refusedEnters = 0
    /// Every `io_uring_enter` the loop made (submits, waits and refusals alike).
    package var enters = 0

    init() {}

    /// The next `count` submissions of `kind` complete with `-errno` without running.
    package mutating func fail(_ kind: OperationKind, with errno: Int32, count: Int = 1) {
        armed[kind] = count > 0 ? (.error(-abs(errno)), count) : nil
    }

    /// The next `count` sends are cut to half their length.
    package mutating func shortenSends(count: Int = 1) {
        armed[.send] = count > 0 ? (.shortSend, count) : nil
    }

    /// Disarms every fault of `kind` (operations already faked still complete faked).
    package mutating func clear(_ kind: OperationKind) { armed[kind] = nil }

    /// Disarms every fault.
    package mutating func clearAll() {
        armed.removeAll()
        busyEnters = 0
        withheldReaps = 0
    }

    /// True when a fault of `kind` is armed (the loop then calls `apply`).
    @inline(__always)
    func isArmed(_ kind: OperationKind) -> Bool { !armed.isEmpty && armed[kind] != nil }

    /// Applies the armed fault of `kind` to a prepared SQE that carries `userData`.
    mutating func apply(_ kind: OperationKind, userData: UInt64, to sqe: UnsafeMutablePointer<io_uring_sqe>) {
        guard let (fault, remaining) = armed[kind] else { return }
        armed[kind] = remaining > 1 ? (fault, remaining - 1) : nil
        switch fault {
        case .error(let result):
            // A link (connect + link timeout) stays a link: the timeout then ends with
            // the NOP, as it would with the failed operation.
            let link = sqe.pointee.flags & TORUS_IOSQE_IO_LINK
            io_uring_prep_nop(sqe)
            sqe.pointee.flags |= link
            sqe.pointee.user_data = userData
            rewrites[userData] = result
            injectedErrors += 1
        case .shortSend:
            if sqe.pointee.opcode == UInt8(IORING_OP_SEND.rawValue) {
                sqe.pointee.len = Swift.max(1, sqe.pointee.len / 2)
            } else if sqe.pointee.opcode == UInt8(IORING_OP_SENDMSG.rawValue),
                      let msg = UnsafeMutablePointer<msghdr>(bitPattern: UInt(sqe.pointee.addr)),
                      msg.pointee.msg_iovlen > 0, let iov = msg.pointee.msg_iov {
                // The write queue advances by the byte count the CQE reports, and
                // rebuilds its iovecs for every send: cutting them here is safe.
                msg.pointee.msg_iovlen = 1
                iov.pointee.iov_len = Swift.max(1, iov.pointee.iov_len / 2)
            }
            shortSends += 1
        }
    }

    /// The result the loop dispatches for a CQE: the kernel's, or the injected one.
    @inline(__always)
    mutating func result(_ userData: UInt64, kernel result: Int32) -> Int32 {
        guard !rewrites.isEmpty, let injected = rewrites.removeValue(forKey: userData) else { return result }
        return injected
    }

    /// Consumes one refused enter, if armed.
    mutating func refuseEnter() -> Bool {
        guard busyEnters > 0 else { return false }
        busyEnters -= 1
        refusedEnters += 1
        return true
    }

    /// Consumes one withheld reap, if armed.
    mutating func withholdReap() -> Bool {
        guard withheldReaps > 0 else { return false }
        withheldReaps -= 1
        return true
    }
}
#endif
