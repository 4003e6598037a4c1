/// Receives that met a dry ring at its bound wait here instead of re-arming at once.
///
/// A receive that finds no provided buffer ends with `-ENOBUFS`. When the ring can
/// still grow (or post buffers it kept spare), the receive is re-armed at once: the
/// buffers are posted before the next submit. At the ring's bound, re-arming at once
/// would spin (each re-armed receive fails again in the same turn while the buffers
/// are still held by handlers or write queues): such a receive waits instead, and the
/// loop re-arms every waiting receive together, `receiveRetryDelay` later, by which
/// time buffers have usually come back; one that still finds none waits again. So a
/// ring dry for seconds costs a few re-arms per connection per 10 ms tick at most,
/// never a busy loop, and no bytes are lost: they stay in the socket (TCP flow control
/// slows the peer meanwhile).
extension EventLoop {
    /// How long a receive waits after meeting a dry ring at its bound.
    static let receiveRetryDelay = Duration.milliseconds(10)

    /// `waiter`'s receive met a dry ring that cannot grow: it is re-armed by
    /// `receiveBuffersMayBeBack()` after `receiveRetryDelay`. Loop thread only.
    func waitForReceiveBuffers(_ waiter: any ReceiveBufferWaiter) {
        receiveWaiters.append(waiter)
        ledger.receiveWaited()
        guard receiveRetryTimer == nil, !isStopping else { return }
        receiveRetryTimer = schedule(after: Self.receiveRetryDelay) { [unowned self] in
            receiveRetryTimer = nil
            let waiting = receiveWaiters.count
            for _ in 0..<waiting {
                guard let next = receiveWaiters.popFirst() else { break }
                next.receiveBuffersMayBeBack()
            }
        }
    }
}

/// An owner whose receive waits for provided buffers (see `waitForReceiveBuffers`).
protocol ReceiveBufferWaiter: AnyObject {
    /// Re-arms the receive if it still wants to read (it may have closed or paused
    /// meanwhile). Called once per wait, on the loop thread.
    func receiveBuffersMayBeBack()
}
