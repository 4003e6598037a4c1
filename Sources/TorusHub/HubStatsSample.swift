import Torus

/// One sample of the hub's vital signs, as the `/web` stats feed sends it: memory
/// (the same sources as `/metrics`: RSS from `/proc`, the allocator's heap), the
/// summed ledger of every loop (connections, operations in flight and parked,
/// buffers away from their pools by pool and owner), routers, `/web` clients and
/// the events so far. A plain value.
public struct HubStatsSample: Sendable, Equatable {
    /// Wall clock, seconds since the Unix epoch.
    public var time: Double
    public var residentBytes: Int
    public var heapInUseBytes: Int
    public var heapReservedBytes: Int
    public var connections: Int
    public var inFlight: Int
    public var parked: Int
    /// Buffers out of their pool, by pool: (handed to application code, inside an
    /// operation the kernel holds), indexed by `BufferPoolKind.rawValue`.
    public var buffersOut: [(application: Int, kernel: Int)]
    public var routers: Int
    public var webClients: Int
    /// Events published since the hub started (this node's and, in a cluster,
    /// those relayed from other nodes).
    public var events: UInt64

    public init(time: Double, residentBytes: Int, heapInUseBytes: Int, heapReservedBytes: Int,
                ledger: LedgerSnapshot, routers: Int, webClients: Int, events: UInt64) {
        self.time = time
        self.residentBytes = residentBytes
        self.heapInUseBytes = heapInUseBytes
        self.heapReservedBytes = heapReservedBytes
        connections = ledger.connections
        inFlight = ledger.inFlight
        parked = ledger.parked
        buffersOut = BufferPoolKind.allCases.map { (ledger[$0].application, ledger[$0].kernel) }
        self.routers = routers
        self.webClients = webClients
        self.events = events
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.json == b.json
    }

    /// The sample as a JSON object:
    /// `{"t":1712345678.25,"rss":…,"heap":…,"heap_reserved":…,"connections":…,`
    /// `"in_flight":…,"parked":…,"buffers_out":{"received":{"application":…,"kernel":…},`
    /// `"outbound":{…},"tls_plaintext":{…}},"routers":…,"web_clients":…,"events":…}`.
    public var json: String {
        var pools: [String] = []
        for kind in BufferPoolKind.allCases where kind.rawValue < buffersOut.count {
            let b = buffersOut[kind.rawValue]
            pools.append(#""\#(kind)":{"application":\#(b.application),"kernel":\#(b.kernel)}"#)
        }
        // Milliseconds: enough for a chart, and no exponent in the output.
        let millis = Int64((time * 1000).rounded())
        let seconds = "\(millis / 1000).\(String(repeating: "0", count: 3 - String(millis % 1000).count))\(millis % 1000)"
        return #"{"t":\#(seconds),"rss":\#(residentBytes),"heap":\#(heapInUseBytes),"#
            + #""heap_reserved":\#(heapReservedBytes),"connections":\#(connections),"#
            + #""in_flight":\#(inFlight),"parked":\#(parked),"buffers_out":{\#(pools.joined(separator: ","))},"#
            + #""routers":\#(routers),"web_clients":\#(webClients),"events":\#(events)}"#
    }

    /// The periodic `/web` message: `{"stats":SAMPLE}`.
    public var message: String { #"{"stats":"# + json + "}" }

    /// The history a `/web` client gets when it asks for the stats feed:
    /// `{"stats_history":[SAMPLE,…]}`, oldest first.
    public static func historyMessage(_ samples: some Sequence<HubStatsSample>) -> String {
        #"{"stats_history":["# + samples.map(\.json).joined(separator: ",") + "]}"
    }
}
