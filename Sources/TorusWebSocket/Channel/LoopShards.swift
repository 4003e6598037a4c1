import Torus

/// One loop's part of a channel's subscribers or a registry's connections: the value
/// of a `Torus.LoopShards` shard, touched only on that loop's thread. A connection
/// that joins also records the set (its membership), so closing leaves every set.
final class WebSocketMembers: WebSocketMembership {
    /// Loop thread only.
    var members: [ObjectIdentifier: WebSocketConnection] = [:]

    /// Adds `ws` (on `ws`'s loop, which is this part's).
    func add(_ ws: WebSocketConnection) {
        guard ws.closeInfo == nil else { return }
        members[ObjectIdentifier(ws)] = ws
        ws.joined(self)
    }

    func remove(_ ws: WebSocketConnection) {
        members[ObjectIdentifier(ws)] = nil
        ws.left(self)
    }
}

/// WebSocket connections split by loop (see `Torus.LoopShards`).
typealias WebSocketShards = LoopShards<WebSocketMembers>

extension LoopShards where Value == WebSocketMembers {
    convenience init() { self.init { WebSocketMembers() } }

    /// Total members, counted on each loop.
    func count() async -> Int { await sum { $0.value.members.count } }
}
