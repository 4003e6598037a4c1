/// Why bytes from a server are not RESP (the connection that read them is closed).
public enum RESPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A value started with a byte that names no RESP type.
    case unknownType(UInt8)
    /// A length, number, line ending or boolean that RESP does not allow.
    case malformed(String)
    /// A reply (or the bytes buffered towards one) larger than the decoder's limit.
    case tooLarge(limit: Int)
    /// Aggregates nested deeper than the decoder's limit.
    case tooDeep(limit: Int)

    public var description: String {
        switch self {
        case .unknownType(let byte): "unknown RESP type byte 0x\(String(byte, radix: 16))"
        case .malformed(let what): "malformed RESP: \(what)"
        case .tooLarge(let limit): "RESP reply larger than \(limit) bytes"
        case .tooDeep(let limit): "RESP aggregates nested deeper than \(limit)"
        }
    }
}

/// An incremental RESP2/RESP3 decoder: feed it bytes as they arrive, take values
/// while it has complete ones.
///
/// A value that is not complete yet is parsed again from its start when more bytes
/// arrive; a bulk string's declared length is checked first, so a large one is not
/// re-scanned until all of it is there. Every length is checked against `maxBytes`
/// before anything is reserved for it, so no input makes the decoder allocate more
/// than it has been fed plus its limit, and nesting is bounded by `maxDepth`.
///
/// A plain value; one owner (a connection) at a time.
public struct RESPDecoder: Sendable {
    /// Largest reply (and largest amount buffered towards one) in bytes.
    public let maxBytes: Int
    /// Deepest nesting of arrays, maps, sets and pushes.
    public let maxDepth: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(maxBytes: Int = 64 << 20, maxDepth: Int = 64) {
        self.maxBytes = max(64, maxBytes)
        self.maxDepth = max(1, maxDepth)
    }

    /// Bytes fed but not yet taken as values.
    public var buffered: Int { buffer.count - start }

    /// Appends bytes from the server.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 4096 && start * 2 > buffer.count {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The next complete value, or nil until more bytes arrive. Throws (and should
    /// not be called again) when the bytes are not RESP or exceed a limit.
    public mutating func next() throws(RESPError) -> RESPValue? {
        guard start < buffer.count else { return nil }
        let limits = (bytes: maxBytes, depth: maxDepth)
        let origin = start
        let parsed: (value: RESPValue, end: Int)? = try buffer.withUnsafeBufferPointer { (all) throws(RESPError) in
            var cursor = RESPCursor(bytes: all, position: origin, limits: limits)
            guard let value = try cursor.value(depth: 0) else { return nil }
            return (value, cursor.position)
        }
        guard let parsed else {
            if buffer.count - start > maxBytes { throw .tooLarge(limit: maxBytes) }
            return nil
        }
        // The whole reply counts against the limit, not only its parts: a value that
        // arrived at once is refused as one that arrived byte by byte would be.
        guard parsed.end - origin <= maxBytes else { throw .tooLarge(limit: maxBytes) }
        start = parsed.end
        return parsed.value
    }
}

/// A read position in the decoder's bytes. `nil` results mean "not complete yet".
struct RESPCursor {
    let bytes: UnsafeBufferPointer<UInt8>
    var position: Int
    let limits: (bytes: Int, depth: Int)

    /// The line from `position` to its CRLF (exclusive), advancing past the CRLF.
    private mutating func line() throws(RESPError) -> Range<Int>? {
        var i = position
        while i < bytes.count {
            if bytes[i] == 0x0D {
                guard i + 1 < bytes.count else { return nil }
                guard bytes[i + 1] == 0x0A else { throw .malformed("CR without LF") }
                let range = position..<i
                position = i + 2
                return range
            }
            if bytes[i] == 0x0A { throw .malformed("LF without CR") }
            i += 1
        }
        if i - position > limits.bytes { throw .tooLarge(limit: limits.bytes) }
        return nil
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    private func integer(_ range: Range<Int>) throws(RESPError) -> Int64 {
        var i = range.lowerBound
        var negative = false
        if i < range.upperBound, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < range.upperBound, range.upperBound - i <= 19 else { throw .malformed("integer \"\(text(range))\"") }
        var n: Int64 = 0
        while i < range.upperBound {
            let d = bytes[i] &- 0x30
            guard d < 10 else { throw .malformed("integer \"\(text(range))\"") }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(d)) : m.addingReportingOverflow(Int64(d))
            guard !o1, !o2 else { throw .malformed("integer out of range") }
            n = s
            i += 1
        }
        return n
    }

    /// A length (of a string or an aggregate): -1 (RESP2's null) or 0...limit.
    private func length(_ range: Range<Int>) throws(RESPError) -> Int {
        let n = try integer(range)
        guard n >= -1 else { throw .malformed("negative length \(n)") }
        guard n <= Int64(limits.bytes) else { throw .tooLarge(limit: limits.bytes) }
        return Int(n)
    }

    /// A length of up to 9 plain digits and its CRLF, within the limit, advancing past
    /// them; nil (nothing consumed) for anything else, which `line()` and `length(_:)`
    /// then read, check and refuse as before. Every bulk string starts with one: the
    /// general path (a line scanned for CR and LF, a signed integer parsed with
    /// overflow checks) was about 130 instructions per GET reply.
    private mutating func shortLength() -> Int? {
        var i = position
        var n = 0
        while i < bytes.count, i - position < 9 {
            let d = bytes[i] &- 0x30
            guard d < 10 else { break }
            n = n &* 10 &+ Int(d)
            i += 1
        }
        guard i > position, bytes.count - i >= 2, bytes[i] == 0x0D, bytes[i + 1] == 0x0A, n <= limits.bytes else { return nil }
        position = i + 2
        return n
    }

