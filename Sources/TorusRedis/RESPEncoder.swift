/// Commands as RESP: an array of bulk strings (what every Redis command is on the
/// wire). Measured first (`size(of:)`), then written in one pass straight into the
/// memory it goes out from (`write(_:to:)`: a connection's write queue), so a warm
/// connection encodes without allocating and without an intermediate copy.
public enum RESPEncoder {
    /// Appends `*N`, then `$len` and the bytes of each argument.
    public static func command(_ arguments: [String], into out: inout [UInt8]) {
        append(size(of: arguments), to: &out) { write(arguments, to: $0) }
    }

    /// The same for binary arguments.
    public static func command(_ arguments: [[UInt8]], into out: inout [UInt8]) {
        append(size(of: arguments), to: &out) { write(arguments, to: $0) }
    }

    /// The bytes `arguments` take as a RESP command.
    ///
    /// Wrapping arithmetic here and in the sizes below (measured per command: an
    /// overflow check per addition was a fifth of this loop): the arguments are in
    /// memory, so their lengths, and the few bytes each adds, cannot sum to anywhere
    /// near `Int.max`.
    public static func size(of arguments: [String]) -> Int {
        var total = headerSize(arguments.count)
        for argument in arguments { total &+= bulkSize(argument.utf8.count) }
        return total
    }

    /// The same for binary arguments.
    public static func size(of arguments: [[UInt8]]) -> Int {
        var total = headerSize(arguments.count)
        for argument in arguments { total &+= bulkSize(argument.count) }
        return total
    }

    /// Writes `arguments` as a RESP command to `out` (at least `size(of:)` bytes);
    /// returns the bytes written.
    public static func write(_ arguments: [String], to out: UnsafeMutableRawBufferPointer) -> Int {
        var writer = Writer(out)
        writer.header(UInt8(ascii: "*"), arguments.count)
        for argument in arguments {
            if argument.utf8.withContiguousStorageIfAvailable({ writer.bulk($0) }) == nil {
                let copy = Array(argument.utf8)  // a bridged or lazy string: rare
                copy.withUnsafeBufferPointer { writer.bulk($0) }
            }
        }
        return writer.count
    }

    /// The same for binary arguments.
    public static func write(_ arguments: [[UInt8]], to out: UnsafeMutableRawBufferPointer) -> Int {
        var writer = Writer(out)
        writer.header(UInt8(ascii: "*"), arguments.count)
        for argument in arguments { argument.withUnsafeBufferPointer { writer.bulk($0) } }
        return writer.count
    }

    private static func append(_ size: Int, to out: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: size))
        let written = out.withUnsafeMutableBytes { body(UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
        assert(written == size, "RESP size and write disagree")
    }

    /// `*N\r\n` or `$N\r\n`.
    @inline(__always)
    static func headerSize(_ n: Int) -> Int { digits(n) &+ 3 }

    /// `$len\r\n` + bytes + `\r\n`.
    @inline(__always)
    static func bulkSize(_ count: Int) -> Int { headerSize(count) &+ count &+ 2 }

    @inline(__always)
    static func digits(_ n: Int) -> Int {
        if n < 10 { return 1 }
        if n < 100 { return 2 }
        var value = UInt(n)
        var count = 1
        while value >= 10 {
            value /= 10
            count &+= 1
        }
        return count
    }

    /// Sequential writes into raw memory the caller measured (`size(of:)`).
    ///
    /// Hot: it runs for every argument of every command. Each header and each bulk
    /// string checks its whole extent against the measured size once (not byte by
    /// byte) and is inlined into the command's loop: the encoder's instructions per
    /// 3-argument command went from ~330 (a call per header, a check per byte of
    /// CRLF) to ~260. Offsets use wrapping arithmetic: each write is first checked
    /// to fit in `out` (so `count` never passes `out.count`), and what it adds is a
    /// few bytes or the length of an argument already in memory.
    private struct Writer {
        let out: UnsafeMutableRawBufferPointer
        var count = 0

        init(_ out: UnsafeMutableRawBufferPointer) {
            self.out = out
        }

        /// `type`, the decimal `n`, CRLF: digits written without a String.
        @inline(__always)
        mutating func header(_ type: UInt8, _ n: Int) {
            let width = RESPEncoder.digits(n)
            // Not from input: commands are written into what size(of:) measured for the same
            // arguments (a reply's bytes never reach the encoder's sizes).
            precondition(out.count &- count >= width &+ 3, "RESP writer past its measured size")
            out.storeBytes(of: type, toByteOffset: count, as: UInt8.self)
            var value = UInt(n)
            var i = count &+ width
            while i > count &+ 1 {  // the last digits first; the first one below
                out.storeBytes(of: UInt8(truncatingIfNeeded: value % 10) &+ 0x30, toByteOffset: i, as: UInt8.self)
                value /= 10
                i &-= 1
            }
            out.storeBytes(of: UInt8(truncatingIfNeeded: value) &+ 0x30, toByteOffset: count &+ 1, as: UInt8.self)
            out.storeBytes(of: (0x0A0D as UInt16).littleEndian, toByteOffset: count &+ width &+ 1, as: UInt16.self)  // CR LF
            count &+= width &+ 3
        }

        @inline(__always)
        mutating func bulk(_ bytes: UnsafeBufferPointer<UInt8>) {
            header(UInt8(ascii: "$"), bytes.count)
            // Not from input: the measured size, as in header(_:_:).
            precondition(out.count &- count >= bytes.count &+ 2, "RESP writer past its measured size")
            if let source = bytes.baseAddress, let base = out.baseAddress {
                (base + count).copyMemory(from: source, byteCount: bytes.count)
            }
            count &+= bytes.count
            out.storeBytes(of: (0x0A0D as UInt16).littleEndian, toByteOffset: count, as: UInt16.self)  // CR LF
            count &+= 2
        }
    }
}
