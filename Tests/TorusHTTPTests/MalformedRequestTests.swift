import Testing
import TorusHTTP

struct MalformedCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: [UInt8]
    var status: Int
    var testDescription: String { name }

    init(_ name: String, _ text: String, _ status: Int) {
        self.name = name
        self.input = Array(text.utf8)
        self.status = status
    }

    init(_ name: String, bytes: [UInt8], _ status: Int) {
        self.name = name
        self.input = bytes
        self.status = status
    }
}

private let rl = "GET / HTTP/1.1\r\n"
private let host = "Host: example.com\r\n"
private let post = "POST /upload HTTP/1.1\r\nHost: example.com\r\n"
private let chunkedPost = post + "Transfer-Encoding: chunked\r\n\r\n"

let malformedCases: [MalformedCase] = [
    // Framing / smuggling
    MalformedCase("CL + TE", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    MalformedCase("TE + CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    MalformedCase("CL + TE gzip", post + "Content-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    MalformedCase("differing CL lines", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400),
    MalformedCase("differing CL list", post + "Content-Length: 5, 6\r\n\r\nhello", 400),
    MalformedCase("CL plus sign", post + "Content-Length: +5\r\n\r\nhello", 400),
    MalformedCase("CL minus sign", post + "Content-Length: -1\r\n\r\n", 400),
    MalformedCase("CL junk suffix", post + "Content-Length: 5a\r\n\r\nhello", 400),
    MalformedCase("CL empty", post + "Content-Length:\r\n\r\n", 400),
    MalformedCase("CL overflow", post + "Content-Length: 99999999999999999999999\r\n\r\n", 400),
    MalformedCase("CL hex", post + "Content-Length: 0x10\r\n\r\n", 400),
    MalformedCase("CL inner space", post + "Content-Length: 1 0\r\n\r\n", 400),
    MalformedCase("CL underscore", post + "Content-Length: 1_0\r\n\r\n", 400),
    MalformedCase("CL trailing comma", post + "Content-Length: 5,\r\n\r\nhello", 400),
    MalformedCase("TE gzip (chunked not final)", post + "Transfer-Encoding: gzip\r\n\r\n", 400),
    MalformedCase("TE identity (chunked not final)", post + "Transfer-Encoding: identity\r\n\r\n", 400),
    MalformedCase("TE chunked not last", post + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    MalformedCase("TE gzip then chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    MalformedCase("TE chunked twice", post + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    MalformedCase("TE chunked twice lines", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    MalformedCase("TE chunked params", post + "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    MalformedCase("TE empty", post + "Transfer-Encoding:\r\n\r\n", 400),
    MalformedCase("TE junk", post + "Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    MalformedCase("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    // Line structure
    MalformedCase("obs-fold SP", rl + host + "X-A: b\r\n c\r\n\r\n", 400),
    MalformedCase("obs-fold HTAB", rl + host + "X-A: b\r\n\tc\r\n\r\n", 400),
    MalformedCase("obs-fold first field", rl + " Host: example.com\r\n\r\n", 400),
    MalformedCase("space before colon", rl + "Host : example.com\r\n\r\n", 400),
    MalformedCase("tab before colon", rl + host + "X-A\t: b\r\n\r\n", 400),
    MalformedCase("TE space before colon", post + "Transfer-Encoding : chunked\r\n\r\n", 400),
    MalformedCase("bare CR in value", rl + host + "X-A: a\rb\r\n\r\n", 400),
    MalformedCase("bare CR in request line", "GET /\r HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("CR CR LF", rl + host + "X-A: a\r\r\n\r\n", 400),
    MalformedCase("bare LF everywhere", "GET / HTTP/1.1\nHost: example.com\n\n", 400),
    MalformedCase("bare LF in fields", rl + "Host: example.com\nX-A: b\r\n\r\n", 400),
    MalformedCase("bare LF final", rl + host + "\n", 400),
    MalformedCase("bare LF leading", "\nGET / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("NUL in value", rl + host + "X-A: a\u{0}b\r\n\r\n", 400),
    MalformedCase("SOH in value", rl + host + "X-A: a\u{1}b\r\n\r\n", 400),
    MalformedCase("DEL in value", rl + host + "X-A: a\u{7F}b\r\n\r\n", 400),
    MalformedCase("ESC in value", rl + host + "X-A: \u{1B}[31m\r\n\r\n", 400),
    // Method / names
    MalformedCase("method with @", "G@T / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("method with paren", "GE(T / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("empty method", " / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("TLS client hello", bytes: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03], 400),
    MalformedCase("method too long", String(repeating: "A", count: 40) + " / HTTP/1.1\r\n" + host + "\r\n", 501),
    MalformedCase("field name with @", rl + host + "X@Y: a\r\n\r\n", 400),
    MalformedCase("field name non-ASCII", rl + host + "X-\u{E9}: a\r\n\r\n", 400),
    MalformedCase("empty field name", rl + host + ": a\r\n\r\n", 400),
    MalformedCase("field without colon", rl + host + "X-A b\r\n\r\n", 400),
    MalformedCase("field name with slash", rl + host + "X/Y: a\r\n\r\n", 400),
    // Host
    MalformedCase("missing Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    MalformedCase("repeated Host", rl + host + "Host: other.com\r\n\r\n", 400),
    MalformedCase("repeated Host case", rl + "host: a\r\nHOST: a\r\n\r\n", 400),
    MalformedCase("Host with space", rl + "Host: a b\r\n\r\n", 400),
    MalformedCase("Host with userinfo", rl + "Host: user@a\r\n\r\n", 400),
    MalformedCase("Host with slash", rl + "Host: a/b\r\n\r\n", 400),
    // Target
    MalformedCase("relative target", "GET foo HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("fragment in target", "GET /a#b HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("bad percent", "GET /a%zz HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("truncated percent", "GET /a%2 HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("non-ASCII target", "GET /caf\u{E9} HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("tab in target", "GET /a\tb HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("asterisk with GET", "GET * HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("absolute without authority", "GET http:///path HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("absolute with userinfo", "GET http://u@h/ HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("CONNECT origin-form", "CONNECT / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("double space", "GET  / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("leading space", " GET / HTTP/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("target too long", "GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\n" + host + "\r\n", 414),
    // Version
    MalformedCase("HTTP/0.9 style", "GET /\r\n\r\n", 400),
    MalformedCase("lowercase version", "GET / http/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("trailing space after version", "GET / HTTP/1.1 \r\n" + host + "\r\n", 400),
    MalformedCase("version two digits", "GET / HTTP/1.10\r\n" + host + "\r\n", 400),
    MalformedCase("version junk", "GET / HTTX/1.1\r\n" + host + "\r\n", 400),
    MalformedCase("HTTP/2.0", "GET / HTTP/2.0\r\n" + host + "\r\n", 505),
    MalformedCase("HTTP/1.9 without Host (served as 1.1)", "GET / HTTP/1.9\r\n\r\n", 400),
    MalformedCase("HTTP/9.1", "GET / HTTP/9.1\r\n" + host + "\r\n", 505),
    MalformedCase("HTTP/0.9", "GET / HTTP/0.9\r\n" + host + "\r\n", 505),
    MalformedCase("HTTP/3.0", "GET / HTTP/3.0\r\n" + host + "\r\n", 505),
    // Limits
    MalformedCase("head too large", rl + host + String(repeating: "X-Pad: " + String(repeating: "p", count: 1000) + "\r\n", count: 17) + "\r\n", 431),
    MalformedCase("too many fields", rl + host + String(repeating: "X-A: b\r\n", count: 100) + "\r\n", 431),
    MalformedCase("CL above body limit", post + "Content-Length: 9000000\r\n\r\n", 413),
    MalformedCase("chunk above body limit", chunkedPost + "900000\r\n", 413),
    MalformedCase("huge chunk size", chunkedPost + "ffffffffffffffffffffffff\r\n", 413),
    // Chunked body
    MalformedCase("chunk size not hex", chunkedPost + "zz\r\n", 400),
    MalformedCase("chunk size empty", chunkedPost + "\r\n", 400),
    MalformedCase("chunk size leading space", chunkedPost + " 5\r\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("chunk size trailing space", chunkedPost + "5 \r\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("chunk size 0x prefix", chunkedPost + "0x5\r\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("chunk size bare LF", chunkedPost + "5\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("chunk data too long", chunkedPost + "5\r\nhello!\r\n0\r\n\r\n", 400),
    MalformedCase("chunk data bare LF terminator", chunkedPost + "5\r\nhello\n0\r\n\r\n", 400),
    MalformedCase("chunk ext with NUL", chunkedPost + "5;a=\u{0}\r\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("chunk ext bare LF", chunkedPost + "5;a=b\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("chunk line too long", chunkedPost + "5;" + String(repeating: "x", count: 5000) + "\r\nhello\r\n0\r\n\r\n", 400),
    MalformedCase("trailer obs-fold", chunkedPost + "0\r\nX-T: a\r\n b\r\n\r\n", 400),
    MalformedCase("trailer space before colon", chunkedPost + "0\r\nX-T : a\r\n\r\n", 400),
    MalformedCase("trailer bare LF", chunkedPost + "0\r\nX-T: a\n\r\n", 400),
    MalformedCase("trailer NUL", chunkedPost + "0\r\nX-T: a\u{0}\r\n\r\n", 400),
    MalformedCase("trailer no colon", chunkedPost + "0\r\nX-T\r\n\r\n", 400),
    MalformedCase("trailer final bare CR", chunkedPost + "0\r\n\rX", 400),
]

@Suite("Malformed requests")
struct MalformedRequestTests {
    @Test("rejected with the right status", arguments: malformedCases)
    func rejected(_ c: MalformedCase) {
        let whole = parsePieces(c.input)
        #expect(whole.error?.statusCode == c.status, "got \(String(describing: whole.error))")
        #expect(whole.heads.isEmpty || whole.error != nil)
        // Same verdict when the input arrives one byte at a time.
        let bytewise = parsePieces(c.input, cuts: Array(0..<c.input.count))
        #expect(bytewise.error == whole.error)
    }

    @Test func atLeastFiftyCases() {
        #expect(malformedCases.count >= 50)
    }

    @Test func errorIsTerminal() throws {
        var parser = HTTPRequestParser()
        let bad = Array("GET / HTTP/1.1\nHost: a\n\n".utf8)
        let good = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        var events = 0
        #expect(throws: HTTPParseError.bareLF) {
            try bad.withUnsafeBytes { _ = try parser.parse($0) { _ in events += 1; return .proceed } }
        }
        #expect(throws: HTTPParseError.bareLF) {
            try good.withUnsafeBytes { _ = try parser.parse($0) { _ in events += 1; return .proceed } }
        }
        #expect(events == 0)
        #expect(parser.error == .bareLF)
    }

    @Test func customLimits() {
        let limits = HTTPLimits(maxHeadBytes: 64, maxHeaderCount: 2, maxTargetLength: 10, maxBodyBytes: 4)
        #expect(parse("GET /0123456789a HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits).error == .targetTooLong)
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", limits: limits).error == .tooManyHeaders)
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nA: " + String(repeating: "x", count: 60) + "\r\n\r\n", limits: limits).error == .headTooLarge)
        #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", limits: limits).error == .bodyTooLarge)
        #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\n", limits: limits).error == .bodyTooLarge)
        #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd", limits: limits).error == nil)
    }

    @Test func everyErrorHasAKnownStatus() {
        for e in HTTPParseError.allCases {
            #expect([400, 413, 414, 431, 501, 505].contains(e.statusCode))
            #expect(!e.detail.isEmpty)
        }
    }
}
