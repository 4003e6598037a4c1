import Torus

/// Identifies one pending `next()` so a late cancellation cannot hit a later one.
final class MessageWaiter: Sendable {}

extension WebSocketConnection {
    /// Received messages as an async sequence (used when ``onText``/``onBinary`` are
    /// not set). Ends (returns nil) after a closing handshake or a close we started;
    /// throws ``WebSocketError`` when the connection failed or ended abnormally. One
    /// consumer at a time. Safe from any task.
    public var messages: Messages { Messages(ws: self) }

    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = WebSocketMessage
        let ws: WebSocketConnection
        public struct AsyncIterator: AsyncIteratorProtocol {
            let ws: WebSocketConnection
            public mutating func next() async throws -> WebSocketMessage? { try await ws.nextMessage() }
        }
        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(ws: ws) }
    }

    /// The next received message, or nil once the connection closed normally.
    public func nextMessage() async throws -> WebSocketMessage? {
        let waiter = MessageWaiter()
        let loop = self.loop
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<WebSocketMessage?, any Error>) in
                loop.runOnLoop { self.takeMessage(c, waiter: waiter) }
            }
        } onCancel: {
            loop.runOnLoop { self.cancelTake(waiter) }
        }
    }

    /// Queues `message` and waits while the write queue is above its high water mark.
    /// Throws ``WebSocketError/closed`` once closing. Safe from any task.
    public func send(_ message: WebSocketMessage) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.runOnLoop { self.sendAsync(message, c) }
        }
    }

    public func send(text: String) async throws { try await send(.text(text)) }
    public func send(binary: [UInt8]) async throws { try await send(.binary(binary)) }

    /// Starts the closing handshake and waits until the socket is released.
    public func close(code: CloseCode = .normalClosure, reason: String = "") async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.runOnLoop {
                if self.closeInfo != nil { return c.resume() }
                self.closers.append(c)
                self.close(code: code, reason: reason)
            }
        }
    }

    /// Waits until the connection is closed; returns how it ended.
    public func closed() async -> WebSocketCloseInfo {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.runOnLoop {
                if self.closeInfo != nil { return c.resume() }
                self.closers.append(c)
            }
        }
        return await withCheckedContinuation { (c: CheckedContinuation<WebSocketCloseInfo, Never>) in
            loop.runOnLoop { c.resume(returning: self.closeInfo!) }
        }
    }

    // MARK: Loop side

    func enqueue(_ message: WebSocketMessage, size: Int) {
        if let (c, _) = reader, inboxHead == inbox.count {
            reader = nil
            c.resume(returning: message)
            return
        }
        inbox.append(message)
        inboxBytes += size
        if inboxBytes > configuration.inboundBufferLimit && !pausedForInbox {
            pausedForInbox = true
            connection.pauseReading()
        }
    }

    private func popMessage() -> WebSocketMessage? {
        guard inboxHead < inbox.count else { return nil }
        let m = inbox[inboxHead]
        inboxHead += 1
        if inboxHead == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            inboxHead = 0
        } else if inboxHead >= 64 && inboxHead * 2 >= inbox.count {
            inbox.removeFirst(inboxHead)
            inboxHead = 0
        }
        switch m {
        case .text(let s): inboxBytes -= s.utf8.count
        case .binary(let b): inboxBytes -= b.count
        }
        if pausedForInbox && inboxBytes <= configuration.inboundBufferLimit / 2 {
            pausedForInbox = false
            if !readingPaused { connection.resumeReading() }
        }
        return m
    }

    private func takeMessage(_ c: CheckedContinuation<WebSocketMessage?, any Error>, waiter: MessageWaiter) {
        if let m = popMessage() {
            c.resume(returning: m)
        } else if closeReceived || closeInfo != nil {
            if let error = endError() { c.resume(throwing: error) } else { c.resume(returning: nil) }
        } else if reader != nil {
            c.resume(throwing: WebSocketError.readPending)
        } else {
            reader = (c, waiter)
        }
    }

    private func cancelTake(_ waiter: MessageWaiter) {
        guard let (c, w) = reader, w === waiter else { return }
        reader = nil
        c.resume(throwing: CancellationError())
    }

    /// Why the message sequence ends with an error, or nil for a normal end.
    private func endError() -> (any Error)? {
        if closeReceived { return nil }
        if let failure { return failure }
        if closedByApplication, closeInfo?.error == nil { return nil }
        if let info = closeInfo { return WebSocketError.abnormalClosure(info) }
        return nil
    }

    private func sendAsync(_ message: WebSocketMessage, _ c: CheckedContinuation<Void, any Error>) {
        guard send(message) else { return c.resume(throwing: WebSocketError.closed) }
        if connection.isWritable { c.resume() } else { writers.append(c) }
    }

    func resumeWriters() {
        guard !writers.isEmpty else { return }
        let w = writers
        writers.removeAll()
        for c in w { c.resume() }
    }

    /// The peer's close frame arrived: a waiting reader with nothing left to read ends.
    func wakeReaderAtClose() {
        guard let (c, _) = reader, inboxHead == inbox.count else { return }
        reader = nil
        c.resume(returning: nil)
    }

    /// Ends the async face when the socket is released.
    func finishAsync(_ info: WebSocketCloseInfo) {
        if let (c, _) = reader {
            reader = nil
            if let m = popMessage() {
                c.resume(returning: m)
            } else if let error = endError() {
                c.resume(throwing: error)
            } else {
                c.resume(returning: nil)
            }
        }
        let w = writers
        writers.removeAll()
        for c in w { c.resume(throwing: WebSocketError.closed) }
        let cl = closers
        closers.removeAll()
        for c in cl { c.resume() }
    }
}
