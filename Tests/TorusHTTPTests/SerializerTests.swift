import HTTPTypes
import Testing
import TorusHTTP

@Suite("Serializer")
struct SerializerTests {
    // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 example)
    static let rfcExample = 784_111_777

    func serializer() -> HTTPResponseSerializer {
        HTTPResponseSerializer(dateCache: HTTPDateCache(epochSeconds: Self.rfcExample), refreshDate: false)
    }

    @Test func generalHead() {
        var s = serializer()
        var out: [UInt8] = []
        var response = HTTPResponse(status: .ok)
        response.headerFields[.contentType] = "text/plain"
        response.headerFields[.server] = "Torus"
        response.headerFields[.contentLength] = "999"  // ignored: framing decides
        s.writeResponse(response, body: Array("Hello, World!".utf8), keepAlive: true, into: &out)
        #expect(out.string == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: Torus\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 13\r\n\r\nHello, World!")
    }

    @Test func closeAndHTTP10KeepAlive() {
        var s = serializer()
        var out: [UInt8] = []
        s.writeHead(HTTPResponse(status: .notFound), framing: .contentLength(0), keepAlive: false, into: &out)
        #expect(out.string == "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        out.removeAll(keepingCapacity: true)
        s.writeHead(HTTPResponse(status: .noContent), framing: .none, keepAlive: true, requestVersion: .http10, into: &out)
        #expect(out.string == "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: keep-alive\r\n\r\n")
    }

    @Test func headResponseOmitsBody() {
        var s = serializer()
        var out: [UInt8] = []
        s.writeResponse(HTTPResponse(status: .ok), body: Array("abc".utf8), keepAlive: true, isHeadRequest: true, into: &out)
        #expect(out.string == "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 3\r\n\r\n")
    }

    @Test func switchingProtocolsKeepsConnectionField() {
        var s = serializer()
        var out: [UInt8] = []
        var response = HTTPResponse(status: .switchingProtocols)
        response.headerFields[.connection] = "Upgrade"
        response.headerFields[.upgrade] = "websocket"
        response.headerFields[.date] = "Mon, 01 Jan 2024 00:00:00 GMT"
        s.writeHead(response, framing: .none, keepAlive: true, into: &out)
        #expect(out.string == "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n")
    }

    @Test func chunkedEncoding() {
        var s = serializer()
        var out: [UInt8] = []
        s.writeHead(HTTPResponse(status: .ok), framing: .chunked, keepAlive: true, into: &out)
        Array("hello".utf8).withUnsafeBytes { ChunkFraming.writeChunk($0, into: &out) }
        ChunkFraming.writeHeader(size: 0x1ab, into: &out)
        ChunkFraming.writeEnd(into: &out)
        ChunkFraming.writeLastChunk(into: &out)
        #expect(out.string == "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1ab\r\n\r\n0\r\n\r\n")
    }

