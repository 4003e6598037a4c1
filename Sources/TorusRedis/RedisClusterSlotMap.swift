import Torus

/// Which master serves each of a Redis Cluster's 16,384 slots: what a
/// `RedisClusterClient` routes by. Read from `CLUSTER SHARDS` (Redis 7) or
/// `CLUSTER SLOTS`; one entry changes on a `-MOVED`.
///
/// A plain value; `Sendable`.
public struct RedisClusterSlotMap: Sendable, Equatable {
    /// One master of the cluster.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        /// Where it takes commands.
        public var address: SocketAddress
        /// Its node id (nil when a `-MOVED` named it and no map was read since).
        public var id: String?

        public init(address: SocketAddress, id: String? = nil) {
            self.address = address
            self.id = id
        }

        public var description: String { id.map { "\(address) (\($0.prefix(8)))" } ?? "\(address)" }
    }

    /// The masters, each once, in the order first seen.
    public private(set) var masters: [Node] = []
    /// Per slot, the index of its master in `masters`; `unassigned` when none.
    private var owners: [UInt16]
    /// Each master's index in `masters`, by address.
    private var indexByAddress: [SocketAddress: UInt16] = [:]
    private static let unassigned = UInt16.max

    /// An empty map: no slot is served.
    public init() {
        owners = [UInt16](repeating: Self.unassigned, count: RedisClusterSlot.count)
    }

    /// The master serving `slot`, when one does.
    public func master(forSlot slot: Int) -> Node? {
        guard slot >= 0, slot < RedisClusterSlot.count else { return nil }
        let owner = owners[slot]
        return owner == Self.unassigned ? nil : masters[Int(owner)]
    }

    /// The address of the master serving `slot`.
    public func address(forSlot slot: Int) -> SocketAddress? { master(forSlot: slot)?.address }

    /// How many slots have a master.
    public var assignedSlots: Int { owners.lazy.filter { $0 != Self.unassigned }.count }

    /// The slots `address` serves.
    public func slots(servedBy address: SocketAddress) -> [Int] {
        guard let index = indexByAddress[address] else { return [] }
        return owners.indices.filter { owners[$0] == index }
    }

    /// Makes `address` the master of `slot` (a `-MOVED` said so).
    public mutating func assign(slot: Int, to address: SocketAddress) {
        guard slot >= 0, slot < RedisClusterSlot.count else { return }
        owners[slot] = index(of: Node(address: address))
    }

    /// Makes `node` the master of `range`.
    mutating func assign(_ range: ClosedRange<Int>, to node: Node) {
        let index = index(of: node)
        for slot in range { owners[slot] = index }
    }

    private mutating func index(of node: Node) -> UInt16 {
        if let found = indexByAddress[node.address] {
            if masters[Int(found)].id == nil { masters[Int(found)].id = node.id }
            return found
        }
        // Masters that lost all their slots stay listed until the next read; bound
        // the list (so the index fits its UInt16) however many a server names.
        if masters.count >= 2 * RedisClusterSlot.count { dropMastersWithoutSlots() }
        masters.append(node)
        // Not from input: at most 2 × 16,384 masters after the bound above, so the index fits.
        let index = UInt16(masters.count - 1)
        indexByAddress[node.address] = index
        return index
    }

    /// Keeps only the masters that serve a slot (at most 16,384, so the list then
    /// grows to 32,768 again before the next pass).
    private mutating func dropMastersWithoutSlots() {
        var serving = [Bool](repeating: false, count: masters.count)
        for owner in owners where owner != Self.unassigned { serving[Int(owner)] = true }
        var renumbered = [UInt16](repeating: Self.unassigned, count: masters.count)
        var kept: [Node] = []
        for (i, node) in masters.enumerated() where serving[i] {
            renumbered[i] = UInt16(kept.count)
            kept.append(node)
        }
        masters = kept
        indexByAddress = [:]
        for (i, node) in kept.enumerated() { indexByAddress[node.address] = UInt16(i) }
        for slot in owners.indices where owners[slot] != Self.unassigned {
            owners[slot] = renumbered[Int(owners[slot])]
        }
    }

    // MARK: Reading the server's map

    /// The map in a `CLUSTER SHARDS` reply (RESP3 maps or RESP2 flat arrays). A
    /// node's `endpoint` is used (its `ip` when the endpoint is unknown, `host` when
    /// both are). A reply that is not that shape throws `RedisError.clusterMap`.
    public static func parse(shards reply: RESPValue, host: String) throws(RedisError) -> RedisClusterSlotMap {
        guard let shards = reply.elements else { throw .clusterMap("CLUSTER SHARDS: not an array") }
        var map = RedisClusterSlotMap()
        for shard in shards {
            let fields = try Self.fields(shard, "shard")
            guard let slots = fields["slots"]?.elements, slots.count % 2 == 0 else {
                throw .clusterMap("CLUSTER SHARDS: a shard without a slots list of pairs")
            }
            guard let nodes = fields["nodes"]?.elements else { throw .clusterMap("CLUSTER SHARDS: a shard without nodes") }
            var master: Node?
            for node in nodes {
                let fields = try Self.fields(node, "node")
                guard fields["role"]?.string == "master" else { continue }
                guard let port = fields["port"]?.integer, let port = UInt16(exactly: port), port > 0 else {
                    throw .clusterMap("CLUSTER SHARDS: a master without a port")
                }
                let endpoint = [fields["endpoint"]?.string, fields["ip"]?.string]
                    .compactMap { $0 }.first { !$0.isEmpty && $0 != "?" } ?? host
                master = Node(address: try address(endpoint, port), id: fields["id"]?.string)
            }
            guard !slots.isEmpty else { continue }
            guard let master else { throw .clusterMap("CLUSTER SHARDS: a shard with slots and no master") }
            var i = 0
            while i < slots.count {
                map.assign(try range(slots[i], slots[i + 1]), to: master)
                i += 2
            }
        }
        return map
    }

    /// The map in a `CLUSTER SLOTS` reply (Redis 3 to 6): `[start, end, [host, port,
    /// id, …], replicas…]` per range. `host` stands in for an empty or `?` host.
    public static func parse(slots reply: RESPValue, host: String) throws(RedisError) -> RedisClusterSlotMap {
        guard let ranges = reply.elements else { throw .clusterMap("CLUSTER SLOTS: not an array") }
        var map = RedisClusterSlotMap()
        for entry in ranges {
            guard let parts = entry.elements, parts.count >= 3, let master = parts[2].elements, master.count >= 2 else {
                throw .clusterMap("CLUSTER SLOTS: a range without its master")
            }
            guard let port = master[1].integer, let port = UInt16(exactly: port), port > 0 else {
                throw .clusterMap("CLUSTER SLOTS: a master without a port")
            }
            let named = master[0].string ?? ""
            let node = Node(address: try address(named.isEmpty || named == "?" ? host : named, port),
                            id: master.count > 2 ? master[2].string : nil)
            map.assign(try range(parts[0], parts[1]), to: node)
        }
        return map
    }

    /// A node's address from the text a server gives ("127.0.0.1", "::1").
    static func address(_ host: String, _ port: UInt16) throws(RedisError) -> SocketAddress {
        do {
            return try SocketAddress.tcp(host, port)
        } catch {
            throw .clusterMap("not a numeric address: \(host) (give nodes an IP endpoint)")
        }
    }

    private static func range(_ start: RESPValue, _ end: RESPValue) throws(RedisError) -> ClosedRange<Int> {
        guard let start = start.integer, let end = end.integer, start >= 0, start <= end,
              end < Int64(RedisClusterSlot.count) else {
            throw .clusterMap("a slot range out of 0...16383")
        }
        return Int(start)...Int(end)
    }

    /// A RESP3 map, or a RESP2 array of alternating names and values, by name.
    private static func fields(_ value: RESPValue, _ what: String) throws(RedisError) -> [String: RESPValue] {
        var fields: [String: RESPValue] = [:]
        switch value {
        case .map(let pairs):
            for pair in pairs {
                guard let name = pair.key.string else { throw .clusterMap("a \(what) field without a name") }
                fields[name] = pair.value
            }
        case .array(let items) where items.count % 2 == 0:
            var i = 0
            while i < items.count {
                guard let name = items[i].string else { throw .clusterMap("a \(what) field without a name") }
                fields[name] = items[i + 1]
                i += 2
            }
        default:
            throw .clusterMap("a \(what) that is not a map")
        }
        return fields
    }
}

/// A `-MOVED slot host:port` or `-ASK slot host:port` error reply, read.
struct RedisClusterRedirect: Equatable {
    enum Kind { case moved, ask }
    let kind: Kind
    let slot: Int
    let address: SocketAddress

    /// Nil when `message` is not a well-formed redirect. An empty host means the
    /// host of the node that answered (`from`).
    init?(_ message: String, from: SocketAddress) {
        let parts = message.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3 else { return nil }
        switch parts[0] {
        case "MOVED": kind = .moved
        case "ASK": kind = .ask
        default: return nil
        }
        guard let slot = Int(parts[1]), slot >= 0, slot < RedisClusterSlot.count,
              let colon = parts[2].lastIndex(of: ":"), let port = UInt16(parts[2][parts[2].index(after: colon)...]),
              port > 0 else { return nil }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let address = try? SocketAddress.tcp(host.isEmpty ? from.host : host, port) else { return nil }
        self.slot = slot
        self.address = address
    }
}
