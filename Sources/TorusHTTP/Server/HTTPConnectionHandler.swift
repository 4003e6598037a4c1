import HTTPTypes
import Torus

/// One HTTP/1.1 connection: feeds received bytes to the parser, answers in order.
///
/// Fixed routes and errors are answered inline on the loop, so a pipelined batch of
/// plaintext requests becomes one write of all responses. An async handler runs in a
/// task preferring the loop; while it answers, parsing of later pipelined requests
/// pauses (their bytes wait in `leftover` and reading is paused), so responses leave
/// strictly in order. Request bodies stream to the handler with backpressure.
///
/// Ownership: owned by its `Connection` (as its handler) until it closes or upgrades;
/// the server's per-loop registry holds it too, for graceful shutdown. Loop thread only.
final class HTTPConnectionHandler: ConnectionHandler, @unchecked Sendable {
    let server: HTTPServerState
    /// Strong: a handler task may still call in after the connection closed (its
    /// `isOpen` is then false); the cycle with `connection.handler` is broken when the
    /// connection drops its handler after `closed`.
    let connection: Connection
    private var parser: HTTPRequestParser
    private var serializer = HTTPResponseSerializer()
    private var out: [UInt8] = []

    private enum Current {
        case none
        case fixed(PrecomputedResponse)
        case status(HTTPResponse.Status, String)
        case handler(RequestBodyState)
        case upgraded
    }
    private var current = Current.none
    private var keepAlive = true
    private var isHeadRequest = false
    private var version = HTTPVersion.http11
    /// An async response is being produced or sent.
    private var responding = false
    private var requestEnded = false
    private var leftover: [UInt8] = []
    private var parsePaused = false
    private var closeAfterResponse = false
    private var stopping = false
    private var requestTimer: Timer?
    private var bodyWriter: HTTPResponseBodyWriter?
    private var fileSender: FileSender?
    /// The current request broke (malformed body, or it stalled) while its handler
    /// runs: answered instead of the handler's response, or the connection closes if
    /// that response has started.
    private var pendingAbort: Abort?
    private enum Abort {
        case parse(HTTPParseError)
        case timeout
    }
    /// The head of the async response has been queued.
    private var responseStarted = false

    init(server: HTTPServerState, connection: Connection) {
        self.server = server
        self.connection = connection
        parser = HTTPRequestParser(limits: server.configuration.limits)
        out.reserveCapacity(2048)
    }

