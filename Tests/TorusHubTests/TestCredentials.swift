import Foundation
import TorusHub

/// The credentials every hub in these tests is started with: a random secret per
/// router id the tests use, generated once per test process.
enum TestCredentials {
    static let ids = ["r1", "r2", "r3", "mute", "flaky", "alive", "silent", "big", "x1", "logged", "victim", "other"]

    static let store = HubCredentials(routers: Dictionary(uniqueKeysWithValues: ids.map { ($0, HubCredentials.newSecret()) }))

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
