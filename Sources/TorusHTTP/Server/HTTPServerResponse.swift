import HTTPTypes
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

    public enum Body: Sendable {
        case empty
        case bytes([UInt8])
        /// Streamed with chunked transfer coding (or `Content-Length` when the fields
        /// carry one); the closure writes through the writer and returns at the end.
        case stream(@Sendable (HTTPResponseBodyWriter) async throws -> Void)
        /// A file served through the ring, with the given byte range.
        case file(path: String, range: ClosedRange<UInt64>?, size: UInt64)
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
                        HTTPResponseSerializer.writeChunkHeader(size: bytes.count, into: &header)
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
