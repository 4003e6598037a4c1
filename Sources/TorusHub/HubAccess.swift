import HTTPTypes
import Synchronization
import Torus
import TorusHTTP
import TorusWebSocket

/// What an API token may do. `admin` implies the other two (on the token's routers)
/// and alone opens `/metrics` and `/debug/ledger`.
public enum HubRight: String, Sendable, CaseIterable {
    /// Device state (`/devices`) and events (`/events`, `/app`, `/web`).
    case read
    /// `POST /devices/{id}/commands`.
    case command
    /// The operator's views: `/metrics`, `/debug/ledger`; implies read and command.
    case admin
}

extension HubCredentials.TokenGrant {
    /// True when the grant carries `right` (admin carries every right).
    public func allows(_ right: HubRight) -> Bool {
        rights.contains(right.rawValue) || rights.contains(HubRight.admin.rawValue)
    }

    /// True when the grant carries `right` on `router`.
    public func allows(_ right: HubRight, router: String) -> Bool {
        allows(right) && (routers?.contains(router) ?? true)
    }

    /// True when the grant may read every router (what `/web` requires).
    public var readsEveryRouter: Bool { routers == nil && allows(.read) }

    /// True when the grant may read every router of `requested` (nil: every router).
    func mayRead(_ requested: Set<String>?) -> Bool {
        guard allows(.read) else { return false }
        guard let scope = routers else { return true }
        guard let requested else { return false }
        return requested.isSubset(of: scope)
    }

    /// What a stream that asked for `requested` (nil: everything) receives under this
    /// grant: the request narrowed to the grant's routers (nil: every router).
    func readable(within requested: Set<String>?) -> Set<String>? {
        guard let scope = routers else { return requested }
        return requested.map { $0.intersection(scope) } ?? Set(scope)
    }
}

/// How an API request's authentication ended (counted in /metrics as
/// `torus_hub_api_auth_total`).
public enum HubAPIAuthOutcome: Int, Sendable, CaseIterable, CustomStringConvertible {
    case accepted, missing, invalid, forbidden, rateLimited

    public var description: String {
        switch self {
        case .accepted: "accepted"
        case .missing: "missing"
        case .invalid: "invalid"
        case .forbidden: "forbidden"
        case .rateLimited: "rate_limited"
        }
    }
}

/// A request that presented a known token: its grant, and the token's hash (how a
/// reload finds the grant again).
struct GrantedToken: Sendable {
    let grant: HubCredentials.TokenGrant
    let hash: String
}

/// Why a request was refused: the status (401, 403, 429), the `WWW-Authenticate`
/// challenge (RFC 6750) and a message that says nothing about which routers exist.
struct AccessRefusal: Error {
    let status: HTTPResponse.Status
    let headerFields: HTTPFields
    let message: String

    var response: HTTPServerResponse {
        var fields = headerFields
        fields[.contentType] = "application/json"
        let body = #"{"error":"# + String(decoding: HubEventJSON.quoted(Array(message.utf8)), as: UTF8.self) + "}\n"
        var response = HTTPServerResponse(status: status, headerFields: fields, body: .bytes(Array(body.utf8)))
        // No token, a wrong one, or too many wrong ones: the connection is not kept
        // (a client with a valid token but without the right, 403, keeps it).
        response.closesConnection = status == .unauthorized || status == .tooManyRequests
        return response
    }

    func webSocketAdmission<Context>() -> WebSocketAdmission<Context> {
        .refuse(status, headerFields: headerFields, reason: message)
    }
}

/// The hub's API access control: bearer tokens checked against the credential store,
/// their grants applied per request, failed tokens limited per source, and the open
/// streams re-checked when the credentials are reloaded.
///
/// Where a token goes: `Authorization: Bearer TOKEN` on every request. Browsers can
/// set no header on a WebSocket (`new WebSocket`) or an `EventSource`, so the streams
/// (`/events`, `/app`, `/web`) also take `?access_token=TOKEN` (RFC 6750 §2.3), which
/// serves both alike; the hub never logs request targets, but a proxy in front of it
/// may, so clients that can set the header should. (`Sec-WebSocket-Protocol` could
/// carry a token for WebSockets only, and would need echoing a protocol back; one
/// mechanism for both stream kinds is simpler to operate.)
///
/// Threading: any thread (the store and the limits lock for a moment); `streams` is
/// per loop.
final class HubAccess: Sendable {
    static let realm = #"Bearer realm="torus-hub""#

    let credentials: CredentialStore
    let limits: AuthLimits
    let counters: HubCounters
    let streams = GrantedStreams()

    init(credentials: CredentialStore, limits: AuthLimits, counters: HubCounters) {
        self.credentials = credentials
        self.limits = limits
        self.counters = counters
    }

    /// The token a request presents: the `Authorization: Bearer` header, or (where
    /// `queryToken`) the `access_token` query parameter.
    static func presentedToken(authorization: String?, query: String?, queryToken: Bool) -> Substring? {
        if let authorization { return bearerToken(authorization) }
        guard queryToken, let value = HubAPI.queryValue(query, "access_token"), !value.isEmpty else { return nil }
        return Substring(value)
    }

