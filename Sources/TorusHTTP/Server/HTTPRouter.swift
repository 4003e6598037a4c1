import HTTPTypes
import Torus

/// An async request handler. Runs in a task that prefers the connection's loop as
/// its executor.
public typealias HTTPHandler = @Sendable (HTTPServerRequest) async throws -> HTTPServerResponse

/// What an upgrade hook decides about a request asking for `Upgrade`.
public enum HTTPUpgradeDecision: Sendable {
    /// Not upgrading: answer with this status and reason, then close.
    case reject(HTTPResponse.Status, headerFields: HTTPFields, reason: String)
    /// Switch protocols: send `101` with these fields, then hand the connection (and
    /// any bytes that followed the request head) to the handler `makeHandler` makes.
    case accept(headerFields: HTTPFields, makeHandler: @Sendable (Connection) -> any UpgradedConnectionHandler)
}

/// The protocol a connection speaks after an upgrade (WebSocket).
public protocol UpgradedConnectionHandler: ConnectionHandler {
    /// Called once, right after the 101 is queued, with the bytes that arrived after
    /// the request head (borrowed for the call).
    func upgraded(_ connection: Connection, leftover: UnsafeRawBufferPointer)
}

/// Method + path routing with `{name}` parameters and a trailing `*` wildcard.
///
/// A value built before the server starts and then shared (immutable) by every
/// loop. Routes are tried in the order they were added; literal paths are matched
/// without allocating.
public struct HTTPRouter: Sendable {
    enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
        case wildcard
    }

    enum Action: Sendable {
        case fixed(PrecomputedResponse)
        case handler(HTTPHandler)
        case upgrade(@Sendable (RequestHead, SocketAddress?) -> HTTPUpgradeDecision)
    }

    struct Route: Sendable {
        let method: HTTPMethodKind?
        let pattern: String
        let segments: [Segment]
        let isLiteral: Bool
        let action: Action
    }

    private(set) var routes: [Route] = []
    /// The literal routes' paths, for matching without touching `routes`.
    private var literals = LiteralPaths()
    /// Some route has a parameter or a wildcard.
    private var hasPatterns = false

    public init() {}

    /// Adds a route for `method` (nil: any method) and `path`.
    public mutating func on(_ method: HTTPMethodKind?, _ path: String, _ handler: @escaping HTTPHandler) {
        add(method, path, .handler(handler))
    }

    public mutating func get(_ path: String, _ handler: @escaping HTTPHandler) { on(.get, path, handler) }
    public mutating func post(_ path: String, _ handler: @escaping HTTPHandler) { on(.post, path, handler) }
    public mutating func put(_ path: String, _ handler: @escaping HTTPHandler) { on(.put, path, handler) }
    public mutating func delete(_ path: String, _ handler: @escaping HTTPHandler) { on(.delete, path, handler) }

    /// A fixed response served from the loop without a task and without allocating
    /// (also answers HEAD for the same path).
    public mutating func get(_ path: String, fixed: PrecomputedResponse) {
        add(.get, path, .fixed(fixed))
    }

    /// An upgrade hook (WebSocket): runs on the loop for a GET with `Upgrade` at `path`,
    /// with the request head and the peer's address (what per-source limits count by).
    public mutating func upgrade(_ path: String,
                                 _ decide: @escaping @Sendable (RequestHead, SocketAddress?) -> HTTPUpgradeDecision) {
        add(.get, path, .upgrade(decide))
    }

    /// Serves files under `root` at `prefix/*` through the ring (GET and HEAD).
    ///
    /// Nothing outside `root` is ever served: each file is opened with `openat2` and
    /// `RESOLVE_BENEATH` relative to the root's descriptor (opened here, once).
    /// Symbolic links are refused (404) unless `followSymlinks`; even then a link
    /// is followed only when its target stays inside `root` (a relative target).
    /// Throws ``StaticFilesError`` when `root` is not a directory that can be opened,
    /// or when the kernel's io_uring lacks `openat2` (files are then not served at all).
    public mutating func files(_ prefix: String, root: String, followSymlinks: Bool = false) throws(StaticFilesError) {
        let files = try StaticFiles(root: root, followSymlinks: followSymlinks)
        let pattern = prefix.hasSuffix("/") ? prefix + "*" : prefix + "/*"
        on(.get, pattern) { request in try await files.respond(to: request) }
        on(.head, pattern) { request in try await files.respond(to: request) }
    }

    private mutating func add(_ method: HTTPMethodKind?, _ path: String, _ action: Action) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map { part -> Segment in
            if part == "*" { return .wildcard }
            if part.hasPrefix("{") && part.hasSuffix("}") { return .parameter(String(part.dropFirst().dropLast())) }
            return .literal(String(part))
        }
        let literal = parts.allSatisfy { if case .literal = $0 { true } else { false } }
        if literal {
            literals.add(Array(path.utf8), method: method, route: routes.count)
        } else {
            hasPatterns = true
        }
        routes.append(Route(method: method, pattern: path, segments: parts, isLiteral: literal, action: action))
    }

    /// The outcome of routing one request head.
    enum Match {
        /// The route's action and its bound path parameters (nil for a literal route:
        /// none, and no dictionary made on the per-request path).
        case found(Action, [String: String]?)
        case methodNotAllowed
        case notFound
    }

    func match(_ head: RequestHead) -> Match {
        var pathMatched = false
        // Literal routes first: byte comparisons, no allocation, no reference counting.
        switch head.withPathBytes({ literals.match($0, method: head.method) }) {
        case .route(let index): return .found(routes[index].action, nil)
        case .otherMethod: pathMatched = true
        case .none: break
        }
        if hasPatterns {
            let parts = head.path.split(separator: "/", omittingEmptySubsequences: true)
            for route in routes where !route.isLiteral {
                guard let params = Self.bind(route.segments, parts) else { continue }
                if Self.method(route.method, matches: head.method) { return .found(route.action, params) }
                pathMatched = true
            }
        }
        return pathMatched ? .methodNotAllowed : .notFound
    }

    /// A route for `wanted` (nil: any) answers `actual`; a GET route answers HEAD too.
    static func method(_ wanted: HTTPMethodKind?, matches actual: HTTPMethodKind) -> Bool {
        guard let wanted else { return true }
        return wanted == actual || (wanted == .get && actual == .head)
    }

    static func bind(_ segments: [Segment], _ parts: [Substring]) -> [String: String]? {
        var params: [String: String] = [:]
        var i = 0
        for segment in segments {
            switch segment {
            case .wildcard:
                params["*"] = parts[i...].joined(separator: "/")
                return params
            case .literal(let s):
                guard i < parts.count, parts[i] == s else { return nil }
            case .parameter(let name):
                guard i < parts.count else { return nil }
                params[name] = String(parts[i])
            }
            i += 1
        }
        return i == parts.count ? params : nil
    }
}
