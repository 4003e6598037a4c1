import HTTPTypes
import Torus
import TorusHTTP
import TorusHub
import TorusWebSocket

/// An attacker in the soak's mix, in turn on both faces.
///
/// The router port: connects as one of the stable routers and tries to get in
/// without its secret, with a wrong secret, a proof recorded from an earlier link
/// (replayed over a new nonce) and version 1's HELLO. Each must end in REFUSED; an
/// AUTHOK or a WELCOME without a challenge is an intrusion and fails the soak (and
/// the real router, which keeps its link, would see BYE "replaced").
///
/// The API: an unknown token must get 401; a token that reads one router only must
/// get 403 for another router's device, its events (`/events`, `/app`), `/web` and
/// for a command even on its own router. Any 2xx or 101 is an intrusion.
struct Attacker: Sendable {
    let victims: [String]
    let secrets: [String: [UInt8]]
    let address: SocketAddress
    let endpoint: HubEndpoint
    /// A token that reads `scopedRouter` only (nil: the soak did not write the
    /// credentials, so only unknown tokens are tried on the API).
    let scopedToken: String?
    let scopedRouter: String
    let loop: EventLoop
    let interval: Duration
    let stats: SoakStats

    enum Attack: CaseIterable {
        case wrongSecret, replayedProof, stolenHello
        case unknownToken, readOtherDevice, readOtherEvents, commandWithoutRight, appOtherRouter, webWithScopedToken
    }

    func run() async {
        var round = 0
        var recorded: (id: String, proof: [UInt8])?
        var configuration = HTTPClientConfiguration()
        configuration.maxConnectionsPerHost = 1
        configuration.requestTimeout = .seconds(10)
        let client = HTTPClient(loop: loop, configuration: configuration)
        let attacks = Attack.allCases.filter { scopedToken != nil || !$0.needsScopedToken }
        while !stats.isStopping, !victims.isEmpty {
            try? await Task.sleep(for: interval)
            let victim = victims[round % victims.count]
            let attack = attacks[round % attacks.count]
            round += 1
            if attack.isOnAPI {
                stats.update { $0.attacks += 1 }
                await attemptOnAPI(attack, client: client, other: victim == scopedRouter ? victims[(round + 1) % victims.count] : victim)
                continue
            }
            // What an eavesdropper could have recorded: a valid proof over an old nonce.
            if recorded == nil || recorded?.id != victim, let secret = secrets[victim] {
                recorded = (victim, HubCredentials.proof(secret: secret, nonce: HubCredentials.randomBytes(32), id: victim))
            }
            stats.update { $0.attacks += 1 }
            do {
                try await attempt(attack, as: victim, replay: recorded?.proof ?? [])
            } catch {
                // The hub closing on us without REFUSED is not an intrusion.
            }
        }
        await client.shutdown()
    }

    /// One attack on the API; `other` is a router the scoped token may not read.
    private func attemptOnAPI(_ attack: Attack, client: HTTPClient, other: String) async {
        let scoped = scopedToken ?? ""
        let status: Int
        switch attack {
        case .unknownToken:
            status = await get(client, "/devices", token: "thk_" + HubCredentials.base64(HubCredentials.randomBytes(24)))
        case .readOtherDevice:
            status = await get(client, "/devices/\(other)", token: scoped)
        case .readOtherEvents:
            status = await get(client, "/events?routers=\(other)", token: scoped)
        case .commandWithoutRight:
            status = await get(client, "/devices/\(scopedRouter)/commands", token: scoped, method: .post)
        case .appOtherRouter:
            status = await upgrade("/app?routers=\(other)", token: scoped)
        case .webWithScopedToken:
            status = await upgrade("/web", token: scoped)
        case .wrongSecret, .replayedProof, .stolenHello:
            return
        }
        let expected = attack == .unknownToken ? 401 : 403
        if status == expected {
            stats.update { $0.attacksRefused += 1 }
        } else if (200..<300).contains(status) || status == 101 {
            stats.fail("attacker (\(attack)) got \(status)") { $0.intrusions += 1 }
        }
        // Anything else (a timeout, a connection error under load) is neither.
    }

