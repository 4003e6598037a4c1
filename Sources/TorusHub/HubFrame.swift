/// The router protocol's frames (see the README's "torus-hub router protocol").
///
/// On the wire a frame is a 4-byte big-endian length `L`, then `L` bytes: one type
/// byte and `L - 1` bytes of payload. `L` counts the type byte, so `L >= 1`, and it
/// may not exceed the receiver's frame limit.
///
/// A plain value type; encoding and decoding never touch a loop.
public enum HubFrame: Sendable, Equatable {
    /// Router → hub, first frame: the protocol version and the router's id (1–64
    /// bytes of `[A-Za-z0-9._:-]`). Version 2 (the default) puts one version byte
    /// before the id; version 1's payload is the id alone (only accepted by a hub
    /// started with `insecureRouters`).
    case hello(id: String, version: UInt8 = HubFrame.protocolVersion)
    /// Hub → router, answer to HELLO: the heartbeat timeout in milliseconds (a router
    /// sends something, HEARTBEAT if nothing else, at least every third of it) and,
    /// in version 2, the link's challenge: a fresh `nonceSize`-byte nonce.
    case welcome(heartbeatTimeoutMs: UInt32, nonce: [UInt8] = [])
    /// Router → hub (version 2), answer to WELCOME: HMAC-SHA256(secret, nonce ‖ id).
    /// With `confirm` false (one flags byte after the proof, `0x01`) the router does
    /// not wait for AUTHOK and the hub sends none: silence is success, a bad proof still
    /// gets REFUSED and the close. What a router reconnecting in a storm saves: one
    /// message, and the hub one send per handshake.
    case auth(proof: [UInt8], confirm: Bool = true)
    /// Hub → router (version 2): the proof is valid; the router is online (not sent
    /// for an AUTH with `confirm` false).
    case authOK
    /// Hub → router: the hub will not take this link (UTF-8 reason); it closes after it.
    case refused(reason: String)
    /// Router → hub: "still here" (empty payload). Any frame counts as a heartbeat.
    case heartbeat
    /// Router → hub: an event for subscribers (opaque bytes; JSON by convention).
    case event([UInt8])
    /// Hub → router: a command to execute (u32 request id, then the body).
    case command(requestID: UInt32, body: [UInt8])
    /// Router → hub: the answer to a command (u32 request id, then the body).
    case reply(requestID: UInt32, body: [UInt8])
    /// Either side: orderly goodbye with an optional UTF-8 reason; the sender closes
    /// after it.
    case bye(reason: String)

