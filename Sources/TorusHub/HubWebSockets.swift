#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization
import Torus
import TorusHTTP
import TorusWebSocket

/// Settings of the hub's WebSocket faces (`/app`, `/web`). A plain value.
public struct HubWebSocketConfiguration: Sendable {
    /// Liveness: a ping after this long without anything from the client (nil: no pings).
    public var pingInterval: Duration? = .seconds(15)
    /// Liveness: after such a ping, the client is closed when still nothing arrived
    /// within this long (close 1011 "ping timeout", then the socket).
    public var pingTimeout: Duration = .seconds(10)
    /// How long a closing handshake may take before the socket is closed anyway.
    public var closeTimeout: Duration = .seconds(5)
    /// A subscriber whose write queue is above the high water mark (not writable)
    /// misses the event (`.drop`) or is closed with 1008 (`.disconnect`).
    public var slowSubscribers: WebSocketChannel.SlowSubscriberPolicy = .drop
    /// Largest message a client may send (subscription requests are tiny). Larger: 1009.
    public var maxMessageSize = 64 << 10
    /// Routers one `/app` client may subscribe to at once (`*` counts as one).
    public var maxSubscriptions = 1024

    public init() {}
}

/// The hub's WebSocket faces on its HTTP port:
///
/// - `GET /app[?routers=a,b]` — mobile apps choose routers: text messages
///   `{"subscribe":["r1","r2"]}` and `{"unsubscribe":["r1"]}` (`"*"`: every router);
///   the hub answers each with `{"subscribed":[...]}` (the whole current set, sorted),
///   or `{"error":"..."}` for a bad request (the connection stays open). The first
///   message after the upgrade is `{"subscribed":[...]}` with the set from `?routers=`.
/// - `GET /web[?feeds=routers,stats]` — web pages get every event through one
///   ``WebSocketChannel``; the first message is `{"subscribed":["*"]}`; messages from
///   the page are ignored. `feeds` adds routers coming and going and periodic stats
///   (see `HubDashboardFeeds`).
///
/// Every event is one text message `{"router":"r1","seq":42,"data":"..."}` (payload
/// as a JSON string, see ``HubEventJSON``), encoded once per event and queued as the
/// same `SharedBytes` on every WebSocket subscriber. Liveness: pings per
/// ``HubWebSocketConfiguration``; slow subscribers per its policy; shutdown closes
/// every client with 1001.
///
/// Threading: every connection and its subscription live on the loop that accepted
/// it; the counters are atomics, safe from any thread.
final class HubWebSockets: Sendable {
    let configuration: HubWebSocketConfiguration
    let registry = WebSocketRegistry()
    let web: WebSocketChannel
    let appClients = Atomic<Int>(0)
    let webClients = Atomic<Int>(0)
    let appDropped = Atomic<Int>(0)
    let appSlowClosed = Atomic<Int>(0)
    let badRequests = Atomic<Int>(0)
    let logger: Logger

    init(configuration: HubWebSocketConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        web = WebSocketChannel(policy: configuration.slowSubscribers)
    }

    /// Whether anyone would send the event's WebSocket frame (then it is encoded at
    /// publication, once).
    var hasSubscribers: Bool {
        appClients.load(ordering: .relaxed) + webClients.load(ordering: .relaxed) > 0
    }

    /// Hands `event` to the `/web` channel (one job per loop with members).
    func broadcast(_ event: HubEvent) {
        guard webClients.load(ordering: .relaxed) > 0 else { return }
        web.broadcast(event.webSocketFrame)
    }

    var serverConfiguration: WebSocketServerConfiguration {
        var c = WebSocketConfiguration()
        c.pingInterval = configuration.pingInterval
        c.pingTimeout = configuration.pingTimeout
        c.closeTimeout = configuration.closeTimeout
        c.maxMessageSize = configuration.maxMessageSize
        c.maxFrameSize = configuration.maxMessageSize
        c.inboundBufferLimit = configuration.maxMessageSize
        c.logger = logger
        return WebSocketServerConfiguration(connection: c)
    }