    /// The status of one request (0 when it failed). An event stream that was let in
    /// is not read: its status alone is the verdict.
    private func get(_ client: HTTPClient, _ target: String, token: String,
                     method: HTTPRequest.Method = .get) async -> Int {
        let request = HTTPClientRequest(method: method, host: endpoint.host, port: endpoint.port, target: target,
                                        headerFields: [.authorization: endpoint.authorization(token), .connection: "close"],
                                        body: method == .post ? .bytes(Array("unlock".utf8)) : nil)
        guard let response = try? await client.execute(request) else { return 0 }
        let status = Int(response.status.code)
        // A refusal is read to its end; a stream let in (an intrusion) is left unread.
        if !(200..<300).contains(status) { _ = try? await response.body.collect(upTo: 64 << 10) }
        return status
    }

    /// 101 when a WebSocket handshake with `token` succeeded, else the refusal's
    /// status as the client reports it (0 when it says nothing of one).
    private func upgrade(_ target: String, token: String) async -> Int {
        var configuration = WebSocketClientConfiguration()
        configuration.connectTimeout = .seconds(5)
        configuration.handshakeTimeout = .seconds(5)
        configuration.headers.append(HandshakeHeader("Authorization", endpoint.authorization(token)))
        do {
            let ws = try await WebSocketClient.connect(to: endpoint.webSocketURL(target), on: loop, configuration: configuration)
            await ws.close()
            return 101
        } catch {
            // The client reports a refusal as "status N, expected 101".
            let text = "\(error)"
            for code in [401, 403, 429] where text.contains("status \(code)") { return code }
            return 0
        }
    }

    private func attempt(_ attack: Attack, as victim: String, replay: [UInt8]) async throws {
        let connection = try await AsyncConnection.connect(to: address, on: loop, timeout: .seconds(5))
        var decoder = HubFrameDecoder()
        var frames: [HubFrame] = []
        func next() async throws -> HubFrame? {
            while frames.isEmpty {
                guard let chunk = try await connection.read() else { return nil }
                try chunk.withUnsafeBytes { bytes in
                    try decoder.feed(bytes) { frame in frames.append(frame); return true }
                }
            }
            return frames.removeFirst()
        }
        var verdict: HubFrame?
        switch attack {
        case .stolenHello:
            try await connection.write(HubFrame.hello(id: victim, version: 1).encoded)
            verdict = try await next()
            // The challenge the hub sends at accept is not admission: version 1's
            // admission is a WELCOME without a nonce.
            if case .welcome(_, let nonce)? = verdict, !nonce.isEmpty { verdict = try await next() }
        case .wrongSecret, .replayedProof:
            try await connection.write(HubFrame.hello(id: victim).encoded)
            let welcome = try await next()
            if case .welcome(_, let nonce)? = welcome, nonce.count == HubFrame.nonceSize {
                let proof = attack == .replayedProof ? replay
                    : HubCredentials.proof(secret: HubCredentials.newSecret(), nonce: nonce, id: victim)
                try await connection.write(HubFrame.auth(proof: proof).encoded)
                verdict = try await next()
            } else {
                verdict = welcome
            }
        default:
            break  // The API's attacks go through attemptOnAPI.
        }
        switch verdict {
        case .refused?:
            stats.update { $0.attacksRefused += 1 }
        case .authOK?, .welcome?:
            // An AUTHOK, or a WELCOME where only REFUSED may come (version 1 let in).
            stats.fail("attacker (\(attack)) got in as \(victim)") { $0.intrusions += 1 }
        default:
            break
        }
        await connection.close(flush: false)
    }
}

extension Attacker.Attack {
    var isOnAPI: Bool {
        switch self {
        case .wrongSecret, .replayedProof, .stolenHello: false
        default: true
        }
    }

    /// Attacks that need the soak's own scoped token.
    var needsScopedToken: Bool { isOnAPI && self != .unknownToken }
}
