import HTTPTypes
import Synchronization
import Torus

/// One HTTP/1.1 connection of the client: an `AsyncConnection` plus a response parser.
///
/// Ownership and threading: owned by exactly one request at a time (the pool hands it
/// over; the handover is ordered by the pool's lock), which reads the response from
/// its task. A large or streamed request body is sent by an upload task of the
/// exchange's own (``startUpload(_:)``) beside that reading: the two share only the
/// `AsyncConnection` (one reader, one writer) and the loop's idle-timeout switch. The
/// only other caller is ``abort(_:)``, which is safe from any thread (it closes the
/// socket on the loop, so a pending read or write throws, and cancels the upload).
final class HTTPClientConnection: @unchecked Sendable {
    let io: AsyncConnection
    let key: HTTPClientPoolKey
    var loop: EventLoop { io.loop }
    private var parser: HTTPResponseParser
    /// Body bytes parsed and not yet taken, in chunks of up to 64 KiB.
    private var queued = RingBuffer<[UInt8]>(capacity: 4)
    private var head: HTTPResponseHead?
    private(set) var trailers = HTTPFields()
    private(set) var ended = false
    /// Bytes that followed the end of the response (a server sending what nobody asked
    /// for): the connection is not reused.
    private var unsolicited = false
    /// The exchange went wrong in a way that leaves the connection unusable.
    private var poisoned = false
    func poison() { poisoned = true }
    /// Bytes of response received for the current request (decides whether a failed
    /// request on a reused connection may be retried).
    private(set) var receivedBytes = 0
    private(set) var requestCount = 0
    /// The request body's upload when it runs beside the reading of the response.
    /// Behind a lock: the upload task records its end, `abort` (any thread) cancels it.
    private let upload = Mutex(Upload.none)

    enum Upload {
        /// The request went out before its response was read (or there is none yet).
        case none
        case running(Task<Void, Never>)
        /// Whether the whole request was queued.
        case finished(Bool)
    }

    init(io: AsyncConnection, key: HTTPClientPoolKey, limits: HTTPLimits) {
        self.io = io
        self.key = key
        parser = HTTPResponseParser(limits: limits)
    }

    var isOpen: Bool { io.connection.isOpen }

    /// Whether the connection can carry another request.
    var isReusable: Bool {
        ended && !unsolicited && !poisoned && !parser.isClosed && parser.isIdle && (head?.keepAlive ?? false)
    }

    /// Starts a new request/response exchange.
    func begin(isHEAD: Bool) {
        parser.expectResponse(toHEAD: isHEAD)
        queued.removeAll()
        head = nil
        trailers = HTTPFields()
        ended = false
        receivedBytes = 0
        requestCount += 1
        upload.withLock { $0 = .none }
    }

    /// Whether `request` is sent by an upload beside the reading of its response
    /// (``startUpload(_:)``) rather than before it: a streamed body, or bytes that are
    /// not sent in one write. A server may answer while such a body arrives (an echo, an
    /// early 413); were the client to read nothing until the body was sent, both sides
    /// could stall with full socket buffers.
    static func sendsInFullDuplex(_ request: HTTPClientRequest) -> Bool {
        switch request.body {
        case .stream?: true
        case .bytes(let bytes)?: bytes.count > oneWriteBodyLimit
        case nil: false
        }
    }

    /// The largest `.bytes` body sent in one write with the head.
    static let oneWriteBodyLimit = 64 * 1024

    /// Sends `request` from a task of its own while the caller reads the response. A
    /// failed body (its producer threw, or wrote more or less than declared) closes the
    /// connection with that error, so the response's reader gets it; a failed write
    /// means the connection closed already, and the reader sees what the server sent
    /// before it did (an early answer) and then the close.
    func startUpload(_ request: HTTPClientRequest) {
        upload.withLock { state in
            state = .running(Task { [self] in
                var sent = true
                do {
                    try await send(request)
                } catch {
                    sent = false
                    abort(HTTPClientError.from(error))
                }
                upload.withLock { $0 = .finished(sent) }
            })
        }
    }