    /// Adds `/app` and `/web` to the HTTP router. Both need a token that may read
    /// (in the `Authorization` header or `?access_token=`): `/app` only the token's
    /// routers (asking for others in `?routers=` is 403), `/web` every router.
    func install(into router: inout HTTPRouter, core: HubCore) {
        let settings = serverConfiguration
        let access = core.access
        router.webSocket("/app", configuration: settings, registry: registry, admit: { head, peer -> WebSocketAdmission<AppAdmission> in
            let initial = HubAPI.queryValue(head.query, "routers").map { $0.split(separator: ",").map(String.init) } ?? []
            switch access.check(head, peer: peer, .read) {
            case .failure(let refusal):
                return refusal.webSocketAdmission()
            case .success(let token):
                guard initial.allSatisfy({ $0 == "*" || token.grant.allows(.read, router: $0) }) else {
                    return access.forbidden(.read).webSocketAdmission()
                }
                return .admit(AppAdmission(token: token, initial: initial))
            }
        }) { [self] (ws: WebSocketConnection, admitted: AppAdmission) in
            let subscriber = AppSubscriber(ws: ws, faces: self, bus: core.events, token: admitted.token)
            appClients.add(1, ordering: .relaxed)
            access.streams.add(subscriber, on: ws.loop)
            ws.onText = { _, text in subscriber.request(text) }
            ws.onBinary = { ws, _ in ws.close(code: .unsupportedData, reason: "text messages only") }
            ws.onClose = { [self] ws, _ in
                appClients.subtract(1, ordering: .relaxed)
                access.streams.remove(subscriber, on: ws.loop)
                subscriber.closed()
            }
            guard core.events.subscribe(subscriber) else {
                return ws.close(code: .goingAway, reason: "hub shutting down")
            }
            subscriber.start(admitted.initial)
        }
        let feeds = core.dashboard
        router.webSocket("/web", configuration: settings, registry: registry, admit: { head, peer -> WebSocketAdmission<WebAdmission> in
            switch access.check(head, peer: peer, .read) {
            case .failure(let refusal):
                return refusal.webSocketAdmission()
            case .success(let token):
                guard token.grant.readsEveryRouter else { return access.forbidden(.read).webSocketAdmission() }
                return feeds.admission(head, token: token, access: access)
            }
        }) { [self] (ws: WebSocketConnection, admitted: WebAdmission) in
            let granted = WebClientGrant(ws: ws, tokenHash: admitted.token.hash, faces: self, streams: access.streams)
            webClients.add(1, ordering: .relaxed)
            access.streams.add(granted, on: ws.loop)
            // One captured reference: the closure needs no context of its own (an idle
            // /web client is the hub's most numerous connection).
            ws.onClose = { [granted] _, _ in granted.closed() }
            ws.onText = { _, _ in }
            ws.onBinary = { _, _ in }
            web.subscribe(ws)
            ws.send(text: #"{"subscribed":["*"]}"#)
            if !admitted.feeds.isEmpty { feeds.join(ws, admitted.feeds) { granted.closed() } }
        }
    }

    /// Graceful stop: every client gets close 1001; waits up to `grace` for the
    /// closing handshakes, then closes what is left.
    func closeAll(grace: Duration) async {
        await registry.closeAll(code: .goingAway, reason: "hub shutting down", grace: grace)
    }
}

/// What `/app`'s admission found: the token and the `?routers=` set.
struct AppAdmission: Sendable {
    let token: GrantedToken
    let initial: [String]
}

/// A `/web` client's tie to its token: a reload that leaves the token unable to read
/// every router closes the client with 1008. Loop thread only.
final class WebClientGrant: GrantedStream, @unchecked Sendable {
    let ws: WebSocketConnection
    let tokenHash: String
    let faces: HubWebSockets
    let streams: GrantedStreams

