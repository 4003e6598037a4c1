import HTTPTypes
import Testing
import TorusHTTP

/// What a response parse produced, in an owned, comparable form (body pieces merged).
struct ResponseOutcome: Equatable {
    var heads: [String] = []      // "1.1 200 ka=true framing"
    var informational: [Int] = []
    var bodies: [[UInt8]] = []
    var trailers: [String] = []
    var ends = 0
    var error: HTTPParseError?
}

/// Feeds `bytes` in pieces ending at `cuts`; then `finish` when `eof`.
func parseResponse(_ bytes: [UInt8], cuts: [Int] = [], head: Bool = false, eof: Bool = false,
                   limits: HTTPLimits = .response) -> ResponseOutcome {
    var parser = HTTPResponseParser(limits: limits)
    parser.expectResponse(toHEAD: head)
    var out = ResponseOutcome()
    var current: [UInt8]?
    func record(_ e: HTTPResponseParser.Event) -> HTTPResponseParser.Control {
        switch e {
        case .informational(let h): out.informational.append(h.status.code)
        case .head(let h):
            out.heads.append("\(h.version) \(h.status.code) ka=\(h.keepAlive) \(h.framing)")
            current = []
        case .body(let b):
            precondition(!b.isEmpty)
            current = (current ?? []) + Array(b)
        case .end(let t):
            out.bodies.append(current ?? [])
            current = nil
            out.trailers += t.map { "\($0.name): \($0.value)" }
            out.ends += 1
        }
        return .proceed
    }
    var start = 0
    do {
        for end in cuts + [bytes.count] where end >= start {
            try bytes[start..<end].withUnsafeBytes { p in _ = try parser.parse(p, record) }
            start = end
        }
        if eof { try parser.finish(record) }
    } catch {
        out.error = error as? HTTPParseError
    }
    return out
}

func parseResponse(_ text: String, head: Bool = false, eof: Bool = false,
                   limits: HTTPLimits = .response) -> ResponseOutcome {
    parseResponse(Array(text.utf8), head: head, eof: eof, limits: limits)
}

@Suite("Response parser")
struct ResponseParserTests {
    @Test("Content-Length body, fields and reason")
    func contentLength() {
        var parser = HTTPResponseParser()
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        var ended = false
        let text = "HTTP/1.1 201 Created Here\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A:  b c \r\n\r\nhello"
        _ = try? Array(text.utf8).withUnsafeBytes { p in
            try parser.parse(p) { e in
                switch e {
                case .head(let h): head = h
                case .body(let b): body += b
                case .end: ended = true
                case .informational: break
                }
                return .proceed
            }
        }
        #expect(head?.status.code == 201)
        #expect(head?.status.reasonPhrase == "Created Here")
        #expect(head?.headerFields[.contentType] == "text/plain")
        #expect(head?.headerFields[HTTPField.Name("x-a")!] == "b c")
        #expect(head?.framing == .contentLength(5))
        #expect(head?.keepAlive == true)
        #expect(body.string == "hello")
        #expect(ended)
        #expect(parser.isIdle)
    }

    @Test("chunked with extensions and trailers")
    func chunked() {
        let r = parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\nX-B: c\r\n\r\n")
        #expect(r.error == nil)
        #expect(r.bodies == [Array("hello world".utf8)])
        #expect(r.trailers == ["X-Sum: 42", "X-B: c"])
        #expect(r.heads == ["HTTP/1.1 200 ka=true chunked"])
    }

    @Test("read until close ends at EOF, and not keep-alive")
    func untilClose() {
        let r = parseResponse("HTTP/1.1 200 OK\r\n\r\nall of this", eof: true)
        #expect(r.heads == ["HTTP/1.1 200 ka=false untilClose"])
        #expect(r.bodies == [Array("all of this".utf8)])
        #expect(r.ends == 1)
        let te = parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", eof: true)
        #expect(te.heads == ["HTTP/1.1 200 ka=false untilClose"])
    }

