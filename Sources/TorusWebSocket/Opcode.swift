/// A WebSocket frame opcode (RFC 6455 section 5.2).
///
/// A plain 4-bit value type: it owns no memory and is `Sendable`. Reserved
/// opcodes (0x3-0x7, 0xB-0xF) are representable so that a decoder can report
/// them, but ``isReserved`` is `true` for them and they must never be sent.
public struct Opcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 4-bit opcode value (0...15).
    public let rawValue: UInt8

    /// Creates an opcode from its 4-bit value; returns `nil` above 15.
    public init?(rawValue: UInt8) {
        guard rawValue <= 0xF else { return nil }
        self.rawValue = rawValue
    }

    @inline(__always)
    init(uncheckedRawValue: UInt8) { self.rawValue = uncheckedRawValue }

    public static let continuation = Opcode(uncheckedRawValue: 0x0)
    public static let text = Opcode(uncheckedRawValue: 0x1)
    public static let binary = Opcode(uncheckedRawValue: 0x2)
    public static let close = Opcode(uncheckedRawValue: 0x8)
    public static let ping = Opcode(uncheckedRawValue: 0x9)
    public static let pong = Opcode(uncheckedRawValue: 0xA)

    /// Control frames have the high bit of the opcode set (0x8-0xF).
    public var isControl: Bool { rawValue & 0x8 != 0 }

    /// True for opcodes RFC 6455 leaves reserved for future use.
    public var isReserved: Bool {
        switch rawValue {
        case 0x0, 0x1, 0x2, 0x8, 0x9, 0xA: return false
        default: return true
        }
    }

    public var description: String {
        switch rawValue {
        case 0x0: return "continuation"
        case 0x1: return "text"
        case 0x2: return "binary"
        case 0x8: return "close"
        case 0x9: return "ping"
        case 0xA: return "pong"
        default: return "reserved(0x\(String(rawValue, radix: 16)))"
        }
    }
}