    init(ws: WebSocketConnection, tokenHash: String, faces: HubWebSockets, streams: GrantedStreams) {
        self.ws = ws
        self.tokenHash = tokenHash
        self.faces = faces
        self.streams = streams
    }

    /// The client closed: uncount it and forget it.
    func closed() {
        faces.webClients.subtract(1, ordering: .relaxed)
        streams.remove(self, on: ws.loop)
    }

    func regrant(_ grant: HubCredentials.TokenGrant?) {
        guard grant?.readsEveryRouter != true else { return }
        ws.close(code: .policyViolation, reason: "token revoked")
    }
}

/// One `/app` client's subscription: a bus subscriber on the client's loop that
/// sends the events of the routers it chose, among those its token may read.
///
/// Threading: loop-confined (`ws.loop`); the bus calls `wants`/`deliver` there and
/// the connection's callbacks run there, hence `@unchecked Sendable`.
final class AppSubscriber: HubSubscriber, GrantedStream, @unchecked Sendable {
    let ws: WebSocketConnection
    let faces: HubWebSockets
    let bus: EventBus
    let tokenHash: String
    var loop: EventLoop { ws.loop }
    /// What the token allows (a reload may narrow it: `regrant`).
    private var grant: HubCredentials.TokenGrant
    private var routers: Set<String> = []
    /// `*`: every router the token may read.
    private var everything = false
    /// Missing events because the client does not keep up (logged once per episode).
    private var dropping = false

    init(ws: WebSocketConnection, faces: HubWebSockets, bus: EventBus, token: GrantedToken) {
        self.ws = ws
        self.faces = faces
        self.bus = bus
        tokenHash = token.hash
        grant = token.grant
    }

    func wants(_ router: String) -> Bool {
        (everything || routers.contains(router)) && grant.allows(.read, router: router)
    }

    func regrant(_ grant: HubCredentials.TokenGrant?) {
        guard let grant, grant.allows(.read) else {
            return ws.close(code: .policyViolation, reason: "token revoked")
        }
        self.grant = grant
        routers = routers.filter { grant.allows(.read, router: $0) }
    }

    func deliver(_ event: HubEvent) -> Bool {
        guard ws.isOpen else { return false }
        if ws.isWritable {
            if dropping {
                dropping = false
                faces.logger.info("slow /app subscriber caught up", metadata: ws.hubLogMetadata(face: "/app"))
            }
            return ws.send(event.webSocketFrame)
        }
        faces.appDropped.add(1, ordering: .relaxed)
        if faces.configuration.slowSubscribers == .disconnect {
            faces.appSlowClosed.add(1, ordering: .relaxed)
            faces.logger.info("slow /app subscriber disconnected (close 1008)", metadata: ws.hubLogMetadata(face: "/app"))
            bus.unsubscribe(self)
            ws.close(code: .policyViolation, reason: "slow consumer")
        } else if !dropping {
            dropping = true
            faces.logger.info("slow /app subscriber: dropping events until it catches up", metadata: ws.hubLogMetadata(face: "/app"))
        }
        return false
    }

    func busClosed() { ws.close(code: .goingAway, reason: "hub shutting down") }

    /// The connection closed: leave the bus (which drops the last reference).
    func closed() { bus.unsubscribe(self) }

    /// Applies the `?routers=` set and sends the first `{"subscribed":[...]}`.
    func start(_ initial: [String]) {
        if let error = change(add: initial, remove: []) { return reply(error: error) }
        replySubscribed()
    }

