#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HTTPTypes
import Logging
import Torus
import TorusHTTP

/// The hub's HTTP API:
///
/// - `GET /healthz` — `ok`
/// - `GET /devices` — online routers (JSON array)
/// - `GET /devices/{id}` — one router (JSON), 404 when offline
/// - `POST /devices/{id}/commands[?timeout=MS]` — forwards the body to the router as
///   a COMMAND and answers with its REPLY body (200); 404 offline, 504 no reply in
///   time, 502 link closed first, 503 too many waiting commands
/// - `GET /events[?routers=a,b]` — router events as server-sent events, with a ping
///   comment every `pingInterval` while idle
/// - `GET /app`, `GET /web` — the WebSocket faces (see `HubWebSockets`)
/// - `GET /metrics` — Prometheus text: the ledger plus RSS, routers, events, commands
/// - `GET /debug/ledger` — the summed ledger as JSON
///
/// Every route but `/healthz` needs a bearer token (see `HubAccess`): `read` for
/// devices and events (only the token's routers), `command` on the router for
/// commands, `admin` for metrics and the ledger. Missing or unknown token: 401 with
/// `WWW-Authenticate`; a token without the right: 403, whether or not the router
/// exists; a source that sent too many unknown tokens: 429 for a while.
///
/// Handlers run in tasks on the loop that accepted the HTTP connection; talking to a
/// router hops to the router's loop and back.
enum HubAPI {
    static func router(core: HubCore, group: EventLoopGroup) -> HTTPRouter {
        var router = HTTPRouter()
        let access = core.access
        router.get("/healthz", fixed: PrecomputedResponse(contentType: "text/plain", body: "ok\n"))
        router.get("/devices", access.guarded(.read) { _, token in
            await devices(token: token, core: core)
        })
        router.get("/devices/{id}", access.guarded(.read, routerParameter: "id") { request, _ in
            let id = request.parameters["id"] ?? ""
            if let link = core.directory.link(for: id) {
                return .json(deviceJSON(link, node: core.cluster?.nodeID) + "\n")
            }
            if let cluster = core.cluster {
                do {
                    if let json = try await cluster.remoteDevice(id) { return .json(json + "\n") }
                } catch {
                    return clusterUnavailable
                }
            }
            return .json(#"{"error":"offline"}"# + "\n", status: .notFound)
        })
        router.post("/devices/{id}/commands", access.guarded(.command, routerParameter: "id") { request, _ in
            try await command(request, core: core)
        })
        router.get("/events", access.guarded(.read, queryToken: true) { request, token in
            events(request, token: token, core: core)
        })
        router.get("/token", access.guarded(.read) { _, token in
            .json(tokenJSON(token.grant) + "\n")
        })
        router.get("/metrics", access.guarded(.admin) { _, _ in
            let ledger = await group.ledgerSnapshot()
            return .text(metrics(ledger, core: core), contentType: "text/plain; version=0.0.4")
        })
        router.get("/debug/ledger", access.guarded(.admin) { _, _ in
            let ledger = await group.ledgerSnapshot()
            return .json(ledgerJSON(ledger) + "\n")
        })
        return router
    }

    /// `GET /token`: what the presented token may do (a page asks once, instead of
    /// trying the views it may not open): its routers (`"*"`: all), its rights, and
    /// the two things the dashboard needs to know.
    static func tokenJSON(_ grant: HubCredentials.TokenGrant) -> String {
        // Router ids and right names need no escaping (HubFrame.isValidID; the store
        // refuses other rights).
        let routers = grant.routers.map { "[" + $0.sorted().map { #""\#($0)""# }.joined(separator: ",") + "]" } ?? #""*""#
        let rights = "[" + grant.rights.sorted().map { #""\#($0)""# }.joined(separator: ",") + "]"
        return #"{"routers":\#(routers),"rights":\#(rights),"reads_every_router":\#(grant.readsEveryRouter),"#
            + #""admin":\#(grant.allows(.admin))}"#
    }

    /// `GET /devices`: this node's routers, then (in a cluster) every other node's,
    /// each router once, only those the token may read. While Redis is away the list
    /// holds this node's routers only, and says so in `Torus-Directory: local-only`.
    static func devices(token: GrantedToken, core: HubCore) async -> HTTPServerResponse {
        let node = core.cluster?.nodeID
        var seen = Set<String>()
        var items: [String] = []
        for link in core.directory.all() {
            guard let id = link.id, token.grant.allows(.read, router: id) else { continue }
            seen.insert(id)
            items.append(deviceJSON(link, node: node))
        }
        var localOnly = false
        if let cluster = core.cluster {
            do {
                for device in try await cluster.remoteDevices() where token.grant.allows(.read, router: device.id) {
                    guard seen.insert(device.id).inserted else { continue }
                    items.append(device.json)
                }
            } catch {
                localOnly = true
            }
        }
        var response = HTTPServerResponse.json("[" + items.joined(separator: ",") + "]\n")
        if localOnly, let name = HTTPField.Name("Torus-Directory") { response.headerFields[name] = "local-only" }
        return response
    }

    static var clusterUnavailable: HTTPServerResponse {
        .json(#"{"error":"hub cluster unavailable"}"# + "\n", status: .serviceUnavailable)
    }

    // MARK: Commands

    static func command(_ request: HTTPServerRequest, core: HubCore) async throws -> HTTPServerResponse {
        let id = request.parameters["id"] ?? ""
        let body = try await request.body.collect(upTo: core.configuration.maxFrame - 5)
        var timeout = core.configuration.commandTimeout
        if let ms = queryValue(request.query, "timeout").flatMap({ Int($0) }), ms > 0 {
            timeout = min(.milliseconds(ms), core.configuration.maxCommandTimeout)
        }
        let wait = timeout
        let outcome: CommandOutcome
        if let link = core.directory.link(for: id) {
            outcome = await withCheckedContinuation { (c: CheckedContinuation<CommandOutcome, Never>) in
                link.loop.execute {
                    link.command(body, timeout: wait) { c.resume(returning: $0) }
                }
            }
        } else if let cluster = core.cluster {
            outcome = await cluster.command(router: id, body: body, timeout: wait)
        } else {
            outcome = .offline
        }
        core.counters.commandFinished(outcome)
        switch outcome {
        case .reply(let reply):
            let type = request.header("content-type") ?? "application/octet-stream"
            return HTTPServerResponse(headerFields: [.contentType: type], body: .bytes(reply))
        case .offline:
            return .json(#"{"error":"offline"}"# + "\n", status: .notFound)
        case .timedOut:
            return .json(#"{"error":"router did not reply in time"}"# + "\n", status: .gatewayTimeout)
        case .disconnected:
            return .json(#"{"error":"router disconnected"}"# + "\n", status: .badGateway)
        case .overloaded:
            return .json(#"{"error":"too many commands waiting"}"# + "\n", status: .serviceUnavailable)
        case .unreachable:
            return .json(#"{"error":"the router's hub node cannot be reached"}"# + "\n", status: .serviceUnavailable)
        }
    }

    // MARK: Event stream

    /// `GET /events[?routers=a,b]`: the routers asked for (all when absent) must all
    /// be readable with the token (else 403); without `?routers=` the stream carries
    /// every router the token may read.
    static func events(_ request: HTTPServerRequest, token: GrantedToken, core: HubCore) -> HTTPServerResponse {
        let requested = queryValue(request.query, "routers").map {
            Set($0.split(separator: ",").map(String.init))
        }
        if let requested, !token.grant.mayRead(requested) {
            return core.access.forbidden(.read).response
        }
        let loop = request.loop
        let ping = core.configuration.pingInterval
        let limit = core.configuration.subscriberQueueLimit
        let filter = token.grant.readable(within: requested)
        return HTTPServerResponse(headerFields: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                                  body: .stream { writer in
            let subscriber = QueueSubscriber(loop: loop, filter: filter, limit: limit)
            let granted = EventStreamGrant(subscriber: subscriber, requested: requested, tokenHash: token.hash)
            let subscribed = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                loop.runOnLoop {
                    let subscribed = core.events.subscribe(subscriber)
                    if subscribed { core.access.streams.add(granted, on: loop) }
                    c.resume(returning: subscribed)
                }
            }
            guard subscribed else { return }
            do {
                try await writer.write(": subscribed\n\n")
                loop: while true {
                    switch await subscriber.next(wait: ping) {
                    case .event(let event):
                        try await writer.write(sseFrame(event))
                    case .idle:
                        try await writer.write(": ping\n\n")
                    case .finished:
                        break loop
                    }
                }
            } catch {
                // The client went away: unsubscribe below.
                core.configuration.logger.debug("event stream ended", metadata: ["error": "\(error)"])
            }
            loop.runOnLoop {
                core.access.streams.remove(granted, on: loop)
                core.events.unsubscribe(subscriber)
                subscriber.finish()
            }
        })
    }

    /// An event stream's tie to its token: a reload narrows its routers or, when the
    /// token is revoked, ends the stream. Loop thread only.
    final class EventStreamGrant: GrantedStream, @unchecked Sendable {
        let subscriber: QueueSubscriber
        let requested: Set<String>?
        let tokenHash: String

        init(subscriber: QueueSubscriber, requested: Set<String>?, tokenHash: String) {
            self.subscriber = subscriber
            self.requested = requested
            self.tokenHash = tokenHash
        }

        func regrant(_ grant: HubCredentials.TokenGrant?) {
            guard let grant, grant.allows(.read) else { return subscriber.finish() }
            subscriber.filter = grant.readable(within: requested)
        }
    }

    /// `id: SEQ`, `event: ROUTER`, then the payload as `data:` lines.
    static func sseFrame(_ event: HubEvent) -> [UInt8] {
        var out: [UInt8] = Array("id: \(event.sequence)\nevent: \(event.router)\n".utf8)
        for line in event.payload.split(separator: 0x0A, omittingEmptySubsequences: false) {
            out += Array("data: ".utf8)
            out += line.filter { $0 != 0x0D }
            out.append(0x0A)
        }
        out.append(0x0A)
        return out
    }

    // MARK: JSON and metrics

    /// A router on this node; `node` (this node's name) in a cluster.
    static func deviceJSON(_ link: RouterLink, node: String? = nil) -> String {
        let id = link.id ?? ""
        guard let s = link.stats else { return #"{"id":"\#(id)"}"# }
        let nodeField = node.map { #""node":"\#($0)","# } ?? ""
        return #"{"id":"\#(id)",\#(nodeField)"loop":\#(link.loop.index),"remote":"\#(link.remote)","#
            + #""connected_at":\#(s.connectedAt),"silent_ms":\#(s.silentForMs),"#
            + #""events":\#(s.eventCount),"commands":\#(s.commandCount),"replies":\#(s.replyCount)}"#
    }

    static func ledgerJSON(_ ledger: LedgerSnapshot) -> String {
        let heap = heapBytes()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let full = (try? encoder.encode(ledger)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
        var ops: [String] = []
        for kind in OperationKind.allCases where ledger[kind].submitted > 0 {
            let c = ledger[kind]
            ops.append(#""\#(kind)":{"submitted":\#(c.submitted),"completed":\#(c.completed),"#
                       + #""cancelled":\#(c.cancelled),"in_flight":\#(c.inFlight),"parked":\#(c.parked)}"#)
        }
        return #"{"quiescent":\#(ledger.isQuiescent),"in_flight":\#(ledger.inFlight),"parked":\#(ledger.parked),"#
            + #""buffers_out":\#(ledger.buffersOut),"connections":\#(ledger.connections),"#
            + #""listeners":\#(ledger.listeners),"rss_bytes":\#(residentBytes()),"#
            + #""heap_in_use_bytes":\#(heap.inUse),"heap_reserved_bytes":\#(heap.reserved),"#
            + #""operations":{\#(ops.joined(separator: ","))},"ledger":\#(full)}"#
    }

    static func metrics(_ ledger: LedgerSnapshot, core: HubCore) -> String {
        var out = PrometheusText()
        ledger.write(to: &out)
        let c = core.counters
        let heap = heapBytes()
        out.single("torus_hub_resident_bytes", .gauge, residentBytes())
        out.single("torus_hub_heap_in_use_bytes", .gauge, heap.inUse)
        out.single("torus_hub_heap_reserved_bytes", .gauge, heap.reserved)
        out.single("torus_hub_uptime_seconds", .gauge, Double(MonotonicClock.now() - core.startedAt) / 1e9)
        out.single("torus_hub_routers", .gauge, core.directory.count)
        let ws = core.webSockets
        let webClients = ws.webClients.load(ordering: .relaxed)
        out.single("torus_hub_subscribers", .gauge, core.events.subscriberCount + webClients)
        out.family("torus_hub_websocket_clients", .gauge)
        out.sample("torus_hub_websocket_clients", ["face": "app"], ws.appClients.load(ordering: .relaxed))
        out.sample("torus_hub_websocket_clients", ["face": "web"], webClients)
        out.family("torus_hub_websocket_events_dropped_total", .counter)
        out.sample("torus_hub_websocket_events_dropped_total", ["face": "app"], ws.appDropped.load(ordering: .relaxed))
        out.sample("torus_hub_websocket_events_dropped_total", ["face": "web"], ws.web.droppedCount)
        out.family("torus_hub_websocket_slow_closed_total", .counter)
        out.sample("torus_hub_websocket_slow_closed_total", ["face": "app"], ws.appSlowClosed.load(ordering: .relaxed))
        out.sample("torus_hub_websocket_slow_closed_total", ["face": "web"], ws.web.disconnectedCount)
        out.single("torus_hub_websocket_bad_requests_total", .counter, ws.badRequests.load(ordering: .relaxed))
        out.single("torus_hub_router_links_total", .counter, c.links)
        out.single("torus_hub_protocol_errors_total", .counter, c.malformed)
        out.single("torus_hub_events_total", .counter, c.events)
        // Bus subscribers (event streams, /app) plus the /web channel's members.
        out.single("torus_hub_events_delivered_total", .counter, c.delivered + ws.web.deliveredCount)
        out.single("torus_hub_events_dropped_total", .counter, c.dropped + ws.web.droppedCount)
        out.family("torus_hub_router_disconnects_total", .counter)
        for (reason, n) in c.disconnectCounts {
            out.sample("torus_hub_router_disconnects_total", ["reason": reason.description], n)
        }
        out.family("torus_hub_router_auth_total", .counter)
        for (outcome, n) in c.authCounts {
            out.sample("torus_hub_router_auth_total", ["outcome": outcome.description], n)
        }
        out.family("torus_hub_api_auth_total", .counter)
        for (outcome, n) in c.apiAuthCounts {
            out.sample("torus_hub_api_auth_total", ["outcome": outcome.description], n)
        }
        let refused = core.httpServer.withLock { $0?.refusedConnections } ?? 0
        out.single("torus_hub_http_connections_refused_total", .counter, refused)
        if let cluster = core.cluster {
            let k = cluster.counters
            out.single("torus_hub_cluster_connected", .gauge, cluster.isConnected ? 1 : 0)
            out.single("torus_hub_cluster_events_published_total", .counter, k.eventsPublished.load(ordering: .relaxed))
            out.single("torus_hub_cluster_events_received_total", .counter, k.eventsReceived.load(ordering: .relaxed))
            out.single("torus_hub_cluster_events_dropped_total", .counter, k.eventsDropped.load(ordering: .relaxed))
            out.single("torus_hub_cluster_events_in_flight", .gauge, cluster.relay.eventsInFlight)
            out.single("torus_hub_cluster_relay_holds_total", .counter, cluster.relay.holds.load(ordering: .relaxed))
            out.single("torus_hub_cluster_bad_messages_total", .counter, k.badMessages.load(ordering: .relaxed))
            out.family("torus_hub_cluster_commands_total", .counter)
            out.sample("torus_hub_cluster_commands_total", ["direction": "forwarded"], k.commandsForwarded.load(ordering: .relaxed))
            out.sample("torus_hub_cluster_commands_total", ["direction": "served"], k.commandsServed.load(ordering: .relaxed))
            out.single("torus_hub_cluster_leases_lost_total", .counter, k.leasesLost.load(ordering: .relaxed))
            out.family("torus_hub_cluster_takeovers_total", .counter)
            out.sample("torus_hub_cluster_takeovers_total", ["direction": "sent"], k.takeoversSent.load(ordering: .relaxed))
            out.sample("torus_hub_cluster_takeovers_total", ["direction": "received"], k.takeoversReceived.load(ordering: .relaxed))
        }
        out.family("torus_hub_commands_total", .counter)
        for (outcome, n) in c.commandCounts.sorted(by: { $0.key < $1.key }) {
            out.sample("torus_hub_commands_total", ["outcome": outcome], n)
        }
        return out.text
    }

    static func queryValue(_ query: String?, _ name: String) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.first == Substring(name) { return kv.count > 1 ? String(kv[1]) : "" }
        }
        return nil
    }
}
