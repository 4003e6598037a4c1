/// One reply (or push message) from a Redis server, in RESP2 or RESP3.
///
/// RESP2 has simple strings, errors, integers, bulk strings and arrays (with a null
/// bulk string or array for "nothing"); RESP3 adds null, booleans, doubles, big
/// numbers, verbatim strings, maps, sets and out-of-band push messages. Attributes
/// (`|`) are read and dropped: they annotate a reply, they are not one.
///
/// A plain value; `Sendable`.
public enum RESPValue: Sendable, Equatable {
    /// `+OK`
    case simpleString(String)
    /// `-ERR message` or RESP3's blob error `!`: the server refused the command (the
    /// connection is fine). `RedisConnection` turns it into `RedisError.server`.
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$3\r\nfoo` (binary-safe)
    case bulkString([UInt8])
    /// `_` (RESP3), `$-1` and `*-1` (RESP2)
    case null
    /// `*N`
    case array([RESPValue])
    /// `,3.14` (RESP3; `inf`, `-inf` and `nan` included)
    case double(Double)
    /// `#t`, `#f` (RESP3)
    case boolean(Bool)
    /// `(3492890328409238509324850943850943825024385` (RESP3), as its decimal text
    case bigNumber(String)
    /// `=15\r\ntxt:Some string` (RESP3): the three-letter format and the text
    case verbatim(format: String, text: [UInt8])
    /// `%N` (RESP3): key/value pairs in the server's order
    case map([RESPPair])
    /// `~N` (RESP3)
    case set([RESPValue])
    /// `>N` (RESP3): an out-of-band message (Pub/Sub), never the reply to a command
    case push([RESPValue])

    /// The value as text: simple, bulk and verbatim strings (UTF-8, repaired), and
    /// the text of integers, doubles and big numbers; nil otherwise.
    public var string: String? {
        switch self {
        case .simpleString(let s), .bigNumber(let s): s
        case .bulkString(let bytes), .verbatim(_, let bytes): String(decoding: bytes, as: UTF8.self)
        case .integer(let n): String(n)
        case .double(let d): String(d)
        default: nil
        }
    }

    /// The value as an integer: integers, and strings that hold one; nil otherwise.
    public var integer: Int64? {
        switch self {
        case .integer(let n): n
        case .simpleString, .bulkString, .bigNumber: string.flatMap { Int64($0) }
        default: nil
        }
    }

    /// The elements of an array, set or push; nil otherwise.
    public var elements: [RESPValue]? {
        switch self {
        case .array(let a), .set(let a), .push(let a): a
        default: nil
        }
    }
}

/// One key/value pair of a RESP3 map.
public struct RESPPair: Sendable, Equatable {
    public var key: RESPValue
    public var value: RESPValue

    public init(_ key: RESPValue, _ value: RESPValue) {
        self.key = key
        self.value = value
    }
}