    /// The type byte of each frame.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case hello = 1, welcome = 2, heartbeat = 3, event = 4, command = 5, reply = 6, bye = 7
        case auth = 8, authOK = 9, refused = 10
    }

    public var kind: Kind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .heartbeat: .heartbeat
        case .event: .event
        case .command: .command
        case .reply: .reply
        case .bye: .bye
        case .auth: .auth
        case .authOK: .authOK
        case .refused: .refused
        }
    }

    /// The protocol version this hub and `HubRouterClient` speak.
    public static let protocolVersion: UInt8 = 2
    /// Bytes of WELCOME's nonce.
    public static let nonceSize = 32
    /// Bytes of AUTH's proof (an HMAC-SHA256).
    public static let proofSize = 32
    /// AUTH's optional flags byte after the proof: the only flag, "send no AUTHOK".
    static let authNoConfirm: UInt8 = 0x01

    /// Bytes of the length prefix.
    public static let headerSize = 4
    /// Default limit on `L` (type byte + payload): 1 MiB.
    public static let defaultMaxFrame = 1 << 20
    /// Longest router id.
    public static let maxIDLength = 64

    /// True for an acceptable router id.
    public static func isValidID<S: StringProtocol>(_ id: S) -> Bool {
        let utf8 = id.utf8
        guard !utf8.isEmpty, utf8.count <= maxIDLength else { return false }
        return utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2E || b == 0x5F || b == 0x2D || b == 0x3A
        }
    }

    /// Appends the frame's wire form to `out`.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .hello(let id, let version):
            Self.append(.hello, version <= 1 ? Array(id.utf8) : [version] + Array(id.utf8), into: &out)
        case .welcome(let ms, let nonce): Self.append(.welcome, Self.be32(ms) + nonce, into: &out)
        case .auth(let proof, let confirm): Self.append(.auth, confirm ? proof : proof + [Self.authNoConfirm], into: &out)
        case .authOK: Self.append(.authOK, [], into: &out)
        case .refused(let reason): Self.append(.refused, Array(reason.utf8), into: &out)
        case .heartbeat: Self.append(.heartbeat, [], into: &out)
        case .event(let body): Self.append(.event, body, into: &out)
        case .command(let id, let body): Self.append(.command, Self.be32(id) + body, into: &out)
        case .reply(let id, let body): Self.append(.reply, Self.be32(id) + body, into: &out)
        case .bye(let reason): Self.append(.bye, Array(reason.utf8), into: &out)
        }
    }

    /// The frame's wire form.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    static func append(_ kind: Kind, _ payload: [UInt8], into out: inout [UInt8]) {
        // Not from input: what the hub encodes from received bytes (event bodies,
        // command bodies) is bounded by `maxFrame`; only an application encoding a
        // payload of 4 GiB or more would trap here.
        out += be32(UInt32(payload.count + 1))
        out.append(kind.rawValue)
        out += payload
    }

    static func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func readBE32(_ b: UnsafeRawBufferPointer, at i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    /// Decodes one frame body (type byte + payload, without the length prefix).
    static func decode(_ body: UnsafeRawBufferPointer) throws(HubProtocolError) -> HubFrame {
        guard body.count >= 1 else { throw .emptyFrame }
        guard let kind = Kind(rawValue: body[0]) else { throw .unknownType(body[0]) }
        let payload = UnsafeRawBufferPointer(rebasing: body[1...])
        switch kind {
        case .hello:
            // A leading byte below 0x20 is a version (no id character is that low);
            // without one the frame is version 1's.
            var version: UInt8 = 1
            var idBytes = payload
            if let first = payload.first, first < 0x20 {
                guard first >= 2 else { throw .badPayload(kind) }
                version = first
                idBytes = UnsafeRawBufferPointer(rebasing: payload[1...])
            }
            let id = String(decoding: idBytes, as: UTF8.self)
            guard isValidID(id), id.utf8.elementsEqual(idBytes) else { throw .invalidID }
            return .hello(id: id, version: version)
        case .welcome:
            guard payload.count == 4 || payload.count == 4 + nonceSize else { throw .badPayload(kind) }
            return .welcome(heartbeatTimeoutMs: readBE32(payload, at: 0),
                            nonce: Array(UnsafeRawBufferPointer(rebasing: payload[4...])))
        case .auth:
            switch payload.count {
            case proofSize:
                return .auth(proof: Array(payload))
            case proofSize + 1 where payload[proofSize] == authNoConfirm:
                return .auth(proof: Array(UnsafeRawBufferPointer(rebasing: payload[..<proofSize])), confirm: false)
            default:
                throw .badPayload(kind)
            }
        case .authOK:
            guard payload.isEmpty else { throw .badPayload(kind) }
            return .authOK
        case .refused:
            return .refused(reason: String(decoding: payload, as: UTF8.self))
        case .heartbeat:
            guard payload.isEmpty else { throw .badPayload(kind) }
            return .heartbeat
        case .event:
            return .event(Array(payload))
        case .command, .reply:
            guard payload.count >= 4 else { throw .badPayload(kind) }
            let id = readBE32(payload, at: 0)
            let rest = Array(UnsafeRawBufferPointer(rebasing: payload[4...]))
            return kind == .command ? .command(requestID: id, body: rest) : .reply(requestID: id, body: rest)
        case .bye:
            return .bye(reason: String(decoding: payload, as: UTF8.self))
        }
    }
}

