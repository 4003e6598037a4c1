import Foundation
import TorusHub

/// The credentials every hub in these tests is started with: a random secret per
/// router id the tests use, generated once per test process.
enum TestCredentials {
    static let ids = ["r1", "r2", "r3", "mute", "flaky", "alive", "silent", "big", "x1", "logged", "victim", "other"]

    /// API tokens of the tests (random per process), each with its grant in `store`.
    static let admin = HubCredentials.newToken()
    /// Reads r1 only.
    static let readR1 = HubCredentials.newToken()
    /// Reads and commands r1 only.
    static let commandR1 = HubCredentials.newToken()
    /// Reads every router, commands none.
    static let readAll = HubCredentials.newToken()

    static let grants: [String: HubCredentials.TokenGrant] = [
        admin.hash: .init(routers: nil, rights: ["admin"]),
        readR1.hash: .init(routers: ["r1"], rights: ["read"]),
        commandR1.hash: .init(routers: ["r1"], rights: ["read", "command"]),
        readAll.hash: .init(routers: nil, rights: ["read"]),
    ]

    static let store = HubCredentials(routers: Dictionary(uniqueKeysWithValues: ids.map { ($0, HubCredentials.newSecret()) }),
                                      tokens: grants)

    /// The admin token: what the tests' HTTP and WebSocket clients send by default.
    static var adminToken: String { admin.token }

    /// The secret of a router in `store` (an empty one for an id it does not hold,
    /// which the hub then refuses).
    static func secret(_ id: String) -> [UInt8] { store.routers[id] ?? [] }

    /// Writes `store` (or `credentials`) to a fresh temporary credential file (mode
    /// 0600) for a hub started as a process; returns its path.
    static func writeFile(_ credentials: HubCredentials = store) throws -> String {
        let path = NSTemporaryDirectory() + "torus-hub-credentials-\(UUID().uuidString).json"
        try credentials.write(path: path, exclusive: true)
        return path
    }
}
