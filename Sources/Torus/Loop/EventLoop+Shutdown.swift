import CLiburing

extension EventLoop {
    /// `shutdown()` for async callers: the blocking join happens on a thread of its
    /// own, so no cooperative thread is held while the loop drains.
    public func shutdownGracefully() async -> LedgerSnapshot {
        await withCheckedContinuation { (c: CheckedContinuation<LedgerSnapshot, Never>) in
            LoopThread.detached(name: "torus-stop") { [self] in c.resume(returning: shutdown()) }
        }
    }
}

extension EventLoopGroup {
    /// `shutdown()` for async callers (see `EventLoop.shutdownGracefully`).
    public func shutdownGracefully() async -> LedgerSnapshot {
        var total = LedgerSnapshot()
        for loop in loops { total = total + (await loop.shutdownGracefully()) }
        return total
    }
}
