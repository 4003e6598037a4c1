import Synchronization
import Torus

/// Limits on routers that have not proven who they are, per source address.
public struct RouterAuthConfiguration: Sendable {
    /// Accept version 1's HELLO (no proof): tests of the old protocol only.
    public var insecureRouters = false
    /// A link that has not authenticated within this long is refused.
    public var authTimeout: Duration = .seconds(5)
    /// Failed proofs (or, on the HTTP face, invalid API tokens) a source may make in a
    /// burst (the token bucket's size); while its bucket is empty, its new links are
    /// refused at once (and its API requests get 429).
    public var failureBurst = 10
    /// Failed authentications per second a source earns back.
    public var failureRefillPerSecond = 1.0
    /// Links of one source that may wait for authentication at once.
    public var maxUnauthenticatedPerSource = 64
    /// The token bucket's clock (monotonic nanoseconds); tests set a manual one.
    var clock: @Sendable () -> UInt64 = { MonotonicClock.now() }

    public init() {}
}

/// Why a link was not let in (counted in /metrics as `torus_hub_router_auth_total`).
public enum RouterAuthOutcome: Int, Sendable, CaseIterable, CustomStringConvertible {
    case accepted, badProof, unknownRouter, rateLimited, tooManyUnauthenticated, timeout, insecureRefused

    public var description: String {
        switch self {
        case .accepted: "accepted"
        case .badProof: "bad_proof"
        case .unknownRouter: "unknown_router"
        case .rateLimited: "rate_limited"
        case .tooManyUnauthenticated: "too_many_unauthenticated"
        case .timeout: "timeout"
        case .insecureRefused: "insecure_refused"
        }
    }
}

/// The per-source state of `RouterAuthConfiguration`'s limits: a token bucket of
/// failed authentications and the count of links waiting for authentication. The
/// hub keeps one for router links (failed proofs) and one for its HTTP face (invalid
/// API tokens: while a source's bucket is empty its requests get 429). Any thread (a
/// lock held for a dictionary operation only).
final class AuthLimits: Sendable {
    private struct Source {
        var tokens: Double
        var updated: UInt64
        var unauthenticated = 0
    }

    let configuration: RouterAuthConfiguration
    private let sources = Mutex<[String: Source]>([:])

    init(_ configuration: RouterAuthConfiguration) {
        self.configuration = configuration
    }

    /// Sources tracked at most; beyond it those with a full bucket and nothing
    /// waiting are forgotten (they hold no information).
    private static let pruneAbove = 4096

    /// Admits a new link from `source` (it then counts as unauthenticated until
    /// `settled`), or says why not.
    func admit(_ source: String, now: UInt64? = nil) -> RouterAuthOutcome {
        let now = now ?? configuration.clock()
        return sources.withLock { table in
            var s = refilled(table[source], now: now)
            defer { table[source] = s }
            guard s.tokens >= 1 else { return .rateLimited }
            guard s.unauthenticated < configuration.maxUnauthenticatedPerSource else { return .tooManyUnauthenticated }
            s.unauthenticated += 1
            if table.count > Self.pruneAbove { prune(&table, now: now) }
            return .accepted
        }
    }

    /// The admitted link authenticated or closed: it no longer waits.
    func settled(_ source: String) {
        sources.withLock { table in
            if let s = table[source], s.unauthenticated > 0 { table[source]?.unauthenticated = s.unauthenticated - 1 }
        }
    }

    /// True while `source`'s bucket is empty (its failures are being refused).
    func exhausted(_ source: String, now: UInt64? = nil) -> Bool {
        let now = now ?? configuration.clock()
        return sources.withLock { table in
            guard let s = table[source] else { return false }
            return refilled(s, now: now).tokens < 1
        }
    }

    /// A failed authentication from `source` takes a token from its bucket.
    func failed(_ source: String, now: UInt64? = nil) {
        let now = now ?? configuration.clock()
        sources.withLock { table in
            var s = refilled(table[source], now: now)
            s.tokens = max(0, s.tokens - 1)
            table[source] = s
        }
    }

    private func refilled(_ source: Source?, now: UInt64) -> Source {
        let burst = Double(configuration.failureBurst)
        guard var s = source else { return Source(tokens: burst, updated: now) }
        let elapsed = Double(now &- s.updated) / 1e9
        s.tokens = min(burst, s.tokens + elapsed * configuration.failureRefillPerSecond)
        s.updated = now
        return s
    }

    private func prune(_ table: inout [String: Source], now: UInt64) {
        table = table.filter { _, s in
            s.unauthenticated > 0 || refilled(s, now: now).tokens < Double(configuration.failureBurst)
        }
    }
}