    @Test func chunkedOutputRoundTripsThroughParser() {
        var wire = Array("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        let body = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var i = 0
        while i < body.count {
            let n = min(body.count - i, 777)
            body[i..<i + n].withUnsafeBytes { ChunkFraming.writeChunk($0, into: &wire) }
            i += n
        }
        ChunkFraming.writeLastChunk(into: &wire)
        let out = parsePieces(wire)
        #expect(out.error == nil)
        #expect(out.bodies == [body])
    }

    @Test func continueResponse() {
        var out: [UInt8] = []
        HTTPResponseSerializer.writeContinue(into: &out)
        #expect(out.string == "HTTP/1.1 100 Continue\r\n\r\n")
    }

    @Test func precomputedFastPath() {
        var s = serializer()
        let plaintext = PrecomputedResponse(contentType: "text/plain", body: "Hello, World!", headerFields: [.server: "Torus"])
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        s.write(plaintext, into: &out)
        s.write(plaintext, keepAlive: false, into: &out)
        let one = "HTTP/1.1 200 OK\r\nServer: Torus\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nHello, World!"
        let two = "HTTP/1.1 200 OK\r\nServer: Torus\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\nHello, World!"
        #expect(out.string == one + two)
        out.removeAll(keepingCapacity: true)
        s.write(plaintext, isHeadRequest: true, into: &out)
        #expect(out.string == "HTTP/1.1 200 OK\r\nServer: Torus\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n")
        out.removeAll(keepingCapacity: true)
        s.write(plaintext, requestVersion: .http10, into: &out)
        #expect(out.string == "HTTP/1.1 200 OK\r\nServer: Torus\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: keep-alive\r\n\r\nHello, World!")
        out.removeAll(keepingCapacity: true)
        s.write(plaintext, keepAlive: false, isHeadRequest: true, into: &out)
        #expect(out.string == "HTTP/1.1 200 OK\r\nServer: Torus\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n")
        // The date cache's value and string are the 29-byte IMF-fixdate alone.
        var bare: [UInt8] = []
        s.dateCache.append(to: &bare)
        #expect(bare.string == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(s.dateCache.string == "Sun, 06 Nov 1994 08:49:37 GMT")
    }

    /// The kept-alive HTTP/1.1 answer is composed whole once per second and response
    /// (``ComposedAnswers``): the bytes must be those of the three-copy path, follow the
    /// Date when the second changes, stay right when more fixed responses than cached
    /// entries take turns, and large answers bypass the cache.
    @Test func composedAnswers() {
        var s = serializer()
        func threeCopies(_ r: PrecomputedResponse, body: [UInt8], _ date: HTTPDateCache) -> [UInt8] {
            // The same answer built the long way: the head (a HEAD answer, never composed),
            // then the body.
            var t = HTTPResponseSerializer(dateCache: date, refreshDate: false)
            var head: [UInt8] = []
            t.write(r, keepAlive: true, isHeadRequest: true, into: &head)
            return head + body
        }
        let responses = (0..<6).map { PrecomputedResponse(contentType: "text/plain", body: "answer \($0)") }
        var out: [UInt8] = []
        for second in [Self.rfcExample, Self.rfcExample + 1, Self.rfcExample + 86_400] {
            s.dateCache.update(epochSeconds: second)
            for round in 0..<3 {
                for (k, r) in responses.enumerated() where round == 0 || k < 4 || k.isMultiple(of: 2) {
                    out.removeAll(keepingCapacity: true)
                    s.write(r, into: &out)
                    let date = HTTPDateCache(epochSeconds: second).string
                    #expect(out.string == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nDate: \(date)\r\n\r\nanswer \(k)")
                    #expect(out == threeCopies(r, body: Array("answer \(k)".utf8), s.dateCache))
                }
            }
        }
        // An answer above 4 KiB is written in three copies, with the same bytes.
        let big = PrecomputedResponse(body: [UInt8](repeating: 0x61, count: 5000))
        out.removeAll(keepingCapacity: true)
        s.write(big, into: &out)
        #expect(out == threeCopies(big, body: [UInt8](repeating: 0x61, count: 5000), s.dateCache))
        // Copies of one response share its storage and its entry; an equal response made
        // apart is another entry with the same bytes.
        let copy = responses[0]
        let twin = PrecomputedResponse(contentType: "text/plain", body: "answer 0")
        var a: [UInt8] = [], b: [UInt8] = []
        s.write(copy, into: &a)
        s.write(twin, into: &b)
        #expect(a == b)
    }

    @Test func errorResponses() {
        #expect(HTTPResponseSerializer.errorResponse(for: .bareLF).string
            == "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\nbare LF in request")
        #expect(HTTPResponseSerializer.errorResponse(for: .bodyTooLarge).string.hasPrefix("HTTP/1.1 413 Content Too Large\r\n"))
        #expect(HTTPResponseSerializer.errorResponse(for: .targetTooLong).string.hasPrefix("HTTP/1.1 414 URI Too Long\r\n"))
        #expect(HTTPResponseSerializer.errorResponse(for: .tooManyHeaders).string.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(HTTPResponseSerializer.errorResponse(for: .unsupportedTransferEncoding).string.hasPrefix("HTTP/1.1 501 Not Implemented\r\n"))
        #expect(HTTPResponseSerializer.errorResponse(for: .unsupportedVersion).string.hasPrefix("HTTP/1.1 505 HTTP Version Not Supported\r\n"))
        var s = serializer()
        var out: [UInt8] = []
        s.writeErrorResponse(for: .missingHost, into: &out)
        #expect(out.string == "HTTP/1.1 400 Bad Request\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nmissing Host header")
        #expect(HTTPParseError.headTooLarge.status.code == 431)
        // Every error response is itself well-formed: Content-Length matches the body.
        for e in HTTPParseError.allCases {
            let text = HTTPResponseSerializer.errorResponse(for: e).string
            let parts = text.components(separatedBy: "\r\n\r\n")
            #expect(parts.count == 2)
            #expect(parts[0].contains("Content-Length: \(parts[1].utf8.count)"))
        }
    }

    @Test func largeNumbers() {
        var s = serializer()
        var out: [UInt8] = []
        s.writeHead(HTTPResponse(status: .ok), framing: .contentLength(1_234_567_890_123), keepAlive: true, into: &out)
        #expect(out.string.contains("Content-Length: 1234567890123\r\n"))
        out.removeAll()
        ChunkFraming.writeHeader(size: 0x7fff_ffff_ffff, into: &out)
        #expect(out.string == "7fffffffffff\r\n")
        out.removeAll()
        ChunkFraming.writeHeader(size: 1, into: &out)
        ChunkFraming.writeHeader(size: 16, into: &out)
        #expect(out.string == "1\r\n10\r\n")
    }
}