    /// `count` bytes then CRLF, advancing past both.
    private mutating func blob(_ count: Int) throws(RESPError) -> Range<Int>? {
        // A difference, not `count + 2`: a length near Int.max (under maxBytes of Int.max)
        // must not overflow.
        guard bytes.count - position - 2 >= count else { return nil }
        let range = position..<(position + count)
        guard bytes[range.upperBound] == 0x0D, bytes[range.upperBound + 1] == 0x0A else {
            throw .malformed("string not followed by CRLF")
        }
        position = range.upperBound + 2
        return range
    }

    mutating func value(depth: Int) throws(RESPError) -> RESPValue? {
        guard depth < limits.depth else { throw .tooDeep(limit: limits.depth) }
        guard position < bytes.count else { return nil }
        let type = bytes[position]
        position += 1
        switch type {
        case UInt8(ascii: "+"):
            // `+OK`, the reply to most writes, matched whole and made a literal: making
            // the String from its bytes, and scanning for the line's end, were about 150
            // of the ~1,900 instructions of a pipelined SET.
            if bytes.count - position >= 4, bytes[position] == UInt8(ascii: "O"), bytes[position + 1] == UInt8(ascii: "K"),
               bytes[position + 2] == 0x0D, bytes[position + 3] == 0x0A {
                position += 4
                return .simpleString("OK")
            }
            guard let l = try line() else { return nil }
            return .simpleString(text(l))
        case UInt8(ascii: "-"):
            guard let l = try line() else { return nil }
            return .error(text(l))
        case UInt8(ascii: ":"):
            guard let l = try line() else { return nil }
            return .integer(try integer(l))
        case UInt8(ascii: "$"), UInt8(ascii: "!"), UInt8(ascii: "="):
            let n: Int
            if let short = shortLength() {
                n = short
            } else {
                guard let l = try line() else { return nil }
                n = try length(l)
            }
            if n == -1 {
                guard type == UInt8(ascii: "$") else { throw .malformed("null blob error or verbatim string") }
                return .null
            }
            guard let b = try blob(n) else { return nil }
            let body = Array(UnsafeBufferPointer(rebasing: bytes[b]))
            switch type {
            case UInt8(ascii: "!"):
                return .error(String(decoding: body, as: UTF8.self))
            case UInt8(ascii: "="):
                guard body.count >= 4, body[3] == UInt8(ascii: ":"), body[0..<3].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                    throw .malformed("verbatim string without a format")
                }
                return .verbatim(format: String(decoding: body[0..<3], as: UTF8.self), text: Array(body[4...]))
            default:
                return .bulkString(body)
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            guard let l = try line() else { return nil }
            let n = try length(l)
            if n == -1 {
                guard type == UInt8(ascii: "*") else { throw .malformed("null set or push") }
                return .null
            }
            guard let items = try elements(n, depth: depth) else { return nil }
            switch type {
            case UInt8(ascii: "~"): return .set(items)
            case UInt8(ascii: ">"): return .push(items)
            default: return .array(items)
            }
        case UInt8(ascii: "%"), UInt8(ascii: "|"):
            guard let l = try line() else { return nil }
            let n = try length(l)
            guard n >= 0, n <= limits.bytes / 2 else { throw .malformed("map length \(n)") }
            guard let items = try elements(2 * n, depth: depth) else { return nil }
            if type == UInt8(ascii: "|") {
                // An attribute annotates the value that follows: read that one instead.
                return try value(depth: depth)
            }
            var pairs: [RESPPair] = []
            pairs.reserveCapacity(n)
            var i = 0
            while i < items.count {
                pairs.append(RESPPair(items[i], items[i + 1]))
                i += 2
            }
            return .map(pairs)
        case UInt8(ascii: "_"):
            guard let l = try line() else { return nil }
            guard l.isEmpty else { throw .malformed("null with a body") }
            return .null
        case UInt8(ascii: "#"):
            guard let l = try line() else { return nil }
            guard l.count == 1, bytes[l.lowerBound] == UInt8(ascii: "t") || bytes[l.lowerBound] == UInt8(ascii: "f") else {
                throw .malformed("boolean \"\(text(l))\"")
            }
            return .boolean(bytes[l.lowerBound] == UInt8(ascii: "t"))
        case UInt8(ascii: ","):
            guard let l = try line() else { return nil }
            let t = text(l)
            switch t {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan", "-nan": return .double(.nan)
            default:
                guard let d = Double(t) else { throw .malformed("double \"\(t)\"") }
                return .double(d)
            }
        case UInt8(ascii: "("):
            guard let l = try line() else { return nil }
            let t = text(l)
            let digits = t.utf8.drop { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }
            guard !digits.isEmpty, t.utf8.count - digits.count <= 1, digits.allSatisfy({ $0 &- 0x30 < 10 }) else {
                throw .malformed("big number \"\(t)\"")
            }
            return .bigNumber(t)
        default:
            throw .unknownType(type)
        }
    }

    /// `count` values, or nil when not all are there yet.
    private mutating func elements(_ count: Int, depth: Int) throws(RESPError) -> [RESPValue]? {
        var items: [RESPValue] = []
        // Each value takes at least three bytes: reserve no more than what is here.
        items.reserveCapacity(min(count, (bytes.count - position) / 3 + 1))
        for _ in 0..<count {
            guard let item = try value(depth: depth + 1) else { return nil }
            items.append(item)
        }
        return items
    }
}
