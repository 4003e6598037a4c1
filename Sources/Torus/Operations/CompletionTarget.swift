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
protocol CompletionTarget: AnyObject {
    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop)
}
