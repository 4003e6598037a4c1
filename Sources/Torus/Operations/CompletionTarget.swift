import CLiburing
/// The party that owns an in-flight operation and receives its completions.
///
/// Ownership: the loop's operation table holds a *strong* reference to the target for
/// as long as the kernel may produce a completion for the operation. A target keeps
/// everything the kernel may touch (iovecs, msghdr, sockaddr, timespec, statx, data)
/// in its own stored properties, so memory the kernel writes into cannot be freed
/// before the final CQE, even when the application has long stopped caring.
///
/// `complete` runs on the loop thread. `tag` is the target's own discriminator (for
/// example which of a connection's operations finished); `final` is false only for a
/// multishot completion that will be followed by more.
///
/// Re-arming is one rule, applied by the loop: after a *final* completion, a target
/// that answers `.rearm` (the operation is still wanted) gets `rearm(tag:loop:)`
/// and submits it again. The answer to a non-final completion is ignored: the
/// multishot goes on by itself (a target that wants it to stop cancels it).
protocol CompletionTarget: AnyObject {
    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm
    /// Submits operation `tag` again. Called only after `complete` answered `.rearm`.
    func rearm(tag: UInt32, loop: EventLoop)
}

/// A target's answer to a completion: is the operation still wanted?
enum Rearm {
    /// Submit it again (a multishot that ended, a repeating timer, the wake read).
    case rearm
    /// Finished (or its owner re-arms later by itself, as a listener backing off).
    case done
}

extension CompletionTarget {
    func rearm(tag: UInt32, loop: EventLoop) {
        assertionFailure("\(Self.self) answered .rearm but does not re-arm")
    }
}
