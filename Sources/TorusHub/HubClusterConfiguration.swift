import Torus
import TorusRedis

/// Settings of a hub that is one node of a cluster sharing routers, commands and
/// events through Redis (see `HubCluster`). A plain value.
public struct HubClusterConfiguration: Sendable {
    /// Where the cluster's Redis is: one server, or a Redis Cluster.
    public enum Deployment: Sendable, Equatable {
        /// One Redis server (or a primary behind a fixed address).
        case server(SocketAddress)
        /// A Redis Cluster, found through any of these nodes: keys go to the master
        /// serving their slot, and the channels are sharded (`SPUBLISH`/`SSUBSCRIBE`).
        case cluster(seeds: [SocketAddress])
    }

    /// The Redis every node of the cluster uses.
    public var deployment: Deployment
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`, `.`; at
    /// most 64 bytes). It names the node's channel and its keys.
    public var nodeID: String
    /// How long a router's attachment to this node lives in Redis without renewal:
    /// when the node dies, its routers are free (and vanish from every node's
    /// `/devices`) within this long. Renewed at a third of it.
    public var leaseTime: Duration = .seconds(15)
    /// Prefix of every key and channel, so clusters (or tests) can share a Redis.
    public var keyPrefix = "torus:hub:"
    /// Events on their way to Redis (handed to the home loop, `PUBLISH` not yet
    /// confirmed). At this many, router links that send events stop reading until
    /// half of them are confirmed (backpressure: routers wait in their TCP buffers,
    /// nothing is dropped); only what held links had already read may go beyond, up
    /// to 64 Ki more, after which events are dropped and counted. Large enough that a
    /// burst does not stall routers: one turn of a busy loop reads thousands of events
    /// before the first confirmation can come back (64 Ki events of 100 bytes: about
    /// 6 MiB).
    public var maxEventsInFlight = 65536
    /// How many channels the events travel on (`PREFIX events`, then
    /// `PREFIX events:1` …): a router's events always take the same one (a hash of
    /// its id), so they keep their order, and every node listens to all. On a Redis
    /// Cluster each channel is a shard channel on the master serving its slot, so
    /// more channels spread the event traffic over the masters (default 16); on one
    /// server they change nothing (default 1). Every node of a cluster must use the
    /// same number.
    public var eventChannels: Int

    /// Cross-node commands waiting for their node's answer at once (more: 503).
    public var maxRemoteCommands = 4096
    /// How much longer than the command's own timeout a node waits for the owning
    /// node's answer before it answers 503 (the owning node answers 504 itself when
    /// the router is late).
    public var replyGrace: Duration = .seconds(2)
    /// The Redis connections' settings (password, database, timeouts).
    public var redisConfiguration = RedisConfiguration()
    /// How the Redis connections come back after Redis goes away.
    public var backoff = RedisClient.Backoff()

    /// A node of a cluster on one Redis server.
    public init(redis: SocketAddress, nodeID: String) {
        self.init(deployment: .server(redis), nodeID: nodeID)
    }

    /// A node of a cluster on a Redis Cluster (found through `seeds`).
    public init(redisCluster seeds: [SocketAddress], nodeID: String) {
        self.init(deployment: .cluster(seeds: seeds), nodeID: nodeID)
    }

    public init(deployment: Deployment, nodeID: String) {
        self.deployment = deployment
        self.nodeID = nodeID
        if case .cluster = deployment { eventChannels = 16 } else { eventChannels = 1 }
        redisConfiguration.commandTimeout = .seconds(2)
        redisConfiguration.connectTimeout = .seconds(2)
        backoff.maximum = .seconds(2)
    }

    /// Whether `id` may name a node.
    public static func isValidNodeID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                true
            default:
                false
            }
        }
    }
}

/// The keys and channels of one cluster (`keyPrefix` applied). A plain value.
struct ClusterKeys: Sendable {
    let prefix: String

    /// `PREFIX router:ID` → the owning node, with the lease's expiry.
    func lease(_ router: String) -> String { prefix + "router:" + router }
    /// `PREFIX node:NODE:routers`: hash router → its description, expiring with the
    /// node's leases (what `/devices` on other nodes lists).
    func routers(of node: String) -> String { prefix + "node:" + node + ":routers" }
    /// `PREFIX nodes`: the set of node names that have announced themselves.
    var nodes: String { prefix + "nodes" }
    /// `PREFIX events`: every router event, once, from the node its router is on.
    var events: String { prefix + "events" }
    /// Event channel `shard` (0: `events`, then `events:1` …).
    func events(shard: Int) -> String { shard == 0 ? events : events + ":" + String(shard) }
    /// `PREFIX node:NODE`: commands, replies and takeovers meant for one node.
    func channel(of node: String) -> String { prefix + "node:" + node }
}
