import HTTPTypes
import Testing
import TorusHTTP

@Suite("Valid requests")
struct ValidRequestTests {
    /// Parses one request and hands its head to `check` while it is still alive.
    func withHead(_ text: String, _ check: (RequestHead) throws -> Void) throws {
        var parser = HTTPRequestParser()
        var head: RequestHead?
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { buffer in
            _ = try parser.parse(buffer) { event in
                if case .head(let h) = event { head = h }
                return .proceed
            }
        }
        let h = try #require(head)
        try check(h)
    }

    @Test func simpleGet() throws {
        try withHead("GET /plaintext?x=1&y=2 HTTP/1.1\r\nHost: localhost:8080\r\nAccept: text/plain\r\nX-Empty:\r\nX-Spaces: \t padded \t \r\n\r\n") { h in
            #expect(h.method == .get)
            #expect(h.methodEquals("GET"))
            #expect(!h.methodEquals("get"))
            #expect(h.pathEquals("/plaintext"))
            #expect(!h.pathEquals("/plaintex"))
            #expect(!h.pathEquals("/plaintext?"))
            #expect(h.pathHasPrefix("/plain"))
            #expect(h.path == "/plaintext")
            #expect(h.query == "x=1&y=2")
            #expect(h.target == "/plaintext?x=1&y=2")
            #expect(h.targetForm == .origin)
            #expect(h.version == .http11)
            #expect(h.keepAlive)
            #expect(!h.expectContinue)
            #expect(!h.isUpgrade)
            #expect(h.bodyFraming == .none)
            #expect(!h.hasBody)
            #expect(h.contentLength == nil)
            #expect(h.host == "localhost:8080")
            #expect(h.header(named: "accept") == "text/plain")
            #expect(h.header(named: "ACCEPT") == "text/plain")
            #expect(h.header(named: "x-empty") == "")
            #expect(h.header(named: "X-Spaces") == "padded")
            #expect(h.header(named: "missing") == nil)
            #expect(h.headerValueEquals(named: "Accept", "TEXT/PLAIN", caseInsensitive: true))
            #expect(!h.headerValueEquals(named: "Accept", "TEXT/PLAIN"))
            #expect(h.containsHeader(named: "host"))
            #expect(h.headerCount == 4)
            #expect(h.headerName(at: 1) == "Accept")
            #expect(h.withHeaderValue(named: "accept") { $0.count } == 10)
            var names: [String] = []
            h.forEachHeader { name, _ in names.append(String(decoding: name, as: UTF8.self)) }
            #expect(names == ["Host", "Accept", "X-Empty", "X-Spaces"])
        }
    }

    @Test func methodsClassified() throws {
        let table: [(String, HTTPMethodKind)] = [
            ("GET", .get), ("HEAD", .head), ("POST", .post), ("PUT", .put), ("DELETE", .delete),
            ("OPTIONS", .options), ("TRACE", .trace), ("PATCH", .patch), ("PROPFIND", .other), ("get", .other),
        ]
        for (m, kind) in table {
            try withHead("\(m) / HTTP/1.1\r\nHost: a\r\n\r\n") { h in
                #expect(h.method == kind)
                #expect(h.methodString == m)
            }
        }
    }

