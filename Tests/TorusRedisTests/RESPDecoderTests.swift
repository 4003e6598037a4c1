import Testing
import Torus
import TorusRedis

@Suite("RESP decoder")
struct RESPDecoderTests {
    /// Every RESP2 and RESP3 type, fed whole and then split at every byte: the same
    /// values come out either way.
    @Test func everyTypeWholeAndSplitAtEveryByte() throws {
        let wire = Array(("+OK\r\n-ERR bad\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n:1\r\n"
            + "_\r\n#t\r\n#f\r\n,3.5\r\n,inf\r\n(123456789012345678901234567890\r\n=9\r\ntxt:hello\r\n"
            + "%1\r\n+k\r\n:2\r\n~2\r\n+x\r\n+y\r\n>3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n"
            + "|1\r\n+ttl\r\n:5\r\n+after attribute\r\n!11\r\nSYNTAX oops\r\n").utf8)
        let expected: [RESPValue] = [
            .simpleString("OK"), .error("ERR bad"), .integer(-42), .bulkString(Array("he\r\no".utf8)), .null, .null,
            .array([.bulkString([UInt8(ascii: "a")]), .integer(1)]), .null, .boolean(true), .boolean(false),
            .double(3.5), .double(.infinity), .bigNumber("123456789012345678901234567890"),
            .verbatim(format: "txt", text: Array("hello".utf8)), .map([RESPPair(.simpleString("k"), .integer(2))]),
            .set([.simpleString("x"), .simpleString("y")]),
            .push([.simpleString("message"), .simpleString("ch"), .bulkString(Array("hi".utf8))]),
            .simpleString("after attribute"), .error("SYNTAX oops"),
        ]
        var whole = RESPDecoder()
        whole.feed(wire)
        var values: [RESPValue] = []
        while let v = try whole.next() { values.append(v) }
        #expect(values == expected)
        for cut in 1..<wire.count {
            var decoder = RESPDecoder()
            var got: [RESPValue] = []
            decoder.feed(Array(wire[..<cut]))
            while let v = try decoder.next() { got.append(v) }
            decoder.feed(Array(wire[cut...]))
            while let v = try decoder.next() { got.append(v) }
            #expect(got == expected, "cut at \(cut)")
            #expect(decoder.buffered == 0)
        }
    }

    /// Bytes that are not RESP are typed errors, never a trap or a huge allocation.
    @Test(arguments: [
        ("?x\r\n", RESPError.unknownType(UInt8(ascii: "?"))),
        (":12a\r\n", .malformed("integer \"12a\"")),
        (":99999999999999999999\r\n", .malformed("integer \"99999999999999999999\"")),
        ("$-2\r\n", .malformed("negative length -2")),
        ("$3\r\nabcd\r\n", .malformed("string not followed by CRLF")),
        ("+OK\n", .malformed("LF without CR")),
        ("+OK\rX", .malformed("CR without LF")),
        ("#x\r\n", .malformed("boolean \"x\"")),
        (",abc\r\n", .malformed("double \"abc\"")),
        ("(12x\r\n", .malformed("big number \"12x\"")),
        ("_x\r\n", .malformed("null with a body")),
        ("=2\r\nab\r\n", .malformed("verbatim string without a format")),
        ("~-1\r\n", .malformed("null set or push")),
        ("$2000000000\r\n", .tooLarge(limit: 1 << 20)),
        ("*2000000000\r\n", .tooLarge(limit: 1 << 20)),
    ])
    func malformedInputIsATypedError(input: String, error: RESPError) {
        var decoder = RESPDecoder(maxBytes: 1 << 20)
        decoder.feed(Array(input.utf8))
        #expect(throws: error) { _ = try decoder.next() }
    }

    @Test func nestingAndBufferedBytesAreBounded() {
        var deep = RESPDecoder(maxDepth: 8)
        deep.feed(Array(String(repeating: "*1\r\n", count: 9).utf8) + Array(":1\r\n".utf8))
        #expect(throws: RESPError.tooDeep(limit: 8)) { _ = try deep.next() }
        // A bulk string announced within the limit but never ending: the buffered
        // bytes are bounded too.
        var endless = RESPDecoder(maxBytes: 1024)
        endless.feed(Array("+".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 2000))
        #expect(throws: RESPError.tooLarge(limit: 1024)) { _ = try endless.next() }
    }

