import HTTPTypes
import Logging
import Torus
import TorusTLS

/// One HTTP/1.1 connection: feeds received bytes to the parser, answers in order.
///
/// Fixed routes and errors are answered inline on the loop, so a pipelined batch of
/// plaintext requests becomes one write of all responses. An async handler runs in a
/// task preferring the loop; while it answers, parsing of later pipelined requests
/// waits (their bytes wait in `leftover` and reading is paused), so responses leave
/// strictly in order. Request bodies stream to the handler with backpressure. Where
/// the connection is in this cycle is its ``HTTPConnectionPhase``.
///
/// Memory: an idle keep-alive connection holds only its phase, whether the request in
/// progress is the last, and references to the server, its connection and its loop's
/// scratch. The parser, buffers, inline answer and request clock are an
/// ``HTTPRequestWork`` taken from the loop's ``HTTPScratch`` when bytes arrive and
/// given back when the connection is idle again.
///
/// Ownership: owned by its `Connection` (as its handler) until it closes or upgrades;
/// the server's per-loop registry holds it too, for graceful shutdown. Loop thread only.
final class HTTPConnectionHandler: ConnectionHandler, @unchecked Sendable {
    let server: HTTPServerState
    /// Strong: a handler task may still call in after the connection closed (its
    /// `isOpen` is then false); the cycle with `connection.handler` is broken when the
    /// connection drops its handler after `closed`.
    let connection: Connection
    /// The loop's serializer and spare request work.
    private let scratch: HTTPScratch
    /// The loop's serializer (its `Date` cache is per loop, not per connection).
    private var serializer: HTTPResponseSerializer {
        get { scratch.serializer }
        _modify { yield &scratch.serializer }
    }
    // Loop-confined and never accessed overlapping, so the hot state below skips
    // Swift's dynamic exclusivity checks (they were several percent of a pipelined
    // server's CPU); the debug test suite still checks everything else.
    @exclusivity(unchecked) private var phase = HTTPConnectionPhase.reading
    /// The peer sent FIN or the server is stopping: the request in progress is the last.
    private var lastRequest = false
    /// Where the handler is in its loop's registry (an `IndexedSet`; -1: not a member).
    var registrySlot: Int32 = -1
    /// With `firstRequestTimeout`: when the connection closes if no request head has
    /// arrived yet (the loop's clock); 0 once one has, or without the setting.
    private var firstRequestDeadline: UInt64 = 0
    /// The request in progress; nil while idle (see ``HTTPRequestWork``).
    @exclusivity(unchecked) private var work: HTTPRequestWork?
    private var logger: Logger { server.configuration.logger }

    /// The request work, taken from the scratch when none is held.
    private var busy: HTTPRequestWork {
        if let work { return work }
        let taken = scratch.takeWork()
        work = taken
        return taken
    }

    /// Response bytes on their way to the write queue (in the request work).
    private var out: [UInt8] {
        get { busy.out }
        _modify { yield &busy.out }
    }

    init(server: HTTPServerState, connection: Connection) {
        self.server = server
        self.connection = connection
        scratch = server.scratch(for: connection.loop)
    }

    func connected(_ connection: Connection) {
        guard server.register(self) else {
            // Its source holds maxConnectionsPerSource already: 503 before reading.
            phase = .closing
            connection.send(HTTPConnectionHandler.tooManyConnections)
            connection.closeAfterWriting()
            return
        }
        if let limit = server.configuration.firstRequestTimeout {
            firstRequestDeadline = MonotonicClock.now() &+ limit.nanoseconds
            connection.watchLiveness(by: firstRequestDeadline)
        }
    }