/// Why a byte stream is not a valid frame sequence. Any of these closes the link.
public enum HubProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    case emptyFrame
    case frameTooLarge(Int)
    case unknownType(UInt8)
    case badPayload(HubFrame.Kind)
    case invalidID
    case helloExpected
    case authExpected
    case unexpected(HubFrame.Kind)

    public var description: String {
        switch self {
        case .emptyFrame: "empty frame (length 0)"
        case .frameTooLarge(let n): "frame of \(n) bytes exceeds the limit"
        case .unknownType(let t): "unknown frame type \(t)"
        case .badPayload(let k): "malformed \(k) payload"
        case .invalidID: "invalid router id"
        case .helloExpected: "first frame must be HELLO"
        case .authExpected: "AUTH expected after WELCOME"
        case .unexpected(let k): "unexpected \(k) frame"
        }
    }
}

/// Incremental frame decoder: feed it received bytes in any split, take frames out.
///
/// Holds at most one partial frame (bounded by `maxFrame` + 4 bytes); complete frames
/// in the fed bytes are decoded straight from them without copying into the buffer.
/// Not thread-safe: owned by one connection on its loop.
public struct HubFrameDecoder: Sendable {
    public let maxFrame: Int
    private var pending: [UInt8] = []

    public init(maxFrame: Int = HubFrame.defaultMaxFrame) {
        self.maxFrame = maxFrame
    }

    /// Bytes held of a frame not yet complete.
    public var bufferedBytes: Int { pending.count }

    /// Decodes every complete frame in `pending + bytes`, calling `body` for each;
    /// keeps the incomplete tail. Stops at (and throws) the first protocol error; it
    /// also stops early when `body` returns false (the rest is discarded).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer,
                              _ body: (HubFrame) -> Bool) throws(HubProtocolError) {
        var input = bytes
        // Complete a partial frame first.
        if !pending.isEmpty {
            if pending.count < HubFrame.headerSize {
                let n = min(HubFrame.headerSize - pending.count, input.count)
                pending += input[0..<n]
                input = UnsafeRawBufferPointer(rebasing: input[n...])
                if pending.count < HubFrame.headerSize { return }
            }
            let length = try pending.withUnsafeBytes { p in
                Result { () throws(HubProtocolError) in try checkedLength(p) }
            }.get()
            // 4 ≤ pending.count ≤ 4 + length, and length ≤ maxFrame: no overflow, need ≥ 0.
            let need = HubFrame.headerSize + length - pending.count
            let n = min(need, input.count)
            pending += input[0..<n]
            input = UnsafeRawBufferPointer(rebasing: input[n...])
            if n < need { return }
            let frame = try pending.withUnsafeBytes { p in
                Result { () throws(HubProtocolError) in
                    try HubFrame.decode(UnsafeRawBufferPointer(rebasing: p[HubFrame.headerSize...]))
                }
            }.get()
            pending.removeAll(keepingCapacity: false)
            guard body(frame) else { return }
        }
        // Whole frames straight from the input.
        while input.count >= HubFrame.headerSize {
            let length = try checkedLength(input)
            guard input.count >= HubFrame.headerSize + length else { break }
            let frame = try HubFrame.decode(UnsafeRawBufferPointer(
                rebasing: input[HubFrame.headerSize..<(HubFrame.headerSize + length)]))
            input = UnsafeRawBufferPointer(rebasing: input[(HubFrame.headerSize + length)...])
            guard body(frame) else { return }
        }
        if !input.isEmpty {
            if input.count >= HubFrame.headerSize { _ = try checkedLength(input) }
            pending += input
        }
    }

    private func checkedLength(_ p: UnsafeRawBufferPointer) throws(HubProtocolError) -> Int {
        let length = Int(HubFrame.readBE32(p, at: 0))
        guard length >= 1 else { throw .emptyFrame }
        guard length <= maxFrame else { throw .frameTooLarge(length) }
        return length
    }
}
