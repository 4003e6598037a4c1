import HTTPTypes
import Synchronization
import Torus

/// A response from ``HTTPClient``: the head, and the body as an async sequence of
/// byte chunks that is read from the connection as it is iterated.
///
/// The body must be read to its end for the connection to go back to the pool. A
/// body dropped (or a task cancelled) before its end closes the connection instead:
/// nothing leaks and no half-read connection is ever reused.
public struct HTTPClientResponse: Sendable {
    public let head: HTTPResponseHead
    public var status: HTTPResponse.Status { head.status }
    public var headerFields: HTTPFields { head.headerFields }
    public let body: Body

    /// The response body. Can be iterated once (or collected once).
    public struct Body: AsyncSequence, Sendable {
        public typealias Element = [UInt8]
        let reader: HTTPClientBodyReader

        public struct AsyncIterator: AsyncIteratorProtocol {
            let reader: HTTPClientBodyReader
            public mutating func next() async throws -> [UInt8]? { try await reader.next() }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(reader: reader) }

        /// Reads the whole body; throws ``HTTPClientError/bodyTooLarge(limit:)`` (and
        /// closes the connection) beyond `limit` bytes.
        public func collect(upTo limit: Int) async throws -> [UInt8] {
            var out: [UInt8] = []
            while let chunk = try await reader.next() {
                out += chunk
                if out.count > limit {
                    reader.abandon()
                    throw HTTPClientError.bodyTooLarge(limit: limit)
                }
            }
            return out
        }

        /// Trailer fields of a chunked body (after the body has been read).
        public var trailers: HTTPFields { reader.trailers }
    }
}

/// Reads one response body from its connection, then returns the connection to the
/// pool (or closes it). Used by one consumer at a time; `abandon` and `deinit` may run
/// from any thread but never concurrently with `next` (the consumer holds the reader).
final class HTTPClientBodyReader: @unchecked Sendable {
    private let connection: HTTPClientConnection?
    private let deadline: RequestDeadline?
    private let finishExchange: @Sendable (HTTPClientConnection?, _ reusable: Bool) -> Void
    private let done = Atomic<Bool>(false)
    private(set) var trailers = HTTPFields()
    /// A body that arrived complete with the head (its connection is already released).
    private var prefetched: [[UInt8]]

    init(connection: HTTPClientConnection?, deadline: RequestDeadline? = nil, prefetched: [[UInt8]] = [],
         trailers: HTTPFields = HTTPFields(),
         finishExchange: @escaping @Sendable (HTTPClientConnection?, Bool) -> Void) {
        self.connection = connection
        self.deadline = deadline
        self.prefetched = prefetched.reversed()
        self.trailers = trailers
        self.finishExchange = finishExchange
        if connection == nil { done.store(true, ordering: .releasing) }
    }

    func next() async throws -> [UInt8]? {
        if let chunk = prefetched.popLast() { return chunk }
        guard let connection else { return nil }
        if done.load(ordering: .acquiring) {
            return nil
        }
        do {
            // Checked here as well: a read entered by an already-cancelled task may not
            // see the cancellation (see the report on AsyncConnection.read).
            try Task.checkCancellation()
            if let chunk = try await connection.nextBodyChunk() { return chunk }
            trailers = connection.trailers
            complete(reusable: connection.isReusable)
            return nil
        } catch {
            complete(reusable: false)
            if deadline?.hasFired == true { throw HTTPClientError.requestTimeout }
            if error is CancellationError { throw error }
            throw HTTPClientError.from(error)
        }
    }

    /// Gives up on the rest of the body: the connection is closed, not reused.
    func abandon() { complete(reusable: false) }

    private func complete(reusable: Bool) {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finishExchange(connection, reusable)
    }

    deinit {
        if !done.load(ordering: .acquiring) { finishExchange(connection, false) }
    }
}