    /// The token of `Bearer TOKEN` (the scheme in any case, spaces around the token
    /// ignored), read byte by byte: no allocation, no grapheme breaking.
    static func bearerToken(_ header: String) -> Substring? {
        let bytes = header.utf8
        var i = bytes.startIndex
        for expected in "bearer".utf8 {
            guard i != bytes.endIndex, bytes[i] | 0x20 == expected else { return nil }
            bytes.formIndex(after: &i)
        }
        guard i != bytes.endIndex, bytes[i] == 0x20 else { return nil }
        while i != bytes.endIndex, bytes[i] == 0x20 { bytes.formIndex(after: &i) }
        var end = bytes.endIndex
        while end != i, bytes[bytes.index(before: end)] == 0x20 { bytes.formIndex(before: &end) }
        guard i != end else { return nil }
        return Substring(bytes[i..<end])
    }

    /// Authenticates a request and checks that its grant carries `right` (on
    /// `router`, when given; on every router of `routers` when given).
    func check(authorization: String?, query: String?, queryToken: Bool, source: String,
               _ right: HubRight, router: String? = nil) -> Result<GrantedToken, AccessRefusal> {
        guard !limits.exhausted(source) else {
            counters.apiAuthenticated(.rateLimited)
            return .failure(AccessRefusal(status: .tooManyRequests, headerFields: [.retryAfter: "1"],
                                          message: "too many failed authentications"))
        }
        guard let token = Self.presentedToken(authorization: authorization, query: query, queryToken: queryToken) else {
            counters.apiAuthenticated(.missing)
            return .failure(AccessRefusal(status: .unauthorized, headerFields: [.wwwAuthenticate: Self.realm],
                                          message: "a bearer token is required"))
        }
        guard let (hash, grant) = credentials.credentials.entry(forHash: HubCredentials.tokenHash(utf8: token.utf8)) else {
            limits.failed(source)
            counters.apiAuthenticated(.invalid)
            return .failure(AccessRefusal(status: .unauthorized,
                                          headerFields: [.wwwAuthenticate: Self.realm + #", error="invalid_token""#],
                                          message: "invalid token"))
        }
        let allowed = router.map { grant.allows(right, router: $0) } ?? grant.allows(right)
        guard allowed else { return .failure(forbidden(right)) }
        counters.apiAuthenticated(.accepted)
        return .success(GrantedToken(grant: grant, hash: hash))
    }

    /// 403: a valid token without the right (the same answer whether or not the
    /// router exists or is online).
    func forbidden(_ right: HubRight) -> AccessRefusal {
        counters.apiAuthenticated(.forbidden)
        return AccessRefusal(status: .forbidden,
                             headerFields: [.wwwAuthenticate: Self.realm + #", error="insufficient_scope", scope="\#(right)""#],
                             message: "this token may not \(right) here")
    }

    /// `check` for an HTTP request.
    func check(_ request: HTTPServerRequest, _ right: HubRight, router: String? = nil,
               queryToken: Bool = false) -> Result<GrantedToken, AccessRefusal> {
        check(authorization: request.header("authorization"), query: request.query, queryToken: queryToken,
              source: request.remoteAddress?.host ?? "?", right, router: router)
    }

    /// `check` for a WebSocket upgrade request.
    func check(_ head: RequestHead, peer: SocketAddress?, _ right: HubRight) -> Result<GrantedToken, AccessRefusal> {
        check(authorization: head.header(named: "authorization"), query: head.query, queryToken: true,
              source: peer?.host ?? "?", right)
    }

    /// A handler that runs `body` only for a request whose token carries `right` (on
    /// the router named by the path parameter `routerParameter`, when given).
    func guarded(_ right: HubRight, routerParameter: String? = nil, queryToken: Bool = false,
                 _ body: @escaping @Sendable (HTTPServerRequest, GrantedToken) async throws -> HTTPServerResponse) -> HTTPHandler {
        { [self] request in
            let router = routerParameter.map { request.parameters[$0] ?? "" }
            switch check(request, right, router: router, queryToken: queryToken) {
            case .success(let granted): return try await body(request, granted)
            case .failure(let refusal): return refusal.response
            }
        }
    }

    /// The credentials were replaced: every open stream gets its token's new grant
    /// (nil when the token was revoked), on its loop, now.
    func credentialsChanged(_ credentials: HubCredentials) {
        streams.regrant(credentials)
    }
}

/// An open stream (server-sent events, a WebSocket face) admitted with a token: a
/// reload hands it the token's grant again. Loop thread only.
protocol GrantedStream: AnyObject {
    /// The hash of the token the stream was opened with.
    var tokenHash: String { get }
    /// The token's grant after a reload; nil: revoked (the stream ends: stream end
    /// or close 1008). A narrower grant narrows what the stream receives.
    func regrant(_ grant: HubCredentials.TokenGrant?)
}

/// The open `GrantedStream`s, per loop.
final class GrantedStreams: Sendable {
    private let lanes = LoopShards<[ObjectIdentifier: any GrantedStream]> { [:] }

    /// Registers `stream` (on `loop`'s thread).
    func add(_ stream: any GrantedStream, on loop: EventLoop) {
        lanes.shard(for: loop).value[ObjectIdentifier(stream)] = stream
    }

    /// Forgets `stream` (on `loop`'s thread). Idempotent.
    func remove(_ stream: any GrantedStream, on loop: EventLoop) {
        lanes.shard(for: loop).value[ObjectIdentifier(stream)] = nil
    }

    /// Open streams right now (momentary; for tests and metrics).
    func count() async -> Int { await lanes.sum { $0.value.count } }

    /// Hands every stream its token's grant in `credentials` (any thread; each loop's
    /// streams on that loop).
    func regrant(_ credentials: HubCredentials) {
        lanes.forEachShard { shard in
            for stream in Array(shard.value.values) {
                stream.regrant(credentials.grant(forHash: stream.tokenHash))
            }
        }
    }
}
