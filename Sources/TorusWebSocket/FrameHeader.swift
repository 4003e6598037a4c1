/// The fixed part of a WebSocket frame (RFC 6455 section 5.2): flags, opcode,
/// payload length and optional masking key. The payload itself is not part of it.
///
/// A plain value: owns no memory, `Sendable`. ``write(to:)`` and
/// ``parse(_:)`` borrow caller memory only for the duration of the call.
public struct FrameHeader: Hashable, Sendable {
    public var fin: Bool
    public var rsv1: Bool
    public var rsv2: Bool
    public var rsv3: Bool
    public var opcode: Opcode
    /// Present iff the MASK bit is set.
    public var maskingKey: MaskingKey?
    public var payloadLength: UInt64

    /// The largest encoded header: 2 + 8 (64-bit length) + 4 (key).
    public static let maxEncodedSize = 14

    public init(fin: Bool = true, rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false,
                opcode: Opcode, maskingKey: MaskingKey? = nil, payloadLength: UInt64) {
        self.fin = fin
        self.rsv1 = rsv1
        self.rsv2 = rsv2
        self.rsv3 = rsv3
        self.opcode = opcode
        self.maskingKey = maskingKey
        self.payloadLength = payloadLength
    }

    /// The number of bytes ``write(to:)`` produces: minimal length encoding
    /// (7-bit up to 125, 16-bit up to 65535, 64-bit above) plus 4 if masked.
    public var encodedSize: Int {
        FrameHeader.encodedSize(payloadLength: payloadLength, masked: maskingKey != nil)
    }

    public static func encodedSize(payloadLength: UInt64, masked: Bool) -> Int {
        let base = payloadLength <= 125 ? 2 : (payloadLength <= 0xFFFF ? 4 : 10)
        return masked ? base + 4 : base
    }

    /// Writes the header at the start of `buffer` and returns its size.
    /// `buffer` must hold at least ``encodedSize`` bytes.
    ///
    /// Always inlined: a frame encoder's header is mostly constants (no RSV2/RSV3, a
    /// server's no key), which then fold away, leaving a few stores per frame.
    @inline(__always)
    @discardableResult
    public func write(to buffer: UnsafeMutableRawBufferPointer) -> Int {
        let size = encodedSize
        // Not from input: headers written are our own; callers size `buffer` with encodedSize
        // (or maxEncodedSize), and a length made from an Int count is below 2^63.
        precondition(buffer.count >= size, "buffer too small for frame header")
        precondition(payloadLength < 1 << 63, "payload length must fit in 63 bits")
        var b0 = opcode.rawValue
        if fin { b0 |= 0x80 }
        if rsv1 { b0 |= 0x40 }
        if rsv2 { b0 |= 0x20 }
        if rsv3 { b0 |= 0x10 }
        buffer[0] = b0
        let maskBit: UInt8 = maskingKey != nil ? 0x80 : 0
        var i: Int
        if payloadLength <= 125 {
            buffer[1] = maskBit | UInt8(payloadLength)
            i = 2
        } else if payloadLength <= 0xFFFF {
            buffer[1] = maskBit | 126
            buffer[2] = UInt8(truncatingIfNeeded: payloadLength >> 8)
            buffer[3] = UInt8(truncatingIfNeeded: payloadLength)
            i = 4
        } else {
            buffer[1] = maskBit | 127
            buffer.storeBytes(of: payloadLength.bigEndian, toByteOffset: 2, as: UInt64.self)
            i = 10
        }
        if let key = maskingKey {
            buffer.storeBytes(of: key.rawValue.bigEndian, toByteOffset: i, as: UInt32.self)
            i += 4
        }
        return i
    }

    /// The total header size announced by its first two bytes.
    @inline(__always)
    static func sizeFromFirstTwoBytes(_ b1: UInt8) -> Int {
        let len7 = b1 & 0x7F
        let base = len7 == 126 ? 4 : (len7 == 127 ? 10 : 2)
        return b1 & 0x80 != 0 ? base + 4 : base
    }

    /// Parses a header from the start of `bytes`.
    ///
    /// Returns `nil` if `bytes` does not yet hold the whole header, otherwise
    /// the header and its encoded size. Performs no protocol validation (that is
    /// the decoder's job) except that the length is read as a full 64-bit value.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> (header: FrameHeader, size: Int)? {
        guard bytes.count >= 2 else { return nil }
        let b0 = bytes[0], b1 = bytes[1]
        let size = sizeFromFirstTwoBytes(b1)
        guard bytes.count >= size else { return nil }
        var length = UInt64(b1 & 0x7F)
        var i = 2
        if length == 126 {
            length = UInt64(bytes[2]) << 8 | UInt64(bytes[3])
            i = 4
        } else if length == 127 {
            length = 0
            for k in 0..<8 { length = length << 8 | UInt64(bytes[2 + k]) }
            i = 10
        }
        var key: MaskingKey?
        if b1 & 0x80 != 0 {
            key = MaskingKey(bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3])
        }
        let header = FrameHeader(fin: b0 & 0x80 != 0, rsv1: b0 & 0x40 != 0, rsv2: b0 & 0x20 != 0,
                                 rsv3: b0 & 0x10 != 0, opcode: Opcode(uncheckedRawValue: b0 & 0x0F),
                                 maskingKey: key, payloadLength: length)
        return (header, size)
    }
}