    func connected(_ connection: Connection) {
        server.register(self)
    }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        if parsePaused {
            leftover.append(contentsOf: bytes.unsafeBytes)
            return
        }
        process(bytes.unsafeBytes)
    }

    func inputClosed(_ connection: Connection) {
        // The peer sent FIN: finish what is in progress, then close.
        if responding || parsePaused {
            closeAfterResponse = true
        } else {
            connection.closeAfterWriting()
        }
    }

    func writable(_ connection: Connection) {
        bodyWriter?.wake(error: nil)
        fileSender?.writable()
    }

    func closed(_ connection: Connection, error: (any Error)?) {
        requestTimer?.cancel()
        requestTimer = nil
        if case .handler(let body) = current { body.finish(error: HTTPServerError.connectionClosed) }
        bodyWriter?.wake(error: HTTPServerError.connectionClosed)
        bodyWriter = nil
        server.unregister(self)
    }

    // MARK: Parsing

    private func process(_ bytes: UnsafeRawBufferPointer) {
        var consumed = 0
        do {
            consumed = try parser.parse(bytes) { event in
                switch event {
                case .head(let head): return onHead(head)
                case .body(let chunk): return onBody(chunk)
                case .end: return onEnd()
                }
            }
        } catch {
            onParseError(error)
            return
        }
        if case .upgraded = current {
            finishUpgrade(leftover: UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
            return
        }
        if consumed < bytes.count && !parser.isClosed {
            leftover.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
            parsePaused = true
            connection.pauseReading()
        }
        flushOut()
        // The timer runs while a request's head or body is incomplete, also while its
        // handler is already running (a stalled upload must not hold the connection).
        if parser.isIdle || parsePaused || parser.isClosed || !connection.isOpen {
            if let t = requestTimer {
                t.cancel()
                requestTimer = nil
            }
        } else if requestTimer == nil {
            // A request is half-received: it must complete in time.
            requestTimer = connection.loop.schedule(after: server.configuration.requestTimeout) { [weak self] in
                self?.requestTimedOut()
            }
        }
    }

    private func onHead(_ head: RequestHead) -> HTTPRequestParser.Control {
        keepAlive = head.keepAlive && !stopping && !closeAfterResponse
        isHeadRequest = head.method == .head
        version = head.version
        requestEnded = false
        if head.targetForm == .asterisk {
            current = head.method == .options ? .fixed(server.optionsResponse) : .status(.badRequest, "bad target")
            return .proceed
        }
        switch server.router.match(head) {
        case .found(.fixed(let response), _):
            current = .fixed(response)
        case .found(.upgrade(let decide), _):
            guard head.isUpgrade else {
                current = .status(.upgradeRequired, "this resource needs an Upgrade")
                return .proceed
            }
            switch decide(head) {
            case .reject(let status, let fields, let reason):
                var fields = fields
                fields[.contentType] = "text/plain; charset=utf-8"
                keepAlive = false
                serializer.writeResponse(HTTPResponse(status: status, headerFields: fields), body: Array((reason + "\n").utf8),
                                         keepAlive: false, requestVersion: version, into: &out)
                current = .status(status, "")
                closeAfterResponse = true
                return .proceed
            case .accept(let fields, let makeHandler):
                serializer.writeHead(HTTPResponse(status: .switchingProtocols, headerFields: fields),
                                     framing: .none, keepAlive: true, into: &out)
                pendingUpgrade = makeHandler
                current = .upgraded
                return .pause
            }
        case .found(.handler(let handler), let parameters):
            startHandler(handler, head: head, parameters: parameters)
        case .methodNotAllowed:
            current = .status(.methodNotAllowed, "method not allowed")
        case .notFound:
            current = .status(.notFound, "not found")
        }
        return .proceed
    }

    private var pendingUpgrade: (@Sendable (Connection) -> any UpgradedConnectionHandler)?

    private func onBody(_ chunk: UnsafeRawBufferPointer) -> HTTPRequestParser.Control {
        if case .handler(let body) = current { body.append(chunk) }
        return .proceed
    }

    private func onEnd() -> HTTPRequestParser.Control {
        requestEnded = true
        switch current {
        case .fixed(let response):
            serializer.write(response, keepAlive: keepAlive, requestVersion: version,
                             isHeadRequest: isHeadRequest, into: &out)
            current = .none
        case .status(let status, let reason):
            if !reason.isEmpty { writeStatus(status, reason) }
            current = .none
        case .handler(let body):
            body.finish()
            if responding { return .pause }
            current = .none
        case .none, .upgraded:
            break
        }
        if !keepAlive { closeAfterResponse = true }
        return closeAfterResponse ? .pause : .proceed
    }

    private func writeStatus(_ status: HTTPResponse.Status, _ reason: String) {
        serializer.writeResponse(HTTPResponse(status: status, headerFields: [.contentType: "text/plain; charset=utf-8"]),
                                 body: Array((reason + "\n").utf8), keepAlive: keepAlive,
                                 requestVersion: version, isHeadRequest: isHeadRequest, into: &out)
    }

    private func onParseError(_ error: HTTPParseError) {
        connection.pauseReading()
        requestTimer?.cancel()
        requestTimer = nil
        if responding {
            abortHandler(.parse(error), bodyError: error == .bodyTooLarge ? .bodyTooLarge : .badRequest)
            return
        }
        serializer.writeErrorResponse(for: error, into: &out)
        closeAfterResponse = true
        flushOut()
    }

    private func requestTimedOut() {
        requestTimer = nil
        guard connection.isOpen else { return }
        connection.pauseReading()
        if responding {
            abortHandler(.timeout, bodyError: .requestTimeout)
            return
        }
        writeTimeout()
        closeAfterResponse = true
        flushOut()
    }

    private func writeTimeout() {
        serializer.writeResponse(HTTPResponse(status: .requestTimeout, headerFields: [.contentType: "text/plain"]),
                                 body: Array("request timed out\n".utf8), keepAlive: false, into: &out)
    }

    private func flushOut() {
        if !out.isEmpty {
            connection.send(out.withUnsafeBytes { $0 })
            out.removeAll(keepingCapacity: true)
        }
        if closeAfterResponse && !responding { connection.closeAfterWriting() }
    }

    // MARK: Upgrade

    private func finishUpgrade(leftover bytes: UnsafeRawBufferPointer) {
        flushOut()
        server.unregister(self)
        guard let make = pendingUpgrade else { return connection.close() }
        pendingUpgrade = nil
        let next = make(connection)
        connection.handler = next
        next.upgraded(connection, leftover: bytes)
    }

    // MARK: Async handlers

    /// The request under a running handler broke: its body ends with `bodyError` (so
    /// a handler reading it stops), and its response is replaced by the error status,
    /// or, when the response has already started, the connection closes.
    private func abortHandler(_ abort: Abort, bodyError: HTTPServerError) {
        if case .handler(let body) = current { body.finish(error: bodyError) }
        if responseStarted {
            connection.close(error: bodyError)
        } else {
            pendingAbort = abort
        }
    }

    private func startHandler(_ handler: @escaping HTTPHandler, head: RequestHead, parameters: [String: String]) {
        let body = RequestBodyState(connection: connection, limit: server.configuration.bodyBufferLimit)
        current = .handler(body)
        responding = true
        responseStarted = false
        connection.idleTimeoutSuspended = true
        if head.expectContinue {
            HTTPResponseSerializer.writeContinue(into: &out)
        }
        let request = HTTPServerRequest(head: head, parameters: parameters, body: HTTPRequestBody(state: body),
                                        remoteAddress: connection.remoteAddress, loop: connection.loop)
        let loop = connection.loop
        Task(executorPreference: loop) { [self] in
            let response: HTTPServerResponse
            do {
                response = try await handler(request)
            } catch HTTPServerError.bodyTooLarge {
                response = .status(.contentTooLarge)
            } catch {
                response = .status(.internalServerError)
            }
            loop.runOnLoop { [self] in self.send(response) }
        }
    }

    private func send(_ response: HTTPServerResponse) {
        guard connection.isOpen else { return }
        if let abort = pendingAbort {
            // The request broke before this response started: answer the error instead.
            pendingAbort = nil
            responding = false
            connection.idleTimeoutSuspended = false
            switch abort {
            case .parse(let error):
                serializer.writeErrorResponse(for: error, into: &out)
            case .timeout:
                writeTimeout()
            }
            closeAfterResponse = true
            flushOut()
            return
        }
        responseStarted = true
        // While the server stops, every response announces the close.
        if stopping { keepAlive = false }
        // A response ready before its request has fully arrived announces the close
        // (the rest of the request body will not be read). A streamed response is the
        // exception: its handler usually consumes the body while producing (an echo),
        // so keep-alive is decided when the response ends (see `finishResponse`).
        if !requestEnded, !response.body.isStream { keepAlive = false }
        let noBody = response.status.code == 204 || response.status.code == 304 || response.status.kind == .informational
        switch response.body {
        case .empty:
            serializer.writeHead(HTTPResponse(status: response.status, headerFields: response.headerFields),
                                 framing: noBody ? .none : .contentLength(0), keepAlive: keepAlive,
                                 requestVersion: version, into: &out)
            finishResponse()
        case .bytes(let bytes):
            serializer.writeResponse(HTTPResponse(status: response.status, headerFields: response.headerFields),
                                     body: bytes, keepAlive: keepAlive, requestVersion: version,
                                     isHeadRequest: isHeadRequest, into: &out)
            finishResponse()
        case .stream(let produce):
            let length = response.headerFields[.contentLength].flatMap { Int($0) }
            let chunked = length == nil && version == .http11
            if length == nil && !chunked { keepAlive = false }
            serializer.writeHead(HTTPResponse(status: response.status, headerFields: response.headerFields),
                                 framing: length.map { .contentLength($0) } ?? (chunked ? .chunked : .none),
                                 keepAlive: keepAlive, requestVersion: version, into: &out)
            flushOut()
            let writer = HTTPResponseBodyWriter(connection: connection, chunked: chunked, headOnly: isHeadRequest)
            bodyWriter = writer
            let loop = connection.loop
            Task(executorPreference: loop) { [self] in
                let ok: Bool
                do {
                    try await produce(writer)
                    ok = true
                } catch {
                    ok = false
                }
                loop.runOnLoop { [self] in
                    bodyWriter = nil
                    guard connection.isOpen else { return }
                    if !ok {
                        connection.close(error: HTTPServerError.connectionClosed)
                        return
                    }
                    if chunked && !isHeadRequest { HTTPResponseSerializer.writeLastChunk(into: &out) }
                    finishResponse()
                }
            }
        case .file(let path, let range, _):
            let count = range.map { Int($0.upperBound - $0.lowerBound + 1) } ?? 0
            serializer.writeHead(HTTPResponse(status: response.status, headerFields: response.headerFields),
                                 framing: .contentLength(count), keepAlive: keepAlive,
                                 requestVersion: version, into: &out)
            flushOut()
            guard let range, !isHeadRequest else { return finishResponse() }
            connection.loop.openFile(path) { [self] result in
                switch result {
                case .failure:
                    connection.close(error: HTTPServerError.connectionClosed)
                case .success(let file):
                    let sender = FileSender(connection: connection, file: file, range: range) { [self] ok in
                        fileSender = nil
                        if ok { finishResponse() } else { connection.close(error: HTTPServerError.connectionClosed) }
                    }
                    fileSender = sender
                    sender.start()
                }
            }
        }
    }

    private func finishResponse() {
        responding = false
        connection.idleTimeoutSuspended = false
        if pendingAbort != nil {
            // The request broke after its response was complete: just close.
            pendingAbort = nil
            closeAfterResponse = true
        }
        if !keepAlive || stopping || !requestEnded { closeAfterResponse = true }
        if requestEnded { current = .none }
        flushOut()
        guard !closeAfterResponse, connection.isOpen else { return }
        // Resume the pipelined requests that waited for this response.
        if parsePaused {
            parsePaused = false
            let pending = leftover
            leftover.removeAll()
            connection.resumeReading()
            pending.withUnsafeBytes { process($0) }
        }
    }

    // MARK: Graceful shutdown

    /// Idle connections close now; busy ones after their current response.
    func beginStopping() {
        stopping = true
        if !responding && parser.isIdle && leftover.isEmpty {
            connection.closeAfterWriting()
        } else {
            closeAfterResponse = true
        }
    }
}

extension HTTPServerResponse.Body {
    var isStream: Bool {
        if case .stream = self { true } else { false }
    }
}