    /// The answer to a connection beyond `maxConnectionsPerSource`.
    static let tooManyConnections: [UInt8] = Array(("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
        + "Content-Type: text/plain\r\nContent-Length: 39\r\n\r\ntoo many connections from this address\n").utf8)

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        switch phase {
        case .closing, .upgrading:
            return
        case .handling(let exchange) where exchange.requestEnded:
            // Pipelined requests wait until this response is out.
            busy.leftover.append(contentsOf: bytes.unsafeBytes)
            connection.pauseReading()
        case .reading, .handling:
            process(bytes.unsafeBytes)
        }
    }

    func inputClosed(_ connection: Connection) {
        // The peer sent FIN: finish what is in progress, then close. A request whose
        // body had not ended never will: its reader gets the close instead of waiting
        // for bytes that cannot come (the response may still be sent: the peer may only
        // have stopped writing).
        if case .handling(let exchange) = phase {
            lastRequest = true
            if !exchange.requestEnded { exchange.body.finish(error: HTTPServerError.connectionClosed) }
        } else {
            connection.closeAfterWriting()
        }
    }

    func writable(_ connection: Connection) {
        guard case .handling(let exchange) = phase, case .sending(let sender) = exchange.stage else { return }
        switch sender {
        case .whole: break
        case .stream(let writer): writer.wake(error: nil)
        case .file(let fileSender): fileSender?.writable()
        }
    }

    func closed(_ connection: Connection, error: (any Error)?) {
        cancelRequestTimer()
        if case .handling(let exchange) = phase {
            exchange.body.finish(error: HTTPServerError.connectionClosed)
            exchange.streamWriter?.wake(error: HTTPServerError.connectionClosed)
        }
        phase = .closing
        server.unregister(self)
        if let work, !work.parsing {
            self.work = nil
            work.out.removeAll(keepingCapacity: true)
            work.leftover.removeAll(keepingCapacity: true)
            work.inline = nil
            scratch.give(work)
        }
    }

    // MARK: Parsing

    private func process(_ bytes: UnsafeRawBufferPointer) {
        let work = busy
        var consumed = 0
        work.parsing = true
        do {
            consumed = try work.parser.parse(bytes) { event in
                switch event {
                case .head(let head): return onHead(head, work)
                case .body(let chunk): return onBody(chunk)
                case .end: return onEnd(work)
                }
            }
            work.parsing = false
        } catch {
            work.parsing = false
            onParseError(error)
            return
        }
        if case .upgrading(let makeHandler) = phase {
            finishUpgrade(makeHandler, leftover: UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
            return
        }
        if consumed < bytes.count, case .handling = phase {
            work.leftover.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
            connection.pauseReading()
        }
        updateRequestTimer()
        flushOut(work)
    }

    // The request work is passed down from `process` rather than read again through
    // `busy`: each read of the optional property retained and released it.
    private func onHead(_ head: RequestHead, _ work: HTTPRequestWork) -> HTTPRequestParser.Control {
        firstRequestDeadline = 0
        let facts = RequestFacts(keepAlive: head.keepAlive && !lastRequest, isHeadRequest: head.method == .head,
                                 version: head.version)
        if server.logsRequests {
            logger.debug("request", metadata: ["method": "\(head.methodString)", "target": "\(head.target)"])
        }
        if head.targetForm == .asterisk {
            guard head.method == .options else { return refuse(.badRequest, "bad target", head, facts, work) }
            work.inline = InlineRequest(answer: .fixed(server.optionsResponse), facts: facts)
            return .proceed
        }
        switch server.match(head) {
        case .found(.fixed(let response), _):
            if head.bodyFraming == .none {
                // The request ends with its head: answered now, in order (the parser
                // reports its end before the next request's head), with no answer kept.
                // With nothing answered before it in this batch, the cached answer is
                // copied straight into the write queue (one copy, no array in between).
                if work.out.isEmpty,
                   let answer = scratch.serializer.composedAnswer(response, keepAlive: facts.keepAlive,
                                                                  requestVersion: facts.version,
                                                                  isHeadRequest: facts.isHeadRequest)
                {
                    connection.send(answer)
                } else {
                    scratch.serializer.write(response, keepAlive: facts.keepAlive, requestVersion: facts.version,
                                             isHeadRequest: facts.isHeadRequest, into: &work.out)
                }
                work.inline = InlineRequest(answer: .written, facts: facts)
            } else {
                work.inline = InlineRequest(answer: .fixed(response), facts: facts)
            }
        case .found(.upgrade(let decide), _):
            guard head.isUpgrade else { return refuse(.upgradeRequired, "this resource needs an Upgrade", head, facts, work) }
            switch decide(head, connection.remoteAddress) {
            case .reject(let status, let fields, let reason):
                var fields = fields
                fields[.contentType] = "text/plain; charset=utf-8"
                serializer.writeResponse(HTTPResponse(status: status, headerFields: fields), body: Array((reason + "\n").utf8),
                                         keepAlive: false, requestVersion: facts.version, into: &out)
                enterClosing()
                return .pause
            case .accept(let fields, let makeHandler):
                serializer.writeHead(HTTPResponse(status: .switchingProtocols, headerFields: fields),
                                     framing: .none, keepAlive: true, into: &out)
                phase = .upgrading(makeHandler)
                return .pause
            }
        case .found(.handler(let handler), let parameters):
            startHandler(handler, head: head, parameters: parameters ?? [:], facts: facts)
        case .methodNotAllowed:
            return refuse(.methodNotAllowed, "method not allowed", head, facts, work)
        case .notFound:
            return refuse(.notFound, "not found", head, facts, work)
        }
        return .proceed
    }

    /// A request refused by its head alone. Normally the refusal is sent once the
    /// body has been read and skipped, keeping the connection. A client that asked
    /// `Expect: 100-continue` waits for a 100 before sending its body, so it gets the
    /// final status at once and the connection closes (its body is never read).
    private func refuse(_ status: HTTPResponse.Status, _ reason: String, _ head: RequestHead,
                        _ facts: RequestFacts, _ work: HTTPRequestWork) -> HTTPRequestParser.Control {
        guard head.expectContinue && head.bodyFraming != .none else {
            work.inline = InlineRequest(answer: .status(status, reason: reason), facts: facts)
            return .proceed
        }
        var facts = facts
        facts.keepAlive = false
        writeStatus(status, reason, facts)
        enterClosing()
        return .pause
    }

    private func onBody(_ chunk: UnsafeRawBufferPointer) -> HTTPRequestParser.Control {
        if case .handling(let exchange) = phase { exchange.body.append(chunk) }
        return .proceed
    }

    private func onEnd(_ work: HTTPRequestWork) -> HTTPRequestParser.Control {
        switch phase {
        case .reading:
            guard let inline = work.inline else { return .proceed }
            work.inline = nil
            switch inline.answer {
            case .fixed(let response):
                scratch.serializer.write(response, keepAlive: inline.facts.keepAlive && !lastRequest,
                                         requestVersion: inline.facts.version,
                                         isHeadRequest: inline.facts.isHeadRequest, into: &work.out)
            case .status(let status, let reason):
                var facts = inline.facts
                if lastRequest { facts.keepAlive = false }
                writeStatus(status, reason, facts)
            case .written:
                break
            }
            if !inline.facts.keepAlive || lastRequest {
                enterClosing()
                return .pause
            }
            return .proceed
        case .handling(let exchange):
            // The handler still answers (when it has finished first, the connection is
            // closing): the next request waits for its response.
            exchange.requestEnded = true
            exchange.body.finish()
            return .pause
        case .upgrading, .closing:
            return .pause
        }
    }

    private func writeStatus(_ status: HTTPResponse.Status, _ reason: String, _ facts: RequestFacts) {
        serializer.writeResponse(HTTPResponse(status: status, headerFields: [.contentType: "text/plain; charset=utf-8"]),
                                 body: Array((reason + "\n").utf8), keepAlive: facts.keepAlive,
                                 requestVersion: facts.version, isHeadRequest: facts.isHeadRequest, into: &out)
    }

    private func onParseError(_ error: HTTPParseError) {
        connection.pauseReading()
        cancelRequestTimer()
        logger.info("bad request refused", metadata: [
            "status": "\(error.statusCode)", "reason": "\(error.detail)", "peer": "\(peerDescription)",
        ])
        if case .handling(let exchange) = phase {
            abort(exchange, .parse(error), bodyError: error == .bodyTooLarge ? .bodyTooLarge : .badRequest)
            return
        }
        serializer.writeErrorResponse(for: error, into: &out)
        enterClosing()
        flushOut()
    }

    /// The response queued last ends the connection: no further input is read.
    private func enterClosing() {
        phase = .closing
        connection.pauseReading()
    }

    private func flushOut() {
        if let work {
            flushOut(work)
        } else if case .closing = phase {
            connection.closeAfterWriting()
        }
    }

    /// ``flushOut()`` with the request work in hand (the connection's own).
    private func flushOut(_ work: HTTPRequestWork) {
        if !work.out.isEmpty {
            connection.send(work.out.withUnsafeBytes { $0 })
            work.out.removeAll(keepingCapacity: true)
        }
        if case .closing = phase { connection.closeAfterWriting() }
        // Between requests (nothing half-parsed, nothing answered in progress, no
        // timer) the request work goes back to the loop's `scratch`, once: a send that
        // closed the connection has given it back already (`closed`, which also leaves
        // the phase `.closing`); the identity check keeps it from entering the pool twice.
        // Moved, not copied: `take()` leaves nil without a release and `give` consumes
        // it, so handing the work back costs no reference-count pair.
        if case .reading = phase, work.isReusable, self.work === work, let owned = self.work.take() {
            scratch.give(owned)
        }
    }

    /// True while the connection holds no request work (tests).
    var holdsNoScratch: Bool { work == nil }

    private var peerDescription: String { connection.remoteAddress?.description ?? "unknown" }

    // MARK: Timeouts

    /// The request clock runs while a request's head or body is incomplete, also while
    /// its handler already runs (a stalled upload must not hold the connection). Its
    /// deadlines live in the loop's deadline wheel: the connection asks
    /// `checkLiveness` when the earliest is due.
    private func updateRequestTimer() {
        let waiting: Bool
        switch phase {
        case .reading: waiting = false
        case .handling(let exchange): waiting = exchange.requestEnded
        case .upgrading, .closing: waiting = true
        }
        guard let work else { return }
        if waiting || work.parser.isIdle || work.parser.isClosed || !connection.isOpen {
            cancelRequestTimer()
        } else if work.requestClock == .stopped {
            // A request is half-received: its head must complete within the head
            // timeout, the whole request within the request timeout.
            let since = MonotonicClock.now()
            work.requestClock = .running(since: since)
            connection.watchLiveness(by: requestDeadline(since: since, readingHead: work.parser.isReadingHead))
        }
    }

    private func requestDeadline(since: UInt64, readingHead: Bool) -> UInt64 {
        let configuration = server.configuration
        let limit = readingHead ? min(configuration.headTimeout, configuration.requestTimeout) : configuration.requestTimeout
        return since &+ limit.nanoseconds
    }

    private func cancelRequestTimer() {
        work?.requestClock = .stopped
    }

    /// The connection's deadlines came due: 408 when the head or the whole request is
    /// late; otherwise the next of them (none while no request is incomplete).
    func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64? {
        if firstRequestDeadline != 0, connection.isOpen {
            guard now < firstRequestDeadline else {
                firstRequestDeadline = 0
                logger.info("no request in time; closing", metadata: ["peer": "\(peerDescription)"])
                connection.close()
                return nil
            }
            let next = requestCheck(connection, now: now)
            return min(next ?? .max, firstRequestDeadline)
        }
        return requestCheck(connection, now: now)
    }

    /// The request clock's part of `checkLiveness`.
    private func requestCheck(_ connection: Connection, now: UInt64) -> UInt64? {
        guard let work, case .running(let since) = work.requestClock, connection.isOpen else { return nil }
        let elapsed = now &- since
        let configuration = server.configuration
        if work.parser.isReadingHead && elapsed >= configuration.headTimeout.nanoseconds {
            work.requestClock = .stopped
            requestTimedOut("head")
            return nil
        }
        if elapsed >= configuration.requestTimeout.nanoseconds {
            work.requestClock = .stopped
            requestTimedOut(work.parser.isReadingHead ? "head" : "body")
            return nil
        }
        return requestDeadline(since: since, readingHead: work.parser.isReadingHead)
    }

    private func requestTimedOut(_ part: String) {
        connection.pauseReading()
        logger.info("request timed out", metadata: ["part": "\(part)", "peer": "\(peerDescription)"])
        if case .handling(let exchange) = phase {
            abort(exchange, .timeout, bodyError: .requestTimeout)
            return
        }
        writeTimeout()
        enterClosing()
        flushOut()
    }

    private func writeTimeout() {
        serializer.writeResponse(HTTPResponse(status: .requestTimeout, headerFields: [.contentType: "text/plain"]),
                                 body: Array("request timed out\n".utf8), keepAlive: false, into: &out)
    }

    // MARK: Upgrade

    private func finishUpgrade(_ makeHandler: @Sendable (Connection) -> any UpgradedConnectionHandler,
                               leftover bytes: UnsafeRawBufferPointer) {
        flushOut()
        cancelRequestTimer()
        server.unregister(self)
        let next = makeHandler(connection)
        connection.handler = next
        next.upgraded(connection, leftover: bytes)
    }

    // MARK: Async handlers

    /// The request under a running handler broke: its body ends with `bodyError` (so
    /// a handler reading it stops), and its response is replaced by the error status,
    /// or, when the response has already started, the connection closes.
    private func abort(_ exchange: HandlerExchange, _ reason: RequestAbort, bodyError: HTTPServerError) {
        exchange.body.finish(error: bodyError)
        switch exchange.stage {
        case .running:
            exchange.stage = .running(broken: reason)
        case .sending:
            connection.close(error: bodyError)
        }
    }

    private func startHandler(_ handler: @escaping HTTPHandler, head: RequestHead, parameters: [String: String],
                              facts: RequestFacts) {
        let body = RequestBodyState.requestBody(on: connection, limit: server.configuration.bodyBufferLimit)
        let exchange = HandlerExchange(body: body, facts: facts)
        phase = .handling(exchange)
        connection.idleTimeoutSuspended = true
        if head.expectContinue {
            HTTPResponseSerializer.writeContinue(into: &out)
        }
        let request = HTTPServerRequest(head: head, parameters: parameters, body: HTTPRequestBody(state: body),
                                        remoteAddress: connection.remoteAddress, loop: connection.loop,
                                        tlsSession: connection.tlsSession)
        let loop = connection.loop
        let logger = self.logger
        Task(executorPreference: loop) { [self] in
            let response: HTTPServerResponse
            do {
                response = try await handler(request)
            } catch HTTPServerError.bodyTooLarge {
                response = .status(.contentTooLarge)
            } catch {
                logger.error("handler failed: 500", metadata: [
                    "target": "\(request.head.target)", "error": "\(error)",
                ])
                response = .status(.internalServerError)
            }
            loop.runOnLoop { [self] in self.send(response, for: exchange) }
        }
    }

    private func send(_ response: HTTPServerResponse, for exchange: HandlerExchange) {
        guard connection.isOpen, case .handling(let current) = phase, current === exchange else { return }
        if case .running(let broken?) = exchange.stage {
            // The request broke before this response started: answer the error instead.
            connection.idleTimeoutSuspended = false
            switch broken {
            case .parse(let error):
                serializer.writeErrorResponse(for: error, into: &out)
            case .timeout:
                writeTimeout()
            }
            enterClosing()
            flushOut()
            return
        }
        exchange.stage = .sending(.whole)
        var facts = exchange.facts
        // While the server stops, or after the peer's FIN, every response announces the
        // close; so does one whose handler asked for it.
        if lastRequest || response.closesConnection { facts.keepAlive = false }
        // A response ready before its request has fully arrived announces the close
        // (the rest of the request body will not be read). A streamed response is the
        // exception: its handler usually consumes the body while producing (an echo),
        // so keep-alive is decided when the response ends (see `finishResponse`).
        if !exchange.requestEnded, !response.body.isStream { facts.keepAlive = false }
        let isHeadRequest = facts.isHeadRequest
        let noBody = response.status.code == 204 || response.status.code == 304 || response.status.kind == .informational
        let head = HTTPResponse(status: response.status, headerFields: response.headerFields)
        switch response.body {
        case .empty:
            serializer.writeHead(head, framing: noBody ? .none : .contentLength(0), keepAlive: facts.keepAlive,
                                 requestVersion: facts.version, into: &out)
            exchange.facts = facts
            finishResponse(exchange)
        case .bytes(let bytes):
            serializer.writeResponse(head, body: bytes, keepAlive: facts.keepAlive, requestVersion: facts.version,
                                     isHeadRequest: isHeadRequest, into: &out)
            exchange.facts = facts
            finishResponse(exchange)
        case .stream(let produce):
            let length = response.headerFields[.contentLength].flatMap { Int($0) }
            let chunked = length == nil && facts.version == .http11
            if length == nil && !chunked { facts.keepAlive = false }
            exchange.facts = facts
            serializer.writeHead(head, framing: length.map { .contentLength($0) } ?? (chunked ? .chunked : .untilClose),
                                 keepAlive: facts.keepAlive, requestVersion: facts.version, into: &out)
            flushOut()
            let writer = HTTPResponseBodyWriter(connection: connection, chunked: chunked, headOnly: isHeadRequest)
            exchange.stage = .sending(.stream(writer))
            let loop = connection.loop
            Task(executorPreference: loop) { [self] in
                let failure: (any Error)?
                do {
                    try await produce(writer)
                    failure = nil
                } catch {
                    failure = error
                }
                loop.runOnLoop { [self] in
                    guard connection.isOpen else { return }
                    if let failure {
                        logger.info("response stream failed", metadata: ["error": "\(failure)"])
                        connection.close(error: HTTPServerError.connectionClosed)
                        return
                    }
                    if chunked && !isHeadRequest { ChunkFraming.writeLastChunk(into: &out) }
                    finishResponse(exchange)
                }
            }
        case .file(_, let range, _), .openedFile(_, let range):
            exchange.facts = facts
            // Not from input: a Range header's bounds are clamped to the file's size (RangeHeader);
            // any other range is the application's.
            let count = range.map { Int($0.upperBound - $0.lowerBound + 1) } ?? 0
            serializer.writeHead(head, framing: .contentLength(count), keepAlive: facts.keepAlive,
                                 requestVersion: facts.version, into: &out)
            flushOut()
            guard let range, !isHeadRequest else {
                response.body.discardFile(on: connection.loop)
                return finishResponse(exchange)
            }
            exchange.stage = .sending(.file(nil))
            response.body.openForSending(on: connection.loop) { [self] result in
                switch result {
                case .failure(let error):
                    logger.info("static file failed to open", metadata: ["error": "\(error)"])
                    connection.close(error: HTTPServerError.connectionClosed)
                case .success(let file):
                    let sender = FileSender(connection: connection, file: file, range: range) { [self] ok in
                        if ok { finishResponse(exchange) } else { connection.close(error: HTTPServerError.connectionClosed) }
                    }
                    exchange.stage = .sending(.file(sender))
                    sender.start()
                }
            }
        }
    }

    /// The handler's response is queued in full: the connection goes on with the
    /// requests that waited, or closes.
    private func finishResponse(_ exchange: HandlerExchange) {
        guard case .handling(let current) = phase, current === exchange else { return }
        connection.idleTimeoutSuspended = false
        guard exchange.facts.keepAlive, !lastRequest, exchange.requestEnded else {
            enterClosing()
            flushOut()
            return
        }
        phase = .reading
        // The pipelined requests that waited for this response.
        var pending: [UInt8] = []
        if let work { swap(&pending, &work.leftover) }
        flushOut()
        guard connection.isOpen else { return }
        // Resume them (reading may also have been paused by the request body's
        // backpressure).
        connection.resumeReading()
        if !pending.isEmpty { pending.withUnsafeBytes { process($0) } }
    }

    // MARK: Graceful shutdown

    /// Idle connections close now; busy ones after their current response.
    func beginStopping() {
        lastRequest = true
        if case .reading = phase, work?.isReusable ?? true {
            connection.closeAfterWriting()
        }
    }
}

extension HTTPServerResponse.Body {
    var isStream: Bool {
        if case .stream = self { true } else { false }
    }
}
