import CLiburing
/// Application-level liveness: idle and send timeouts, checked by one repeating
/// timer per loop while any connection has a deadline. A connection past its
/// deadline closes through its ordinary close path with a `TimeoutError`.
extension EventLoop {
    /// How often deadlines are checked (their resolution).
    static let sweepInterval = Duration.milliseconds(250)

    func watch(_ connection: Connection) {
        watched[ObjectIdentifier(connection)] = connection
        if sweepTimer == nil, !watched.isEmpty {
            sweepTimer = scheduleRepeating(every: Self.sweepInterval) { [unowned self] _ in sweep() }
        }
    }

    func unwatch(_ connection: Connection) {
        watched[ObjectIdentifier(connection)] = nil
        if watched.isEmpty, let timer = sweepTimer {
            sweepTimer = nil
            timer.cancelOnLoop()
        }
    }

    private func sweep() {
        let now = self.now
        for connection in Array(watched.values) { connection.checkDeadlines(now: now) }
    }
}
