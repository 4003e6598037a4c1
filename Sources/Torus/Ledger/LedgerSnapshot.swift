import CLiburing
/// Counters for one operation kind.
public struct OperationCounters: Sendable, Equatable, Codable {
    /// SQEs prepared for the kernel.
    public var submitted: Int = 0
    /// Final CQEs received (a multishot counts once, when it ends).
    public var completed: Int = 0
    /// Cancel requests issued against operations of this kind.
    public var cancelled: Int = 0
    /// Operations whose owner gave up and that still wait for their final CQE.
    public var parked: Int = 0
    /// Submitted but not yet finally completed: owned by the kernel.
    /// Wrapping arithmetic here and in `+`: a live ledger never nears 2^63 events, and
    /// a snapshot decoded from elsewhere (a peer's `/debug/ledger`) must not trap.
    public var inFlight: Int { submitted &- completed }

    public init() {}

    public static func + (a: Self, b: Self) -> Self {
        var r = a
        r.submitted &+= b.submitted
        r.completed &+= b.completed
        r.cancelled &+= b.cancelled
        r.parked &+= b.parked
        return r
    }
}

/// Where the buffers of one pool are, at one moment. Every buffer is in exactly one place.
public struct BufferCounters: Sendable, Equatable, Codable {
    /// Free, in the pool (for the provided ring: posted to the kernel, not yet filled).
    public var pool: Int = 0
    /// Handed to application code (a handler holding received bytes, queued writes).
    public var application: Int = 0
    /// Inside an in-flight operation.
    public var kernel: Int = 0
    /// Bytes ever allocated for this pool (grows only when the pool grows).
    public var capacity: Int = 0

    public init() {}

    /// Wrapping, like `OperationCounters`: a decoded snapshot must not trap.
    public var total: Int { pool &+ application &+ kernel }

    public static func + (a: Self, b: Self) -> Self {
        var r = a
        r.pool &+= b.pool
        r.application &+= b.application
        r.kernel &+= b.kernel
        r.capacity &+= b.capacity
        return r
    }
}

/// The buffer pools the ledger tracks.
public enum BufferPoolKind: Int, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// The provided buffer ring that multishot receives fill.
    case received
    /// Chunks that hold outbound bytes (write queues, file reads).
    case outbound
    /// Buffers a connection transform (TLS) fills with plaintext and lends to a
    /// handler for one `received` call.
    case tlsPlaintext

    public var description: String {
        switch self {
        case .received: "received"
        case .outbound: "outbound"
        case .tlsPlaintext: "tls_plaintext"
        }
    }
}

