import Testing
@testable import TorusHTTP

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
private struct SeededBytes {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// A byte, half the time one of the bytes the scanners treat specially.
    mutating func byte() -> UInt8 {
        let special: [UInt8] = [0x0D, 0x0A, 0x09, 0x20, 0x00, 0x0B, 0x0C, 0x1F, 0x7F, 0x80, 0xFF, 0x3A, 0x2D, 0x25]
        return below(2) == 0 ? special[below(special.count)] : UInt8(truncatingIfNeeded: next() >> 32)
    }
}

/// The grammar, spelled out independently of the table (RFC 9110 §5.6.2, §5.5; RFC 3986).
private enum Grammar {
    static func isAlnum(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
    }
    static func tchar(_ b: UInt8) -> Bool { isAlnum(b) || Array("!#$%&'*+-.^_`|~".utf8).contains(b) }
    static func fieldValue(_ b: UInt8) -> Bool { b == 0x09 || (0x20...0x7E).contains(b) || b >= 0x80 }
    static func target(_ b: UInt8) -> Bool { (0x21...0x7E).contains(b) && b != UInt8(ascii: "#") }
    static func authority(_ b: UInt8) -> Bool { isAlnum(b) || Array("-._~!$&'()*+,;=:[]%".utf8).contains(b) }
    static func ows(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
}

@Suite("Byte classes and word-at-a-time searches")
struct ByteClassTests {
    @Test("the table has 256 entries and each matches the grammar")
    func tableMatchesGrammar() {
        #expect(ByteClass.entries.utf8CodeUnitCount == 256)
        for value in 0...255 {
            let b = UInt8(value)
            #expect(isTokenChar(b) == Grammar.tchar(b), "tchar \(b)")
            #expect(isFieldValueChar(b) == Grammar.fieldValue(b), "field value \(b)")
            #expect(isTargetChar(b) == Grammar.target(b), "target \(b)")
            #expect(isAuthorityChar(b) == Grammar.authority(b), "authority \(b)")
            #expect(isOWS(b) == Grammar.ows(b), "OWS \(b)")
            #expect(isPlainTargetChar(b) == (Grammar.target(b) && b != UInt8(ascii: "%") && b != UInt8(ascii: "?")), "plain target \(b)")
        }
    }

    @Test("word-at-a-time searches find what a byte-by-byte search finds")
    func searchesMatchByteByByte() {
        var random = SeededBytes(state: 0x9E37_79B9_7F4A_7C15)
        for _ in 0..<20_000 {
            let count = random.below(70)
            // Mostly ordinary bytes, so runs are long enough to be skipped word by word.
            let bytes = (0..<count).map { _ in random.below(8) == 0 ? random.byte() : UInt8(0x61 + random.below(26)) }
            let from = count == 0 ? 0 : random.below(count + 1)
            let end = from + random.below(count - from + 1)
            bytes.withUnsafeBufferPointer { p in
                guard let base = p.baseAddress else { return }
                let lineBreak = (from..<end).first { bytes[$0] == 0x0D || bytes[$0] == 0x0A } ?? end
                #expect(ByteSearch.firstLineBreak(base, from, end) == lineBreak, "\(bytes) \(from)..<\(end)")
                let nonValue = (from..<end).first { !Grammar.fieldValue(bytes[$0]) } ?? end
                #expect(ByteSearch.firstNonFieldValue(base, from, end) == nonValue, "\(bytes) \(from)..<\(end)")
            }
        }
    }

    @Test("well-known names and values match by word exactly as by lowercased bytes")
    func wordComparisonMatchesBytes() {
        var random = SeededBytes(state: 42)
        let words: [StaticString] = ["host", "expect", "upgrade", "connection", "content-length",
                                     "transfer-encoding", "keep-alive", "close", "100-continue"]
        let valueBytes = (0...255).map(UInt8.init).filter(Grammar.fieldValue)
        for word in words {
            let lower = Array(UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
            for _ in 0..<5_000 {
                // The word with random case, sometimes with one byte replaced by any
                // field-value byte (which tchar are too).
                var candidate = lower.map { random.below(2) == 0 ? $0 : ($0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0) }
                if random.below(2) == 0 { candidate[random.below(candidate.count)] = valueBytes[random.below(valueBytes.count)] }
                let expected = candidate.map(asciiLower) == lower
                candidate.withUnsafeBufferPointer { p in
                    guard let base = p.baseAddress else { return }
                    #expect(tokenEqualsLowercased(base, 0, word) == expected, "\(candidate) vs \(word)")
                }
            }
        }
    }

    @Test("request-line limits report the same error at the same byte however the input is split")
    func requestLineErrorsDoNotDependOnSplits() throws {
        let small = HTTPLimits(maxHeadBytes: 40, maxHeaderCount: 4, maxTargetLength: 12, maxMethodLength: 5)
        let longTargets = HTTPLimits(maxHeadBytes: 40, maxHeaderCount: 4, maxTargetLength: 100, maxMethodLength: 5)
        let cases: [(String, HTTPLimits, HTTPParseError)] = [
            ("GETTING / HTTP/1.1\r\n", small, .methodTooLong),
            ("GE(T / HTTP/1.1\r\n", small, .invalidMethod),
            // After the first space the scanner allows maxTargetLength + 10 bytes (room
            // for the version) before the line ends: the 23rd is one too many.
            ("GET /0123456789abcdefghijklm", small, .targetTooLong),
            ("GET /0123456789abcdefghijklmnopqrstuvwxyz", longTargets, .headTooLarge),
            // Leading empty lines count towards the head: 42 bytes.
            ("\r\n\r\nGET /0123456789a HTTP/1.1\r\nHost: xyz\r\n", small, .headTooLarge),
        ]
        for (text, limits, expected) in cases {
            let bytes = Array(text.utf8)
            for step in [bytes.count, 1, 2, 3, 7, 9] {
                var parser = HTTPRequestParser(limits: limits)
                var thrown: HTTPParseError?
                var start = 0
                while start < bytes.count && thrown == nil {
                    let end = min(start + step, bytes.count)
                    do {
                        try bytes[start..<end].withUnsafeBytes { raw in
                            _ = try parser.parse(raw) { _ in .proceed }
                        }
                    } catch let error as HTTPParseError {
                        thrown = error
                    }
                    start = end
                }
                #expect(thrown == expected, "\(text.debugDescription) in pieces of \(step)")
            }
        }
    }
}