    @Test func headRequest() throws {
        try withHead("HEAD /file.txt HTTP/1.1\r\nHost: a\r\n\r\n") { h in
            #expect(h.method == .head)
            #expect(!h.hasBody)
        }
        let out = parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.error == nil)
        #expect(out.heads.count == 2)
        #expect(out.endCount == 2)
    }

    @Test func optionsAsterisk() throws {
        try withHead("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n") { h in
            #expect(h.method == .options)
            #expect(h.targetForm == .asterisk)
            #expect(h.path == "*")
            let request = try h.makeHTTPRequest()
            #expect(request.method == .options)
            #expect(request.path == "*")
            #expect(request.authority == "example.com")
        }
    }

    @Test func absoluteForm() throws {
        try withHead("GET http://example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n") { h in
            #expect(h.targetForm == .absolute)
            #expect(h.targetAuthority == "example.com:8080")
            #expect(h.pathEquals("/a/b"))
            #expect(h.query == "x=1")
            let request = try h.makeHTTPRequest()
            #expect(request.authority == "example.com:8080")
            #expect(request.path == "/a/b?x=1")
            #expect(request.scheme == "http")
        }
        try withHead("GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n") { h in
            #expect(h.targetForm == .absolute)
            #expect(h.path == "")
            let path = try h.makeHTTPRequest().path
            #expect(path == "/")
        }
        try withHead("GET http://example.com?q HTTP/1.1\r\nHost: example.com\r\n\r\n") { h in
            let path = try h.makeHTTPRequest().path
            #expect(path == "/?q")
        }
    }

    @Test func connectAuthorityForm() throws {
        try withHead("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n") { h in
            #expect(h.method == .connect)
            #expect(h.targetForm == .authority)
            #expect(h.targetAuthority == "example.com:443")
            let request = try h.makeHTTPRequest()
            #expect(request.path == nil)
            #expect(request.authority == "example.com:443")
        }
    }

    @Test func makeHTTPRequest() throws {
        try withHead("POST /api/items?id=7 HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\nX-Multi: a\r\nX-Multi: b\r\nContent-Length: 2\r\n\r\n{}") { h in
            let request = try h.makeHTTPRequest(scheme: "https")
            #expect(request.method == .post)
            #expect(request.scheme == "https")
            #expect(request.authority == "api.example")
            #expect(request.path == "/api/items?id=7")
            #expect(request.headerFields[.contentType] == "application/json")
            #expect(request.headerFields[values: HTTPField.Name("X-Multi")!] == ["a", "b"])
            #expect(request.headerFields[.contentLength] == "2")
            #expect(request.headerFields[HTTPField.Name("Host")!] == nil)
            #expect(request.headerFields.count == 4)
        }
    }

    @Test func http11KeepAliveAndClose() throws {
        try withHead("GET / HTTP/1.1\r\nHost: a\r\n\r\n") { #expect($0.keepAlive) }
        try withHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") { #expect(!$0.keepAlive) }
        try withHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n") { #expect(!$0.keepAlive) }
        // After a non-keep-alive request the parser stops: pipelined bytes are not parsed.
        let text = "GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
        let out = parse(text)
        #expect(out.error == nil)
        #expect(out.heads.map(\.target) == ["/1"])
        #expect(out.endCount == 1)
        #expect(out.consumed == text.utf8.count - "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n".utf8.count)
    }

    @Test("a higher HTTP/1 minor version is read as HTTP/1.1 (RFC 9110 §2.5)")
    func higherMinorVersion() throws {
        for minor in 2...9 {
            try withHead("GET / HTTP/1.\(minor)\r\nHost: a\r\n\r\n") { h in
                #expect(h.version == .http11)
                #expect(h.keepAlive)
            }
        }
    }

    @Test func http10KeepAliveSemantics() throws {
        try withHead("GET / HTTP/1.0\r\n\r\n") { h in
            #expect(h.version == .http10)
            #expect(!h.keepAlive)
            #expect(h.host == nil)
        }
        try withHead("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") { #expect($0.keepAlive) }
        try withHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") { #expect($0.keepAlive) }
        try withHead("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n") { #expect(!$0.keepAlive) }
        // 100-continue is ignored for HTTP/1.0 (RFC 9110 §10.1.1).
        try withHead("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx") { #expect(!$0.expectContinue) }

        let keepAlive = parse("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n")
        #expect(keepAlive.error == nil)
        #expect(keepAlive.heads.map(\.target) == ["/a", "/b"])
        let parser = HTTPRequestParser()
        #expect(parser.isIdle)
    }

    @Test func expectContinue() throws {
        try withHead("POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n") { h in
            #expect(h.expectContinue)
            #expect(h.contentLength == 3)
        }
        // Head arrives first, so the server can send 100 Continue before the body shows up.
        var parser = HTTPRequestParser()
        var sawHead = false
        try Array("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n".utf8).withUnsafeBytes { b in
            _ = try parser.parse(b) { if case .head(let h) = $0 { sawHead = h.expectContinue }; return .proceed }
        }
        #expect(sawHead)
        #expect(!parser.isIdle)
    }

    @Test func upgradeWithPause() throws {
        let request = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let trailing: [UInt8] = [0x81, 0x85, 1, 2, 3, 4]  // a WebSocket frame follows immediately
        let bytes = Array(request.utf8) + trailing
        var parser = HTTPRequestParser()
        var events: [String] = []
        let consumed = try bytes.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                switch event {
                case .head(let h):
                    events.append("head upgrade=\(h.isUpgrade)")
                    return .pause
                case .body: events.append("body")
                case .end: events.append("end")
                }
                return .proceed
            }
        }
        #expect(events == ["head upgrade=true"])
        #expect(consumed == request.utf8.count)
        // Resuming with nothing delivers the pending end of the bodiless request.
        let n = try parser.parse(UnsafeRawBufferPointer(start: nil, count: 0)) { _ in events.append("end"); return .proceed }
        #expect(n == 0)
        #expect(events.last == "end")
        try withHead("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n") { #expect(!$0.isUpgrade) }
    }

    @Test func pipelinedHundred() throws {
        var text = ""
        for i in 0..<100 {
            if i % 10 == 3 {
                text += "POST /r\(i) HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nbody\(i % 10)"
            } else {
                text += "GET /r\(i) HTTP/1.1\r\nHost: a\r\nUser-Agent: test\r\n\r\n"
            }
        }
        let out = parse(text)
        #expect(out.error == nil)
        #expect(out.heads.count == 100)
        #expect(out.endCount == 100)
        #expect(out.heads.map(\.target) == (0..<100).map { "/r\($0)" })
        #expect(out.bodies.count == 10)
        #expect(out.bodies.allSatisfy { $0.string == "body3" })
        #expect(out.consumed == text.utf8.count)
    }

    @Test func contentLengthBodies() throws {
        let out = parse("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello worldPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        #expect(out.error == nil)
        #expect(out.bodies.map(\.string) == ["hello world"])
        #expect(out.events.count == 5)
        // Repeated identical Content-Length values are merged.
        let merged = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 005\r\n\r\nhello")
        #expect(merged.error == nil)
        #expect(merged.heads.first?.framing == .contentLength(5))
        #expect(merged.bodies.map(\.string) == ["hello"])
    }

    @Test func zeroContentLength() throws {
        try withHead("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") { h in
            #expect(h.bodyFraming == .none)
            #expect(h.contentLength == 0)
        }
    }

    @Test func chunkedWithExtensionsAndTrailers() throws {
        let text = "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
            + "5;name=value;flag\r\nhello\r\n"
            + "6 ; quoted=\"a;b\"\r\n world\r\n"
            + "0000000a\r\n0123456789\r\n"
            + "0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
            + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
        let out = parse(text)
        #expect(out.error == nil)
        #expect(out.heads.count == 2)
        #expect(out.heads.first?.framing == .chunked)
        #expect(out.bodies.map(\.string) == ["hello world0123456789"])
        #expect(out.events.last == .end)
        #expect(out.endCount == 2)
    }

    @Test func chunkedEmptyBody() throws {
        let out = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        #expect(out.error == nil)
        #expect(out.events.count == 2)
    }

    @Test func leadingEmptyLinesIgnored() throws {
        let out = parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.error == nil)
        #expect(out.heads.count == 1)
        // Also between pipelined requests (some clients send CRLF after a POST body).
        let after = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(after.error == nil)
        #expect(after.heads.count == 2)
    }

    @Test func obsTextAndTolerance() throws {
        try withHead("GET /a|b{c}^ HTTP/1.1\r\nHost: [::1]:80\r\nX-Latin: caf\u{E9}\r\nX-Tab: a\tb\r\n\r\n") { h in
            #expect(h.header(named: "x-latin") == "caf\u{E9}")
            #expect(h.header(named: "x-tab") == "a\tb")
            #expect(h.host == "[::1]:80")
        }
    }

    @Test func pauseAfterBodyAndResume() throws {
        let bytes = Array("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcdGET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        var parser = HTTPRequestParser()
        var ends = 0
        let first = try bytes.withUnsafeBytes { b in
            try parser.parse(b) { event in
                if case .end = event { ends += 1; return .pause }
                return .proceed
            }
        }
        #expect(ends == 1)
        #expect(parser.isIdle)
        let rest = Array(bytes[first...])
        let second = try rest.withUnsafeBytes { b in
            try parser.parse(b) { event in
                if case .end = event { ends += 1 }
                return .proceed
            }
        }
        #expect(second == rest.count)
        #expect(ends == 2)
    }

    @Test func headSurvivesNextRequest() throws {
        // A retained head keeps its bytes even after the parser reuses its storage.
        var parser = HTTPRequestParser()
        var kept: [RequestHead] = []
        let bytes = Array("GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: b\r\n\r\n".utf8)
        try bytes.withUnsafeBytes { b in
            _ = try parser.parse(b) { if case .head(let h) = $0 { kept.append(h) }; return .proceed }
        }
        #expect(kept.map(\.target) == ["/first", "/second"])
        #expect(kept.map(\.host) == ["a", "b"])
    }
}
