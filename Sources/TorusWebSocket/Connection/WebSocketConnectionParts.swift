import Torus
import TorusHTTP

// The parts of a `WebSocketConnection` that an idle, open connection usually does not
// need, each allocated only when it is: an idle connection keeps a reference (or nil)
// instead of the fields themselves. Loop thread only, like the connection.

/// What the handshake negotiated beyond the defaults: a subprotocol, or
/// permessage-deflate with our compressor and its output buffer. Made only when
/// either was agreed.
///
/// The compressor (a zlib deflate stream: its window and hash tables are the largest
/// per-connection state there is) is made at the first message we compress, so a
/// connection that only listens, or sends only messages under the compression
/// threshold, never has one. Once made it stays: with context takeover its window
/// must survive between messages, and even under our `no_context_takeover` a stream
/// made per message would cost a zlib init (and its large allocation) per message.
final class WebSocketNegotiated {
    let subprotocol: String?
    let deflate: PerMessageDeflateAgreement?
    let role: WebSocketRole
    private var madeCompressor: PerMessageDeflateCompressor?
    /// Compressed output on its way to a frame.
    var compressed: [UInt8] = []

    init(subprotocol: String?, deflate: PerMessageDeflateAgreement?, role: WebSocketRole) {
        self.subprotocol = subprotocol
        self.deflate = deflate
        self.role = role
    }

    /// Whether the compressor has been made (tests).
    var hasCompressor: Bool { madeCompressor != nil }

    /// Our compressor, made on first use; nil without permessage-deflate.
    var compressor: PerMessageDeflateCompressor? {
        if let madeCompressor { return madeCompressor }
        guard let deflate else { return nil }
        let made = deflate.makeCompressor(role: role)
        madeCompressor = made
        return made
    }
}

/// A server-side connection's upgrade: the request, and the callback that runs
/// once the WebSocket phase starts. Held from the handshake until that callback has
/// run, then only when the route keeps the request
/// (`WebSocketServerConfiguration.keepsUpgradeRequest`).
final class WebSocketUpgradeState {
    let head: RequestHead?
    var onUpgrade: ((WebSocketConnection) -> Void)?

    init(head: RequestHead?, onUpgrade: ((WebSocketConnection) -> Void)?) {
        self.head = head
        self.onUpgrade = onUpgrade
    }
}

/// The closing handshake's record: codes and reason both ways, why we failed the
/// connection, the close timer, and how it ended. Made when closing starts (or when
/// the connection fails or ends).
final class WebSocketClosing {
    var sentCode: CloseCode?
    var receivedCode: CloseCode?
    var receivedReason = ""
    var failure: (any Error)?
    var closeTimer: Timer?
    /// Set once the socket is released.
    var info: WebSocketCloseInfo?
}

/// The async face: the inbox of messages no callback took, whether it paused reading,
/// and the tasks waiting to send or for the close. Made on the loop at the first
/// message that goes to it or the first async call.
final class WebSocketAsyncFace {
    let inbox: Inbox<WebSocketMessage>
    var pausedForInbox = false
    var writers: [CheckedContinuation<Void, any Error>] = []
    var closers: [CheckedContinuation<Void, Never>] = []

    init(inbox: Inbox<WebSocketMessage>) {
        self.inbox = inbox
    }
}

/// The sets (registry, channels) a connection is in: almost always none or one, kept
/// inline; more spill into an array.
enum WebSocketMemberships {
    case none
    case one(any WebSocketMembership)
    case many([any WebSocketMembership])

    func contains(_ set: any WebSocketMembership) -> Bool {
        switch self {
        case .none: false
        case .one(let m): m === set
        case .many(let all): all.contains { $0 === set }
        }
    }

    mutating func insert(_ set: any WebSocketMembership) {
        guard !contains(set) else { return }
        switch self {
        case .none: self = .one(set)
        case .one(let m): self = .many([m, set])
        case .many(var all):
            self = .none
            all.append(set)
            self = .many(all)
        }
    }

    mutating func remove(_ set: any WebSocketMembership) {
        switch self {
        case .none: break
        case .one(let m): if m === set { self = .none }
        case .many(var all):
            self = .none
            all.removeAll { $0 === set }
            self = all.count == 1 ? .one(all[0]) : (all.isEmpty ? .none : .many(all))
        }
    }

    /// Empties the record, returning what it held.
    mutating func removeAll() -> [any WebSocketMembership] {
        defer { self = .none }
        switch self {
        case .none: return []
        case .one(let m): return [m]
        case .many(let all): return all
        }
    }
}
