import Glibc
import HTTPTypes
import Synchronization
import Torus

/// What an HTTP handler answers: a status, fields and a body.
///
/// Ownership: a plain value. Byte bodies are copied into the connection's write
/// queue when sent; a streaming body is produced by its closure on the connection's
/// loop; a file body is read through the ring and sent chunk by chunk.
public struct HTTPServerResponse: Sendable {
    public var status: HTTPResponse.Status
    public var headerFields: HTTPFields
    public var body: Body
    /// The connection closes after this response (it says `Connection: close`): for
    /// an answer after which the client should not keep the connection, such as a
    /// refused authentication.
    public var closesConnection = false

    public enum Body: Sendable {
        case empty
        case bytes([UInt8])
        /// Streamed with chunked transfer coding (or `Content-Length` when the fields
        /// carry one); the closure writes through the writer and returns at the end.
        case stream(@Sendable (HTTPResponseBodyWriter) async throws -> Void)
        /// A file served through the ring, with the given byte range. Opened by the
        /// path as given when the response is sent (not confined to any folder: a
        /// folder is served with ``HTTPRouter/files(_:root:followSymlinks:)``).
        case file(path: String, range: ClosedRange<UInt64>?, size: UInt64)
        /// A file already open (the static-files route's, opened confined to its
        /// root), with the byte range to send; the response owns the descriptor.
        case openedFile(OpenedFile, range: ClosedRange<UInt64>?)
    }

    public init(status: HTTPResponse.Status = .ok, headerFields: HTTPFields = [:], body: Body = .empty) {
        self.status = status
        self.headerFields = headerFields
        self.body = body
    }

    /// A text response (`text/plain; charset=utf-8` unless given).
    public static func text(_ text: String, status: HTTPResponse.Status = .ok,
                            contentType: String = "text/plain; charset=utf-8") -> HTTPServerResponse {
        HTTPServerResponse(status: status, headerFields: [.contentType: contentType], body: .bytes(Array(text.utf8)))
    }

    /// A JSON response from already-encoded JSON text.
    public static func json(_ json: String, status: HTTPResponse.Status = .ok) -> HTTPServerResponse {
        text(json, status: status, contentType: "application/json")
    }

    /// A bodiless response with the status's reason as a short text body.
    public static func status(_ status: HTTPResponse.Status) -> HTTPServerResponse {
        text(status.reasonPhrase + "\n", status: status)
    }
}

/// An open file travelling with a response (``HTTPServerResponse/Body/openedFile(_:range:)``).
///
/// Ownership: the descriptor is the response's until the connection takes it to send
/// (it then closes it through the ring when done, or at once through the ring for a
/// HEAD or empty range). A response never sent (its connection closed while the
/// handler ran) closes it with a plain `close(2)` when dropped.
public final class OpenedFile: Sendable {
    private let file: Mutex<File?>

    public init(_ file: File) { self.file = Mutex(file) }

    /// Takes the file; nil when it was taken already.
    func take() -> File? { file.withLock { $0.take() } }

    deinit {
        if let file = file.withLock({ $0.take() }) { Glibc.close(file.fd) }
    }
}

extension HTTPServerResponse.Body {
    /// The file to send: opened (a path body) or taken (an opened body) through the
    /// ring. Loop thread of `loop`.
    func openForSending(on loop: EventLoop, _ done: @escaping (Result<File, IOError>) -> Void) {
        switch self {
        case .file(let path, _, _):
            loop.openFile(path, done)
        case .openedFile(let opened, _):
            if let file = opened.take() { done(.success(file)) } else { done(.failure(IOError(errno: EBADF, "file body sent twice"))) }
        case .empty, .bytes, .stream:
            done(.failure(IOError(errno: EINVAL, "not a file body")))
        }
    }

    /// Closes, through the ring, an opened file whose bytes will not be sent (HEAD,
    /// empty range). Loop thread of `loop`.
    func discardFile(on loop: EventLoop) {
        if case .openedFile(let opened, _) = self, let file = opened.take() { loop.close(file) }
    }
}

/// Writes a streamed response body. Each `write` queues bytes on the connection and
/// suspends while its write queue is above the high water mark, so a slow client
/// slows the producer instead of growing memory.
public final class HTTPResponseBodyWriter: @unchecked Sendable {
    let connection: Connection
    let chunked: Bool
    let headOnly: Bool
    private var waiter: CheckedContinuation<Void, any Error>?
    /// Bytes written so far (before chunk framing).
    public private(set) var bytesWritten = 0

    init(connection: Connection, chunked: Bool, headOnly: Bool) {
        self.connection = connection
        self.chunked = chunked
        self.headOnly = headOnly
    }

    /// Sends `bytes` (as one chunk when chunked). Throws when the connection closed.
    public func write(_ bytes: [UInt8]) async throws {
        guard !bytes.isEmpty else { return }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            connection.loop.runOnLoop { [self] in
                guard connection.isOpen else {
                    c.resume(throwing: IOError(errno: 32, "write: connection closed"))
                    return
                }
                bytesWritten += bytes.count
                if !headOnly {
                    if chunked {
                        var header: [UInt8] = []
                        ChunkFraming.writeHeader(size: bytes.count, into: &header)
                        connection.send(header)
                        connection.send(bytes)
                        connection.send("\r\n")
                    } else {
                        connection.send(bytes)
                    }
                }
                if connection.isWritable { c.resume() } else { waiter = c }
            }
        }
    }

    public func write(_ string: String) async throws { try await write(Array(string.utf8)) }

    /// Called on the loop when the connection's queue drained or it closed.
    func wake(error: (any Error)?) {
        guard let w = waiter else { return }
        waiter = nil
        if let error { w.resume(throwing: error) } else { w.resume() }
    }
}
