import HTTPTypes
import Torus
import TorusTLS

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
    /// What the connection's TLS handshake negotiated (version, cipher, ALPN, SNI,
    /// the client certificate's verified subject); nil on plaintext HTTP.
    public let tlsSession: TLSSessionInfo?

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

/// The request body between the parser (producer, on the loop) and the handler task
/// (consumer): the core's `Inbox`, pausing the socket above `limit` unread bytes and
/// resuming at half.
typealias RequestBodyState = Inbox<[UInt8]>

extension Inbox<[UInt8]> {
    /// An inbox for one request body on `connection`. It holds the connection
    /// strongly: the handler may read after the connection closed (it then gets the
    /// error).
    static func requestBody(on connection: Connection, limit: Int) -> Inbox<[UInt8]> {
        let inbox = Inbox(loop: connection.loop, highWater: limit)
        inbox.onPressure = { [connection] pressure in
            switch pressure {
            case .pause: connection.pauseReading()
            case .resume: connection.resumeReading()
            }
        }
        return inbox
    }

    /// Producer side (loop thread): a copy of `bytes`.
    func append(_ bytes: UnsafeRawBufferPointer) {
        push(Array(bytes), weight: bytes.count)
    }
}