/// A consistent copy of one or more loops' ledgers.
///
/// Taken on the loop thread (or after the loop has stopped), so every counter is from
/// the same instant. Sendable: pass it anywhere, print it, encode it as JSON.
public struct LedgerSnapshot: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Indexed by `OperationKind.rawValue`.
    public var operations: [OperationCounters]
    /// Indexed by `BufferPoolKind.rawValue`.
    public var buffers: [BufferCounters]
    /// Open connections (TCP and Unix) and listeners.
    public var connections: Int
    public var listeners: Int
    /// Times the CQ overflowed, submits that met -EBUSY, receives that met -ENOBUFS.
    public var cqOverflows: Int
    public var busySubmits: Int
    public var noBufferReceives: Int
    /// Accepts that failed for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    public var acceptErrors: Int
    /// SQEs kept aside because the SQ was full and the kernel refused to take more
    /// (`-EBUSY`); each went to the ring after the next reap.
    public var deferredSubmissions: Int
    /// `io_uring_enter` failures other than the expected ones (`EINTR`, `ETIME`,
    /// `EAGAIN`, `EBUSY`): logged and survived.
    public var submitErrors: Int
    /// CQEs whose `user_data` named no live operation (a kernel bug if ever non-zero).
    public var staleCompletions: Int
    /// Receive-buffer growths that failed (registration refused): receives go on
    /// with the buffers there are.
    public var receiveGrowthFailures: Int
    /// Connections closed because their write queue exceeded
    /// `SocketOptions.maxQueuedBytes` (peers that did not read what they were sent).
    public var queueLimitCloses: Int
    /// Owners (connections) whose deadlines the loop checked: one per owner each time
    /// its earliest deadline came due (see `EventLoop.deadlineResolution`), so an idle
    /// connection with a 60 s timeout adds about one a minute.
    public var deadlineChecks: Int
    /// Receives that met a dry receive ring at its bound and waited for buffers
    /// instead of re-arming at once (see `EventLoop.receiveRetryDelay`).
    public var receiveWaits: Int
    /// Slots of the loops' registered file tables held for sockets (installing,
    /// installed, or being cleared): 0 once every connection has closed, since a
    /// socket whose slot is never cleared stays open after its descriptor is closed.
    public var directDescriptors: Int
    /// Connections that named their descriptor instead of a slot although the loop
    /// has a table: the table was full, or the kernel refused the install.
    public var plainDescriptorFallbacks: Int
    /// Debug builds: who holds each buffer that is away from its pool.
    public var holders: [String]

    public init() {
        operations = Array(repeating: OperationCounters(), count: OperationKind.allCases.count)
        buffers = Array(repeating: BufferCounters(), count: BufferPoolKind.allCases.count)
        connections = 0
        listeners = 0
        cqOverflows = 0
        busySubmits = 0
        noBufferReceives = 0
        acceptErrors = 0
        deferredSubmissions = 0
        submitErrors = 0
        staleCompletions = 0
        receiveGrowthFailures = 0
        queueLimitCloses = 0
        deadlineChecks = 0
        receiveWaits = 0
        directDescriptors = 0
        plainDescriptorFallbacks = 0
        holders = []
    }

    /// Decodes a snapshot (as `JSONEncoder` wrote it), possibly from another version
    /// or another process: the per-kind and per-pool arrays are padded with zeros or
    /// cut to this version's kinds, so the subscripts and `+` never index past them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func fitted<T>(_ array: [T], _ count: Int, _ zero: T) -> [T] {
            array.count >= count ? Array(array.prefix(count))
                : array + Array(repeating: zero, count: count - array.count)
        }
        operations = fitted(try c.decode([OperationCounters].self, forKey: .operations),
                            OperationKind.allCases.count, OperationCounters())
        buffers = fitted(try c.decode([BufferCounters].self, forKey: .buffers),
                         BufferPoolKind.allCases.count, BufferCounters())
        connections = try c.decode(Int.self, forKey: .connections)
        listeners = try c.decode(Int.self, forKey: .listeners)
        cqOverflows = try c.decode(Int.self, forKey: .cqOverflows)
        busySubmits = try c.decode(Int.self, forKey: .busySubmits)
        noBufferReceives = try c.decode(Int.self, forKey: .noBufferReceives)
        acceptErrors = try c.decode(Int.self, forKey: .acceptErrors)
        deferredSubmissions = try c.decode(Int.self, forKey: .deferredSubmissions)
        submitErrors = try c.decode(Int.self, forKey: .submitErrors)
        staleCompletions = try c.decode(Int.self, forKey: .staleCompletions)
        receiveGrowthFailures = try c.decode(Int.self, forKey: .receiveGrowthFailures)
        queueLimitCloses = try c.decode(Int.self, forKey: .queueLimitCloses)
        // Newer than the rest: a snapshot written before it decodes with 0.
        deadlineChecks = try c.decodeIfPresent(Int.self, forKey: .deadlineChecks) ?? 0
        receiveWaits = try c.decodeIfPresent(Int.self, forKey: .receiveWaits) ?? 0
        directDescriptors = try c.decodeIfPresent(Int.self, forKey: .directDescriptors) ?? 0
        plainDescriptorFallbacks = try c.decodeIfPresent(Int.self, forKey: .plainDescriptorFallbacks) ?? 0
        holders = try c.decode([String].self, forKey: .holders)
    }

    /// Indices from the enums' raw values: within the arrays, which `init()` sizes by
    /// `allCases` and decoding fits (only application code assigning shorter arrays
    /// to these public vars could make them fail; never bytes from a peer).
    public subscript(kind: OperationKind) -> OperationCounters { operations[kind.rawValue] }
    public subscript(pool: BufferPoolKind) -> BufferCounters { buffers[pool.rawValue] }

    /// Operations owned by the kernel right now, all kinds.
    public var inFlight: Int { operations.reduce(0) { $0 &+ $1.inFlight } }
    public var parked: Int { operations.reduce(0) { $0 &+ $1.parked } }
    /// Buffers away from their pools (application + kernel), all pools.
    public var buffersOut: Int { buffers.reduce(0) { $0 &+ $1.application &+ $1.kernel } }

    /// Nothing in flight, nothing parked, every buffer home, no connection open, no
    /// slot of a registered file table holding a socket.
    public var isQuiescent: Bool {
        inFlight == 0 && parked == 0 && buffersOut == 0 && connections == 0 && listeners == 0
            && directDescriptors == 0
    }

    /// Sums snapshots of several loops.
    public static func + (a: Self, b: Self) -> Self {
        var r = a
        // `operations` and `buffers` are public vars: sum only the indices both have.
        for i in r.operations.indices where i < b.operations.count { r.operations[i] = a.operations[i] + b.operations[i] }
        for i in r.buffers.indices where i < b.buffers.count { r.buffers[i] = a.buffers[i] + b.buffers[i] }
        r.connections &+= b.connections
        r.listeners &+= b.listeners
        r.cqOverflows &+= b.cqOverflows
        r.busySubmits &+= b.busySubmits
        r.noBufferReceives &+= b.noBufferReceives
        r.acceptErrors &+= b.acceptErrors
        r.deferredSubmissions &+= b.deferredSubmissions
        r.submitErrors &+= b.submitErrors
        r.staleCompletions &+= b.staleCompletions
        r.receiveGrowthFailures &+= b.receiveGrowthFailures
        r.queueLimitCloses &+= b.queueLimitCloses
        r.deadlineChecks &+= b.deadlineChecks
        r.receiveWaits &+= b.receiveWaits
        r.directDescriptors &+= b.directDescriptors
        r.plainDescriptorFallbacks &+= b.plainDescriptorFallbacks
        r.holders += b.holders
        return r
    }

    /// A human-readable table: one line per operation kind that was used, one per pool.
    public var description: String {
        var lines = ["ledger: \(isQuiescent ? "quiescent" : "NOT quiescent") — in flight \(inFlight), parked \(parked), buffers out \(buffersOut), connections \(connections), listeners \(listeners), direct descriptors \(directDescriptors)"]
        lines.append("  operation        submitted  completed  cancelled  in-flight  parked")
        for kind in OperationKind.allCases {
            let c = self[kind]
            guard c.submitted > 0 || c.parked > 0 else { continue }
            lines.append("  " + pad(kind.description, 15) + num(c.submitted) + num(c.completed)
                         + num(c.cancelled) + num(c.inFlight) + num(c.parked, 8))
        }
        lines.append("  buffers          pool       application kernel    capacity")
        for pool in BufferPoolKind.allCases {
            let b = self[pool]
            lines.append("  " + pad(pool.description, 15) + num(b.pool) + num(b.application)
                         + num(b.kernel) + num(b.capacity))
        }
        lines.append("  events: cq overflows \(cqOverflows), busy submits \(busySubmits), ENOBUFS receives \(noBufferReceives), accept errors \(acceptErrors), deferred submissions \(deferredSubmissions), submit errors \(submitErrors), stale completions \(staleCompletions), receive growth failures \(receiveGrowthFailures), write queue limit closes \(queueLimitCloses), deadline checks \(deadlineChecks), receive waits \(receiveWaits), plain descriptor fallbacks \(plainDescriptorFallbacks)")
        for h in holders.prefix(20) { lines.append("  held: \(h)") }
        return lines.joined(separator: "\n")
    }

    private func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
    }
    private func num(_ v: Int, _ w: Int = 11) -> String {
        let s = String(v)
        return String(repeating: " ", count: Swift.max(1, w - s.count)) + s
    }
}