    /// Protocol: `{"subscribe":[...]}`, `{"unsubscribe":[...]}` (both may appear in
    /// one message: unsubscribe first).
    func request(_ text: String) {
        guard let message = try? JSONDecoder().decode(AppRequest.self, from: Data(text.utf8)),
              message.subscribe != nil || message.unsubscribe != nil else {
            return reply(error: #"expected {"subscribe":[ROUTER,...]} or {"unsubscribe":[ROUTER,...]}"#)
        }
        if let error = change(add: message.subscribe ?? [], remove: message.unsubscribe ?? []) {
            return reply(error: error)
        }
        replySubscribed()
    }

    /// Validates and applies a change; returns an error (and changes nothing) when
    /// an id is invalid or the set would grow beyond the limit.
    private func change(add: [String], remove: [String]) -> String? {
        for id in add + remove where id != "*" && !HubFrame.isValidID(id) {
            return "invalid router id"
        }
        // The same answer whether or not the router exists.
        for id in add where id != "*" && !grant.allows(.read, router: id) {
            return "this token may not read router \(id)"
        }
        var next = routers
        var nextEverything = everything
        for id in remove {
            if id == "*" { nextEverything = false } else { next.remove(id) }
        }
        for id in add {
            if id == "*" { nextEverything = true } else { next.insert(id) }
        }
        let limit = faces.configuration.maxSubscriptions
        if next.count + (nextEverything ? 1 : 0) > limit { return "too many subscriptions (at most \(limit))" }
        routers = next
        everything = nextEverything
        return nil
    }

    private func replySubscribed() {
        var ids = routers.sorted()
        if everything { ids.insert("*", at: 0) }
        // Router ids are [A-Za-z0-9._:-] (HubFrame.isValidID): no escaping needed.
        ws.send(text: #"{"subscribed":["# + ids.map { "\"\($0)\"" }.joined(separator: ",") + "]}")
    }

    private func reply(error: String) {
        faces.badRequests.add(1, ordering: .relaxed)
        faces.logger.info("bad /app request", metadata: ws.hubLogMetadata(face: "/app").merging(["error": "\(error)"]) { $1 })
        ws.send(text: #"{"error":"# + String(decoding: HubEventJSON.quoted(Array(error.utf8)), as: UTF8.self) + "}")
    }
}

extension WebSocketConnection {
    /// Log metadata naming a hub WebSocket client: its peer, socket and face (the
    /// route's path: connections do not keep their upgrade request).
    func hubLogMetadata(face: String) -> Logger.Metadata {
        ["peer": "\(connection.remoteAddress?.description ?? "?")", "fd": "\(connection.fd)", "face": "\(face)"]
    }
}

/// An `/app` request message.
struct AppRequest: Decodable {
    var subscribe: [String]?
    var unsubscribe: [String]?
}

/// The JSON envelope of an event on the WebSocket faces:
/// `{"router":"r1","seq":42,"data":"..."}` where `data` is the EVENT payload as a
/// JSON string (routers send JSON by convention, but the hub forwards opaque bytes:
/// a page parses `data` again when it holds JSON; bytes that are not UTF-8 become
/// U+FFFD). A plain namespace.
public enum HubEventJSON {
    /// The envelope as one unmasked text frame (encoded once per event).
    public static func frame(router: String, sequence: UInt64, payload: [UInt8]) -> WebSocketFrame {
        let text = envelope(router: router, sequence: sequence, payload: payload)
        return text.withUnsafeBytes { WebSocketFrame(kind: .text, payload: $0) }
    }

    /// The envelope's UTF-8 bytes.
    public static func envelope(router: String, sequence: UInt64, payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + router.utf8.count + 48)
        out += #"{"router":"#.utf8
        out += quoted(Array(router.utf8))
        out += #","seq":\#(sequence),"data":"#.utf8
        out += quoted(payload)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `bytes` as a JSON string literal (quotes included). Invalid UTF-8 is repaired
    /// to U+FFFD so the result is always a valid text message.
    public static func quoted(_ bytes: [UInt8]) -> [UInt8] {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "\"")]
        out.reserveCapacity(bytes.count + 8)
        let source: [UInt8] = String(validating: bytes, as: UTF8.self) != nil
            ? bytes : Array(String(decoding: bytes, as: UTF8.self).utf8)
        for b in source {
            switch b {
            case UInt8(ascii: "\""): out += [0x5C, 0x22]
            case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0..<0x20, 0x7F:
                // b < 0x80: both indices are within the 16 hex digits.
                out += Array(#"\u00"#.utf8)
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }
}
