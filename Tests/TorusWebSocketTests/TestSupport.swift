@testable import TorusWebSocket

/// Builds arbitrary (also invalid) frames for decoder tests.
func rawFrame(fin: Bool = true, rsv1: Bool = false, rsv2: Bool = false, rsv3: Bool = false,
              opcode: UInt8, key: MaskingKey? = MaskingKey(0x37, 0xFA, 0x21, 0x3D),
              payload: [UInt8] = []) -> [UInt8] {
    let header = FrameHeader(fin: fin, rsv1: rsv1, rsv2: rsv2, rsv3: rsv3, opcode: Opcode(rawValue: opcode)!,
                             maskingKey: key, payloadLength: UInt64(payload.count))
    var out = [UInt8](repeating: 0, count: header.encodedSize)
    out.withUnsafeMutableBytes { _ = header.write(to: $0) }
    var body = payload
    if let key { body.withUnsafeMutableBytes { _ = Masking.apply(key, to: $0) } }
    return out + body
}

/// Text/binary/control frame as a client sends it (masked).
func clientFrame(_ opcode: Opcode, _ payload: [UInt8], fin: Bool = true, rsv1: Bool = false) -> [UInt8] {
    rawFrame(fin: fin, rsv1: rsv1, opcode: opcode.rawValue, payload: payload)
}

struct DecodeResult {
    var events: [WebSocketEvent] = []
    var error: WebSocketProtocolError?
}

/// Feeds `chunks` in order into `decoder`, collecting events until an error.
func feed(_ decoder: inout MessageDecoder, _ chunks: [[UInt8]]) -> DecodeResult {
    var result = DecodeResult()
    for chunk in chunks {
        do {
            result.events += try decoder.decode(chunk)
        } catch {
            result.error = error
            return result
        }
    }
    return result
}

func decodeServer(_ bytes: [UInt8], configuration: MessageDecoderConfiguration = .init(),
                  decompressor: PerMessageDeflateDecompressor? = nil) -> DecodeResult {
    var d = MessageDecoder(role: .server, configuration: configuration, decompressor: decompressor)
    return feed(&d, [bytes])
}

func utf8(_ s: String) -> [UInt8] { Array(s.utf8) }

func hex(_ s: String) -> [UInt8] {
    let digits = s.filter { !$0.isWhitespace }
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}
