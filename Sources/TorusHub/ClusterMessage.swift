/// What hub nodes tell each other through Redis Pub/Sub: events on the shared
/// events channel, and commands, replies and takeovers on one node's own channel.
///
/// Binary, length-prefixed, one message per Redis `PUBLISH`:
///
/// ```
/// 'E' origin-node router payload…                    (events channel)
/// 'C' from-node request:u64 timeout-ms:u32 router body…
/// 'R' request:u64 outcome:u8 body…                   (to the asking node)
/// 'T' router new-node                                (to the node losing the router)
/// 'P' origin-node message…                           (events channel: a router of
///                                                     origin-node came or went, as
///                                                     the `/web` routers feed says it)
/// ```
///
/// Names (`origin-node`, `router`, …) are one length byte and up to 255 bytes;
/// integers are big-endian; the last field runs to the end. Decoding checks every
/// length against what is there: a message from a node of another version, or bytes
/// that are not a message at all, decode to `nil` (counted, dropped), never a trap.
enum ClusterMessage: Equatable, Sendable {
    case event(origin: String, router: String, payload: [UInt8])
    case command(from: String, request: UInt64, timeoutMs: UInt32, router: String, body: [UInt8])
    case reply(request: UInt64, outcome: CommandOutcome)
    case takeover(router: String, node: String)
    case presence(origin: String, message: [UInt8])

    func encode(into out: inout [UInt8]) {
        switch self {
        case .event(let origin, let router, let payload):
            out.append(UInt8(ascii: "E"))
            Self.name(origin, into: &out)
            Self.name(router, into: &out)
            out.append(contentsOf: payload)
        case .command(let from, let request, let timeoutMs, let router, let body):
            out.append(UInt8(ascii: "C"))
            Self.name(from, into: &out)
            Self.integer(request, bytes: 8, into: &out)
            Self.integer(UInt64(timeoutMs), bytes: 4, into: &out)
            Self.name(router, into: &out)
            out.append(contentsOf: body)
        case .reply(let request, let outcome):
            out.append(UInt8(ascii: "R"))
            Self.integer(request, bytes: 8, into: &out)
            switch outcome {
            case .reply(let body):
                out.append(0)
                out.append(contentsOf: body)
            case .offline: out.append(1)
            case .timedOut: out.append(2)
            case .disconnected: out.append(3)
            case .overloaded: out.append(4)
            case .unreachable: out.append(5)
            }
        case .takeover(let router, let node):
            out.append(UInt8(ascii: "T"))
            Self.name(router, into: &out)
            Self.name(node, into: &out)
        case .presence(let origin, let message):
            out.append(UInt8(ascii: "P"))
            Self.name(origin, into: &out)
            out.append(contentsOf: message)
        }
    }

    var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    /// The message in `bytes`, or nil when they are not one.
    static func decode(_ bytes: [UInt8]) -> ClusterMessage? {
        var reader = Reader(bytes: bytes)
        guard let kind = reader.byte() else { return nil }
        switch kind {
        case UInt8(ascii: "E"):
            guard let origin = reader.name(), let router = reader.name() else { return nil }
            return .event(origin: origin, router: router, payload: reader.rest())
        case UInt8(ascii: "C"):
            guard let from = reader.name(), let request = reader.integer(bytes: 8),
                  let timeout = reader.integer(bytes: 4), let router = reader.name() else { return nil }
            return .command(from: from, request: request, timeoutMs: UInt32(truncatingIfNeeded: timeout),
                            router: router, body: reader.rest())
        case UInt8(ascii: "R"):
            guard let request = reader.integer(bytes: 8), let code = reader.byte() else { return nil }
            let outcome: CommandOutcome
            switch code {
            case 0: outcome = .reply(reader.rest())
            case 1: outcome = .offline
            case 2: outcome = .timedOut
            case 3: outcome = .disconnected
            case 4: outcome = .overloaded
            case 5: outcome = .unreachable
            default: return nil
            }
            return .reply(request: request, outcome: outcome)
        case UInt8(ascii: "T"):
            guard let router = reader.name(), let node = reader.name(), reader.atEnd else { return nil }
            return .takeover(router: router, node: node)
        case UInt8(ascii: "P"):
            guard let origin = reader.name() else { return nil }
            return .presence(origin: origin, message: reader.rest())
        default:
            return nil
        }
    }

    private static func name(_ text: String, into out: inout [UInt8]) {
        let utf8 = text.utf8.prefix(255)
        out.append(UInt8(utf8.count))
        out.append(contentsOf: utf8)
    }

    private static func integer(_ value: UInt64, bytes: Int, into out: inout [UInt8]) {
        for i in stride(from: bytes - 1, through: 0, by: -1) {
            out.append(UInt8(truncatingIfNeeded: value >> (UInt64(i) * 8)))
        }
    }

    /// Bounds-checked reading of a message.
    private struct Reader {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { index == bytes.count }

        mutating func byte() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func integer(bytes count: Int) -> UInt64? {
            guard bytes.count - index >= count else { return nil }
            var value: UInt64 = 0
            for _ in 0..<count {
                value = value << 8 | UInt64(bytes[index])
                index += 1
            }
            return value
        }

        mutating func name() -> String? {
            guard let length = byte(), bytes.count - index >= Int(length) else { return nil }
            defer { index += Int(length) }
            return String(decoding: bytes[index..<index + Int(length)], as: UTF8.self)
        }

        mutating func rest() -> [UInt8] {
            defer { index = bytes.count }
            return Array(bytes[index...])
        }
    }
}
