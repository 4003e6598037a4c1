import Torus
import TorusHub

/// An attacker in the soak's mix: connects to the router port as one of the stable
/// routers and tries to get in without its secret, in turn with a wrong secret, a
/// proof recorded from an earlier link (replayed over a new nonce) and version 1's
/// HELLO. Each must end in REFUSED; an AUTHOK or a WELCOME without a challenge is an
/// intrusion and fails the soak (and the real router, which keeps its link, would
/// see BYE "replaced").
struct Attacker: Sendable {
    let victims: [String]
    let secrets: [String: [UInt8]]
    let address: SocketAddress
    let loop: EventLoop
    let interval: Duration
    let stats: SoakStats

    enum Attack: CaseIterable { case wrongSecret, replayedProof, stolenHello }

    func run() async {
        var round = 0
        var recorded: (id: String, proof: [UInt8])?
        while !stats.isStopping, !victims.isEmpty {
            try? await Task.sleep(for: interval)
            let victim = victims[round % victims.count]
            let attack = Attack.allCases[round % Attack.allCases.count]
            round += 1
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
        }
        switch verdict {
        case .refused?:
            stats.update { $0.attacksRefused += 1 }
        case .authOK?, .welcome?:
            stats.fail("attacker (\(attack)) got in as \(victim)") { $0.intrusions += 1 }
        default:
            break
        }
        await connection.close(flush: false)
    }
}
