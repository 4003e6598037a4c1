import HTTPTypes
import Torus

/// A request as an async handler sees it: the parsed head, the route's path
/// parameters, and the body as an async sequence.
///
/// Ownership: `head` shares the parser's head bytes copy-on-write (holding it is
/// safe; it never points into receive buffers). Body chunks are copies the handler
/// owns; the connection stops reading from the socket while more than
/// `HTTPServerConfiguration.bodyBufferLimit` bytes wait unread.
public struct HTTPServerRequest: Sendable {
    public let head: RequestHead
    /// Values of `{name}` segments (and `*` for a trailing wildcard) in the route.
    public let parameters: [String: String]
    public let body: HTTPRequestBody
    /// The peer's address.
    public let remoteAddress: SocketAddress?
    /// The loop the connection lives on (handlers run on it).
    public let loop: EventLoop

    public var method: HTTPMethodKind { head.method }
    public var path: String { head.path }
    public var query: String? { head.query }
    public func header(_ name: String) -> String? { head.header(named: name) }

    /// The swift-http-types view of the head (allocates).
    public func httpRequest() throws -> HTTPRequest { try head.makeHTTPRequest() }
}

/// The request body as chunks of bytes, ending when the request ends.
public struct HTTPRequestBody: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let state: RequestBodyState

    public struct AsyncIterator: AsyncIteratorProtocol {
        let state: RequestBodyState
        public mutating func next() async throws -> [UInt8]? { try await state.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(state: state) }

    /// Reads the whole body; throws when it exceeds `limit` bytes.
    public func collect(upTo limit: Int = 8 << 20) async throws -> [UInt8] {
        var out: [UInt8] = []
        for try await chunk in self {
            out += chunk
            if out.count > limit { throw HTTPServerError.bodyTooLarge }
        }
        return out
    }
}

/// Errors a handler may throw to choose its status.
public enum HTTPServerError: Error, Sendable {
    case bodyTooLarge
    case connectionClosed
    /// The request body was malformed (the server answers 400 and closes).
    case badRequest
    /// The request body stalled beyond `requestTimeout` (the server answers 408 and closes).
    case requestTimeout
}

/// Loop-confined buffer between the parser (producer) and a handler task (consumer).
final class RequestBodyState: @unchecked Sendable {
    /// Strong: the handler may read after the connection closed (it then gets the error).
    let connection: Connection
    let limit: Int
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var buffered = 0
    private var finished = false
    private var failure: (any Error)?
    private var waiter: CheckedContinuation<[UInt8]?, any Error>?
    private var paused = false

    init(connection: Connection, limit: Int) {
        self.connection = connection
        self.limit = limit
    }

    // Producer side (loop thread).
    func append(_ bytes: UnsafeRawBufferPointer) {
        if let w = waiter {
            waiter = nil
            w.resume(returning: Array(bytes))
            return
        }
        chunks.append(Array(bytes))
        buffered += bytes.count
        if buffered > limit && !paused {
            paused = true
            connection.pauseReading()
        }
    }

    func finish(error: (any Error)? = nil) {
        guard !finished else { return }
        finished = true
        failure = error
        if let w = waiter {
            waiter = nil
            if let error { w.resume(throwing: error) } else { w.resume(returning: nil) }
        }
    }

    // Consumer side (any task; state touched on the loop).
    func next() async throws -> [UInt8]? {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8]?, any Error>) in
            connection.loop.runOnLoop { [self] in
                if head < chunks.count {
                    let chunk = chunks[head]
                    chunks[head] = []
                    head += 1
                    if head == chunks.count {
                        chunks.removeAll(keepingCapacity: true)
                        head = 0
                    }
                    buffered -= chunk.count
                    if paused && buffered <= limit / 2 {
                        paused = false
                        connection.resumeReading()
                    }
                    c.resume(returning: chunk)
                } else if finished {
                    if let failure { c.resume(throwing: failure) } else { c.resume(returning: nil) }
                } else {
                    waiter = c
                }
            }
        }
    }
}