    /// What the fuzz target found: a format that is not ASCII, and a reply over the
    /// limit that arrived in one piece (it was refused only when it arrived in parts).
    @Test func fuzzFindingsStayFixed() {
        var verbatim = RESPDecoder()
        verbatim.feed([UInt8(ascii: "=")] + Array("7\r\n".utf8) + [0xFF] + Array("xt:abc\r\n".utf8))
        #expect(throws: RESPError.malformed("verbatim string without a format")) { _ = try verbatim.next() }
        var whole = RESPDecoder(maxBytes: 64)
        whole.feed(Array(("+" + String(repeating: "V", count: 100) + "\r\n").utf8))
        #expect(throws: RESPError.tooLarge(limit: 64)) { _ = try whole.next() }
    }

    /// maxBytes of Int.max: a bulk length at or near Int.max waits for its bytes instead
    /// of overflowing `count + 2` (a trap before); a shorter body with no CRLF is an error.
    @Test func bulkLengthNearIntMaxUnderUnlimitedLimit() throws {
        for length in [Int.max, Int.max - 1, Int.max - 2] {
            var decoder = RESPDecoder(maxBytes: .max)
            decoder.feed(Array("$\(length)\r\nabc".utf8))
            #expect(try decoder.next() == nil)
        }
        var short = RESPDecoder(maxBytes: .max)
        short.feed(Array("$1\r\nabc".utf8))
        #expect(throws: RESPError.malformed("string not followed by CRLF")) { _ = try short.next() }
    }

    @Test func encoderWritesArraysOfBulkStrings() {
        var out: [UInt8] = []
        RESPEncoder.command(["SET", "k", "välue"], into: &out)
        #expect(String(decoding: out, as: UTF8.self) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\nvälue\r\n")
        out.removeAll()
        RESPEncoder.command([[UInt8](repeating: 0, count: 12345)], into: &out)
        #expect(out.starts(with: Array("*1\r\n$12345\r\n".utf8)) && out.count == 12 + 12345 + 2)
        // Every length at the edges of the digit counts, read back by the decoder.
        for length in [0, 9, 10, 99, 100, 999, 1000] {
            let argument = String(repeating: "a", count: length)
            let arguments = Array(repeating: argument, count: length % 12 + 1)
            out.removeAll()
            RESPEncoder.command(arguments, into: &out)
            #expect(out.count == RESPEncoder.size(of: arguments))
            var decoder = RESPDecoder(maxBytes: 1 << 20)
            decoder.feed(out)
            #expect((try? decoder.next()) == .array(arguments.map { .bulkString(Array($0.utf8)) }), "length \(length)")
        }
    }
}

@Suite("Redis URLs")
struct RedisURLTests {
    @Test func parsesEveryPart() throws {
        let full = try #require(RedisURL("redis://app:s3cr:et@127.0.0.1:6380/2"))
        #expect(full == RedisURL(host: "127.0.0.1", port: 6380, username: "app", password: "s3cr:et", database: 2))
        #expect(RedisURL("redis://localhost") == RedisURL(host: "localhost", port: 6379, username: nil, password: nil, database: 0))
        #expect(RedisURL("redis://:pw@[::1]:7000/") == RedisURL(host: "::1", port: 7000, username: nil, password: "pw", database: 0))
        var configuration = RedisConfiguration()
        configuration = full.applied(to: configuration)
        #expect(configuration.username == "app" && configuration.password == "s3cr:et" && configuration.database == 2)
        #expect(try full.address() == .ipv4(host: "127.0.0.1", port: 6380))
    }

    @Test(arguments: ["rediss://h:1", "http://h", "redis://", "redis://h:0", "redis://h:70000", "redis://h:x",
                      "redis://h/db", "redis://h/-1", "redis://[::1", "redis://[::1]x"])
    func refusesWhatIsNotARedisURL(_ text: String) {
        #expect(RedisURL(text) == nil)
    }
}
