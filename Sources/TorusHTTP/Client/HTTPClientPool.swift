import Synchronization
import Torus

/// The pool key: one pool of connections per scheme, host and port. `host` is the
/// address connected to (`localhost` as 127.0.0.1); `serverName` the name asked
/// for, which an https connection sends as SNI and verifies the certificate against.
struct HTTPClientPoolKey: Hashable, Sendable, CustomStringConvertible {
    var scheme: HTTPClientRequest.Scheme
    var host: String
    var port: UInt16
    var serverName: String

    init(scheme: HTTPClientRequest.Scheme = .http, host: String, port: UInt16, serverName: String? = nil) {
        self.scheme = scheme
        self.host = host == "localhost" ? "127.0.0.1" : host
        self.port = port
        // Only TLS tells names apart: over http, localhost and 127.0.0.1 share a pool.
        self.serverName = scheme == .https ? (serverName ?? host) : self.host
    }

    init(_ request: HTTPClientRequest) {
        self.init(scheme: request.scheme, host: request.host, port: request.port)
    }

    var description: String { "\(scheme)://\(serverName):\(port)" }
}

/// Keep-alive connections per host:port, bounded by `maxPerHost` (busy plus idle).
///
/// Thread-safe (one lock). A request *checks out* a connection: an idle one, or the
/// right to open a new one, or it waits (FIFO) until another request releases or
/// discards one. Every checkout ends in exactly one `release` (back to idle, or to
/// the first waiter) or `discard` (closed; a waiter may then open a new one).
final class HTTPClientPool: Sendable {
    enum Checkout {
        case reuse(HTTPClientConnection)
        case open
    }

    final class Waiter: Sendable {
        private let state = Mutex<(continuation: CheckedContinuation<Checkout, any Error>?, failed: (any Error)?)>((nil, nil))

        /// Stores the continuation; false when the waiter already failed.
        func wait(_ c: CheckedContinuation<Checkout, any Error>) -> (any Error)? {
            state.withLock { s in
                if let e = s.failed { return e }
                s.continuation = c
                return nil
            }
        }

        /// Resumes the waiting checkout once; false when there was none (or no longer).
        func resume(_ result: Result<Checkout, any Error>) -> Bool {
            let c: CheckedContinuation<Checkout, any Error>? = state.withLock { s in
                defer { s.continuation = nil }
                if case .failure(let e) = result, s.failed == nil { s.failed = e }
                return s.continuation
            }
            guard let c else { return false }
            c.resume(with: result)
            return true
        }
    }

    private struct PerHost {
        var idle: [HTTPClientConnection] = []
        var open = 0
        var waiters: [Waiter] = []
    }

    private struct State {
        var hosts: [HTTPClientPoolKey: PerHost] = [:]
        var isShutdown = false
    }

    let maxPerHost: Int
    private let state = Mutex(State())

    init(maxPerHost: Int) { self.maxPerHost = max(1, maxPerHost) }

    /// An idle connection, or permission to open one; waits while the host is at its limit.
    func checkout(_ key: HTTPClientPoolKey, waiter: Waiter) async throws -> Checkout {
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Checkout, any Error>) in
                let immediate: Result<Checkout, any Error>? = state.withLock { s in
                    if s.isShutdown { return .failure(HTTPClientError.shutdown) }
                    var host = s.hosts[key, default: PerHost()]
                    defer { s.hosts[key] = host }
                    while let conn = host.idle.popLast() {
                        if conn.isOpen { return .success(.reuse(conn)) }
                        host.open -= 1  // closed while idle (idle timeout, server close)
                    }
                    if host.open < maxPerHost {
                        host.open += 1
                        return .success(.open)
                    }
                    if let e = waiter.wait(c) { return .failure(e) }
                    host.waiters.append(waiter)
                    return nil
                }
                if let immediate { c.resume(with: immediate) }
            }
        } onCancel: {
            fail(waiter, key: key, with: CancellationError())
        }
    }

    /// Fails a waiting checkout (cancellation, request timeout).
    func fail(_ waiter: Waiter, key: HTTPClientPoolKey, with error: any Error) {
        state.withLock { s in
            s.hosts[key]?.waiters.removeAll { $0 === waiter }
        }
        _ = waiter.resume(.failure(error))
    }

    /// Returns a connection after a complete exchange: to a waiter, or to the idle list.
    func release(_ conn: HTTPClientConnection) {
        let key = conn.key
        let (handover, close): (Waiter?, Bool) = state.withLock { s in
            guard !s.isShutdown else {
                s.hosts[key]?.open -= 1
                return (nil, true)
            }
            if let w = s.hosts[key]?.waiters.first {
                s.hosts[key]?.waiters.removeFirst()
                return (w, false)
            }
            s.hosts[key]?.idle.append(conn)
            return (nil, false)
        }
        if close { conn.abort(.shutdown) }
        if let handover, !handover.resume(.success(.reuse(conn))) {
            // The waiter gave up in the meantime: try again.
            release(conn)
        }
    }

    /// A checked-out connection (or the right to open one) is gone: lets a waiter open one.
    func discard(_ key: HTTPClientPoolKey) {
        let handover: Waiter? = state.withLock { s in
            if let w = s.hosts[key]?.waiters.first, !s.isShutdown {
                s.hosts[key]?.waiters.removeFirst()
                return w
            }
            s.hosts[key]?.open -= 1
            return nil
        }
        if let handover, !handover.resume(.success(.open)) { discard(key) }
    }

    /// Stops the pool: waiters fail, idle connections are returned for closing.
    func shutdown() -> [HTTPClientConnection] {
        let (idle, waiters): ([HTTPClientConnection], [Waiter]) = state.withLock { s in
            s.isShutdown = true
            var idle: [HTTPClientConnection] = []
            var waiters: [Waiter] = []
            for (key, host) in s.hosts {
                idle += host.idle
                waiters += host.waiters
                s.hosts[key]?.open -= host.idle.count
                s.hosts[key]?.idle = []
                s.hosts[key]?.waiters = []
            }
            return (idle, waiters)
        }
        for w in waiters { _ = w.resume(.failure(HTTPClientError.shutdown)) }
        return idle
    }

    /// Idle connections and open connections (busy plus idle) for `key`.
    func counts(_ key: HTTPClientPoolKey) -> (idle: Int, open: Int) {
        state.withLock { s in
            let h = s.hosts[key]
            return (h?.idle.filter(\.isOpen).count ?? 0, h?.open ?? 0)
        }
    }
}