    @Test("no body: HEAD, 204, 304; 1xx before the final response; 101 ends parsing")
    func bodiless() {
        let head = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", head: true)
        #expect(head.heads == ["HTTP/1.1 200 ka=true none"] && head.ends == 1)
        let noContent = parseResponse("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n")
        #expect(noContent.ends == 1 && noContent.bodies == [[]])
        let notModified = parseResponse("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n")
        #expect(notModified.ends == 1)
        let info = parseResponse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(info.informational == [100, 103])
        #expect(info.bodies == [Array("ok".utf8)])
        var p = HTTPResponseParser()
        let bytes = Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".utf8) + [0x81, 0x00]
        let consumed = try? bytes.withUnsafeBytes { b in try p.parse(b) { _ in .proceed } }
        #expect(p.isClosed)
        #expect(consumed == bytes.count - 2)
    }

    @Test("keep-alive by version and Connection")
    func keepAlive() {
        #expect(parseResponse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").heads == ["HTTP/1.0 200 ka=false contentLength(0)"])
        #expect(parseResponse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").heads
                == ["HTTP/1.0 200 ka=true contentLength(0)"])
        #expect(parseResponse("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n").heads
                == ["HTTP/1.1 200 ka=false contentLength(0)"])
    }

    @Test("pipelined responses in one buffer; bare LF accepted as line end")
    func pipelined() {
        let one = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        let two = "HTTP/1.1 404 Not Found\nTransfer-Encoding: chunked\n\n2\nno\n0\n\n"
        let r = parseResponse(one + two + one)
        #expect(r.error == nil)
        #expect(r.ends == 3)
        #expect(r.bodies == [Array("abc".utf8), Array("no".utf8), Array("abc".utf8)])
    }

    @Test("split at every byte boundary gives the same events")
    func splitInvariance() {
        let samples = [
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nServer: t\r\n\r\nhello world",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
        ]
        for sample in samples {
            let bytes = Array(sample.utf8)
            let whole = parseResponse(bytes)
            #expect(whole.error == nil)
            for cut in 0...bytes.count {
                #expect(parseResponse(bytes, cuts: [cut]) == whole, "cut at \(cut)")
            }
            let bytewise = parseResponse(bytes, cuts: Array(0...bytes.count))
            #expect(bytewise == whole)
        }
    }

    static let errorCases: [(String, String, HTTPParseError)] = [
        ("no version", "HTTX/1.1 200 OK\r\n\r\n", .invalidVersion),
        ("HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", .unsupportedVersion),
        ("short line", "HTTP/1.1 20\r\n\r\n", .invalidStatusLine),
        ("code letters", "HTTP/1.1 2x0 OK\r\n\r\n", .invalidStatusCode),
        ("code 099", "HTTP/1.1 099 Low\r\n\r\n", .invalidStatusCode),
        ("four digits", "HTTP/1.1 2000 OK\r\n\r\n", .invalidStatusCode),
        ("bare CR", "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", .bareCR),
        ("obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", .obsFold),
        ("space before colon", "HTTP/1.1 200 OK\r\nA : b\r\n\r\n", .whitespaceBeforeColon),
        ("no colon", "HTTP/1.1 200 OK\r\nAb\r\n\r\n", .invalidHeaderName),
        ("bad name", "HTTP/1.1 200 OK\r\nA(b: c\r\n\r\n", .invalidHeaderName),
        ("NUL in value", "HTTP/1.1 200 OK\r\nA: b\u{0}\r\n\r\n", .invalidHeaderValue),
        ("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", .contentLengthWithTransferEncoding),
        ("differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", .conflictingContentLength),
        ("CL sign", "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n", .invalidContentLength),
        ("CL overflow", "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999999\r\n\r\n", .invalidContentLength),
        ("chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .invalidTransferEncoding),
        ("TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", .invalidTransferEncoding),
        ("chunk size junk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .invalidChunkSize),
        ("chunk size empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", .invalidChunkSize),
        ("chunk size overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", .invalidChunkSize),
        ("chunk terminator", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", .invalidChunkTerminator),
        ("bad trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", .whitespaceBeforeColon),
        ("bad trailer name", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n(bad: x\r\n\r\n", .invalidTrailer),
    ]

    @Test("malformed responses", arguments: 0..<errorCases.count)
    func malformed(_ index: Int) {
        let (name, text, error) = Self.errorCases[index]
        #expect(parseResponse(text).error == error, "\(name)")
    }

    @Test("limits: head size, field count, body size, chunk line")
    func limits() {
        let small = HTTPLimits(maxHeadBytes: 64, maxHeaderCount: 3, maxBodyBytes: 10, maxChunkLineLength: 8)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 80) + "\r\n\r\n", limits: small).error == .headTooLarge)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits: small).error == .tooManyHeaders)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", limits: small).error == .bodyTooLarge)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n", limits: small).error == .bodyTooLarge)
        #expect(parseResponse("HTTP/1.1 200 OK\r\n\r\n" + String(repeating: "x", count: 11), eof: true, limits: small).error == .bodyTooLarge)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;aaaaaaaaaa\r\n", limits: small).error == .invalidChunkExtension)
    }

    @Test("a body until the close past the limit: the first maxBodyBytes bytes, then bodyTooLarge, wherever the input is cut")
    func untilCloseLimitDoesNotDependOnCuts() {
        // Found by the HTTP fuzzer: read whole, the parser refused at once; read in two
        // pieces, it delivered the first piece, then refused.
        let small = HTTPLimits(maxHeadBytes: 64, maxHeaderCount: 3, maxBodyBytes: 10, maxChunkLineLength: 8)
        let bytes = Array("HTTP/1.1 200 OK\r\n\r\n0123456789abcdef".utf8)
        for cut in 0...bytes.count {
            var parser = HTTPResponseParser(limits: small)
            var body: [UInt8] = []
            var error: HTTPParseError?
            do {
                for piece in [bytes[..<cut], bytes[cut...]] where !piece.isEmpty {
                    try piece.withUnsafeBytes { p in
                        _ = try parser.parse(p) { event in
                            if case .body(let b) = event { body += Array(b) }
                            return .proceed
                        }
                    }
                }
            } catch let e {
                error = e as? HTTPParseError
            }
            #expect(body == Array("0123456789".utf8), "cut at \(cut)")
            #expect(error == .bodyTooLarge, "cut at \(cut)")
        }
    }

    @Test("EOF in the middle of a response is premature; between responses it is not")
    func prematureEnd() {
        #expect(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", eof: true).error == .prematureEnd)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nContent-Le", eof: true).error == .prematureEnd)
        #expect(parseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", eof: true).error == .prematureEnd)
        let ok = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", eof: true)
        #expect(ok.error == nil && ok.ends == 1)
        #expect(parseResponse("", eof: true).error == nil)
    }

    @Test("randomly mutated responses: whole, split and byte-wise parses agree (and never crash)")
    func mutations() {
        let seeds = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nrest",
        ].map { Array($0.utf8) }
        let alphabet = Array("\r\n:; 0123456789abcdefHTP/.-,chunkedContent-Length".utf8) + [0, 0x7F, 0xFF]
        var rng = XorShift(seed: 12345)
        for round in 0..<1000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: bytes[at] = alphabet.randomElement(using: &rng)!
                case 1: bytes.insert(alphabet.randomElement(using: &rng)!, at: at)
                default: if bytes.count > 1 { bytes.remove(at: at) }
                }
            }
            let eof = round % 2 == 0
            let whole = parseResponse(bytes, eof: eof)
            let cut = Int.random(in: 0...bytes.count, using: &rng)
            #expect(parseResponse(bytes, cuts: [cut], eof: eof) == whole, "round \(round) cut \(cut): \(bytes.string.debugDescription)")
            #expect(parseResponse(bytes, cuts: Array(0...bytes.count), eof: eof) == whole, "round \(round) bytewise")
        }
    }
}