    /// Calls `body` once the request is sent whole (`true`) or its upload failed
    /// (`false`): at once when there was no upload or it is over (the usual case when
    /// the response ends), else from a task when it ends. From then on the idle timeout
    /// runs again, so an upload to a server that answered and stopped reading cannot
    /// hold the connection past it.
    func whenUploaded(_ body: @escaping @Sendable (Bool) -> Void) {
        switch upload.withLock({ $0 }) {
        case .none:
            body(true)
        case .finished(let sent):
            body(sent)
        case .running(let task):
            setIdleSuspended(false)
            Task {
                await task.value
                body(upload.withLock { if case .finished(false) = $0 { false } else { true } })
            }
        }
    }

    /// Sends the head and body of `request`. Idle timeout is suspended meanwhile.
    func send(_ request: HTTPClientRequest) async throws {
        setIdleSuspended(true)
        defer { setIdleSuspended(false) }
        var head = request.headBytes()
        switch request.body {
        case .bytes(let bytes)?:
            if bytes.count <= Self.oneWriteBodyLimit {
                head += bytes
                try await io.write(head)
            } else {
                try await io.write(head)
                try await io.write(bytes)
            }
        case .stream(let length, let produce)?:
            try await io.write(head)
            let writer = HTTPClientRequestBodyWriter(io: io, length: length)
            do {
                try await produce(writer)
            } catch let e as HTTPClientError {
                throw e
            } catch {
                throw HTTPClientError.requestBodyFailed("\(error)")
            }
            try await writer.finish()
        case nil:
            try await io.write(head)
        }
    }

    private func setIdleSuspended(_ on: Bool) {
        let c = io.connection
        c.loop.runOnLoop { c.idleTimeoutSuspended = on }
    }

    /// Reads until the final response head has arrived (skipping 1xx).
    func readHead() async throws -> HTTPResponseHead {
        while true {
            if let head { return head }
            try await readMore()
        }
    }

    /// The next piece of the body, or nil at its end.
    func nextBodyChunk() async throws -> [UInt8]? {
        while true {
            if let chunk = queued.popFirst() { return chunk }
            if ended { return nil }
            try await readMore()
        }
    }

    private func readMore() async throws {
        guard let bytes = try await io.read() else {
            try parser.finish { event in record(event) }
            if !ended && head != nil { throw HTTPClientError.connectionClosed }
            if head == nil { throw HTTPClientError.connectionClosed }
            return
        }
        receivedBytes += bytes.count
        let consumed = try bytes.withUnsafeBytes { try parser.parse($0) { event in record(event) } }
        if consumed < bytes.count { unsolicited = true }
    }

    private func record(_ event: HTTPResponseParser.Event) -> HTTPResponseParser.Control {
        switch event {
        case .informational:
            return .proceed
        case .head(let h):
            head = h
            return .proceed
        case .body(let slice):
            // Fewer, larger chunks: fill the last one up to 64 KiB before starting another.
            if !queued.isEmpty, queued[queued.count - 1].count < 64 * 1024 {
                queued[queued.count - 1].append(contentsOf: slice)
            } else {
                queued.append(Array(slice))
            }
            return .proceed
        case .end(let t):
            trailers = t
            ended = true
            return .pause
        }
    }

    /// Closes now, dropping anything queued; pending reads and writes throw `error`.
    func abort(_ error: HTTPClientError = .connectionClosed) {
        upload.withLock { if case .running(let task) = $0 { task.cancel() } }
        let c = io.connection
        c.loop.runOnLoop { c.close(error: error) }
    }

    func close() async {
        await io.close(flush: false)
    }
}

extension HTTPClientConnection {
    /// When the whole response is already here: its body chunks (the exchange is over).
    func takeCompleteBody() -> [[UInt8]]? {
        guard ended else { return nil }
        var rest: [[UInt8]] = []
        rest.reserveCapacity(queued.count)
        while let chunk = queued.popFirst() { rest.append(chunk) }
        return rest
    }
}
