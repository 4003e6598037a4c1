import Torus

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
            /// The connection's inbox, once fetched (made on the loop at first use).
            var inbox: Inbox<WebSocketMessage>?
            public mutating func next() async throws -> WebSocketMessage? {
                if let inbox { return try await inbox.next() }
                let made = await ws.messageInbox()
                inbox = made
                return try await made.next()
            }
        }
        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(ws: ws) }
    }

    /// The next received message, or nil once the connection closed normally.
    /// Throws ``WebSocketError`` when it ended abnormally, `CancellationError` when the
    /// awaiting task is cancelled. One consumer at a time.
    public func nextMessage() async throws -> WebSocketMessage? {
        try await messageInbox().next()
    }

    /// The async face's inbox, made on the loop at first use (from a task that is not
    /// on the loop this costs one hop).
    func messageInbox() async -> Inbox<WebSocketMessage> {
        if loop.inLoop { return face.inbox }
        return await withCheckedContinuation { (c: CheckedContinuation<Inbox<WebSocketMessage>, Never>) in
            loop.runOnLoop { c.resume(returning: self.face.inbox) }
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
                self.face.closers.append(c)
                self.close(code: code, reason: reason)
            }
        }
    }

    /// Waits until the connection is closed; returns how it ended.
    public func closed() async -> WebSocketCloseInfo {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.runOnLoop {
                if self.closeInfo != nil { return c.resume() }
                self.face.closers.append(c)
            }
        }
        return await withCheckedContinuation { (c: CheckedContinuation<WebSocketCloseInfo, Never>) in
            // Not from input: the first wait ended only once closeInfo was set (finishAsync runs after it,
            // and it is never cleared).
            loop.runOnLoop { c.resume(returning: self.closeInfo!) }
        }
    }

    // MARK: Loop side

    func enqueue(_ message: WebSocketMessage, size: Int) {
        face.inbox.push(message, weight: size)
    }

    /// The async face, made on first use: messages no callback took wait in its inbox
    /// for `nextMessage()`; above `inboundBufferLimit` bytes reading pauses until the
    /// reader is down to half. Made after the close, it ends as the connection ended.
    /// Loop thread only.
    var face: WebSocketAsyncFace {
        if let asyncFace { return asyncFace }
        loop.assertInLoop()
        let inbox = Inbox<WebSocketMessage>(loop: loop, highWater: configuration.inboundBufferLimit)
        inbox.onPressure = { [unowned self] pressure in inboxPressure(pressure) }
        let made = WebSocketAsyncFace(inbox: inbox)
        asyncFace = made
        if closeReceived || closeInfo != nil { inbox.finish(error: endError()) }
        return made
    }

    /// The inbox asks to pause reading above its high water mark, or to resume.
    func inboxPressure(_ pressure: Inbox<WebSocketMessage>.Pressure) {
        switch pressure {
        case .pause:
            asyncFace?.pausedForInbox = true
            connection.pauseReading()
        case .resume:
            asyncFace?.pausedForInbox = false
            if !readingPaused { connection.resumeReading() }
        }
    }

    /// Why the message sequence ends with an error, or nil for a normal end.
    func endError() -> (any Error)? {
        if closeReceived { return nil }
        if let failure { return failure }
        if closedByApplication, closeInfo?.error == nil { return nil }
        if let info = closeInfo { return WebSocketError.abnormalClosure(info) }
        return nil
    }

    private func sendAsync(_ message: WebSocketMessage, _ c: CheckedContinuation<Void, any Error>) {
        guard send(message) else { return c.resume(throwing: WebSocketError.closed) }
        if connection.isWritable { c.resume() } else { face.writers.append(c) }
    }

    func resumeWriters() {
        guard let asyncFace, !asyncFace.writers.isEmpty else { return }
        let w = asyncFace.writers
        asyncFace.writers.removeAll()
        for c in w { c.resume() }
    }

    /// The peer's close frame arrived: the reader gets what is queued, then the end.
    func wakeReaderAtClose() {
        asyncFace?.inbox.finish()
    }

    /// Ends the async face when the socket is released.
    func finishAsync(_ info: WebSocketCloseInfo) {
        guard let asyncFace else { return }
        asyncFace.inbox.finish(error: endError())
        let w = asyncFace.writers
        asyncFace.writers.removeAll()
        for c in w { c.resume(throwing: WebSocketError.closed) }
        let cl = asyncFace.closers
        asyncFace.closers.removeAll()
        for c in cl { c.resume() }
    }
}
