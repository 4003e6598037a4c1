/// Commands as RESP: an array of bulk strings (what every Redis command is on the
/// wire), appended to a buffer the caller keeps, so a warm connection encodes
/// without allocating.
public enum RESPEncoder {
    /// Appends `*N`, then `$len` and the bytes of each argument.
    public static func command(_ arguments: [String], into out: inout [UInt8]) {
        header(UInt8(ascii: "*"), arguments.count, into: &out)
        for argument in arguments {
            var argument = argument
            argument.withUTF8 { bulk($0, into: &out) }
        }
    }

    /// The same for binary arguments.
    public static func command(_ arguments: [[UInt8]], into out: inout [UInt8]) {
        header(UInt8(ascii: "*"), arguments.count, into: &out)
        for argument in arguments { argument.withUnsafeBufferPointer { bulk($0, into: &out) } }
    }

    static func bulk(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        header(UInt8(ascii: "$"), bytes.count, into: &out)
        out.append(contentsOf: bytes)
        out.append(0x0D)
        out.append(0x0A)
    }

    /// `type`, the decimal `n`, CRLF: digits written without a String.
    static func header(_ type: UInt8, _ n: Int, into out: inout [UInt8]) {
        out.append(type)
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var value = UInt(n)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[19 - count] = UInt8(truncatingIfNeeded: value % 10) + 0x30
                value /= 10
                count += 1
            } while value > 0
            out.append(contentsOf: d[(20 - count)...])
        }
        out.append(0x0D)
        out.append(0x0A)
    }
}
