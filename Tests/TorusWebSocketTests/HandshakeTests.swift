import Testing
import Torus
import TorusTestSupport
@testable import TorusWebSocket

@Suite struct HandshakeTests {
    @Test func sha1Vectors() {
        func hexString(_ b: [UInt8]) -> String { b.map { String($0, radix: 16).leftPad(2) }.joined() }
        #expect(hexString(SHA1.hash(utf8(""))) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(hexString(SHA1.hash(utf8("abc"))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hexString(SHA1.hash(utf8("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
                == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(hexString(SHA1.hash([UInt8](repeating: 0x61, count: 1_000_000)))
                == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        // Lengths around the padding boundary.
        #expect(hexString(SHA1.hash([UInt8](repeating: 0x61, count: 55))) == "c1c8bbdc22796e28c0e15163d20899b65621d65a")
        #expect(hexString(SHA1.hash([UInt8](repeating: 0x61, count: 56))) == "c2db330f6083854c99d4b5bfb6e8f29f201be699")
        #expect(hexString(SHA1.hash([UInt8](repeating: 0x61, count: 64))) == "0098ba824b5c16427bd7a1122a5a442a25ec644d")
    }

    @Test func base64Vectors() {
        let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                       ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(utf8(plain)) == encoded)
            #expect(Base64.decode(encoded) == utf8(plain))
        }
        #expect(Base64.decode("Zg=") == nil)
        #expect(Base64.decode("Zh==") == nil)      // non-canonical trailing bits
        #expect(Base64.decode("Z===") == nil)
        #expect(Base64.decode("Zm9v YmFy") == nil)
        #expect(Base64.decode("Zm=v") == nil)
    }

    @Test func rfc6455AcceptExample() {
        #expect(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func keys() {
        #expect(WebSocketHandshake.isValidKey("dGhlIHNhbXBsZSBub25jZQ=="))
        #expect(!WebSocketHandshake.isValidKey("dGhlIHNhbXBsZSBub25jZQ"))     // no padding
        #expect(!WebSocketHandshake.isValidKey("dGhlIHNhbXBsZSBub25j"))       // 15 bytes
        #expect(!WebSocketHandshake.isValidKey("dGhlIHNhbXBsZSBub25jZQo="))   // 17 bytes
        #expect(!WebSocketHandshake.isValidKey("dGhlIHNhbXBsZSBub25jZ!=="))
        let k1 = WebSocketHandshake.makeClientKey(), k2 = WebSocketHandshake.makeClientKey()
        #expect(WebSocketHandshake.isValidKey(k1) && WebSocketHandshake.isValidKey(k2) && k1 != k2)
    }

    static let goodHeaders: [(String, String)] = [
        ("Host", "server.example.com"), ("upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("sec-websocket-version", "13"),
        ("Sec-WebSocket-Protocol", "chat, superchat"), ("Sec-WebSocket-Protocol", "v2.json"),
    ]

    func headers(_ fields: [(String, String)]) -> HandshakeHeaderList {
        HandshakeHeaderList(fields.map { HandshakeHeader($0.0, $0.1) })
    }

    func replacing(_ name: String, with value: String?) -> HandshakeHeaderList {
        var f = Self.goodHeaders.filter { !HandshakeHeaderList.equalsIgnoringASCIICase($0.0, name) }
        if let value { f.append((name, value)) }
        return headers(f)
    }

    func reject(method: String = "GET", version: String = "HTTP/1.1", _ h: HandshakeHeaderList) -> HandshakeRejection? {
        do {
            _ = try WebSocketHandshake.acceptUpgrade(method: method, httpVersion: version, headers: h)
            return nil
        } catch {
            return error
        }
    }

    @Test func serverAcceptsValidRequest() throws {
        let config = ServerHandshakeConfiguration(subprotocols: ["v2.json", "superchat"])
        let a = try WebSocketHandshake.acceptUpgrade(method: "GET", httpVersion: "HTTP/1.1",
                                                     headers: headers(Self.goodHeaders), configuration: config)
        #expect(a.acceptValue == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(a.subprotocol == "v2.json")
        #expect(a.deflate == nil)
        #expect(a.responseHeaders == [HandshakeHeader("Upgrade", "websocket"), HandshakeHeader("Connection", "Upgrade"),
                                      HandshakeHeader("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                                      HandshakeHeader("Sec-WebSocket-Protocol", "v2.json")])
        let none = try WebSocketHandshake.acceptUpgrade(method: "GET", httpVersion: "HTTP/1.1",
                                                        headers: headers(Self.goodHeaders),
                                                        configuration: .init(subprotocols: ["mqtt"]))
        #expect(none.subprotocol == nil)
        #expect(none.responseHeaders.count == 3)
    }

    @Test func serverRejections() {
        #expect(reject(method: "POST", headers(Self.goodHeaders))?.status == 405)
        #expect(reject(method: "get", headers(Self.goodHeaders))?.status == 405)
        #expect(reject(version: "HTTP/1.0", headers(Self.goodHeaders))?.status == 400)
        #expect(reject(version: "HTTP/2.0", headers(Self.goodHeaders))?.status == 400)
        #expect(reject(replacing("Upgrade", with: nil))?.status == 400)
        #expect(reject(replacing("Upgrade", with: "h2c"))?.status == 400)
        #expect(reject(replacing("Connection", with: "keep-alive"))?.status == 400)
        #expect(reject(replacing("Connection", with: nil))?.status == 400)
        #expect(reject(replacing("Connection", with: "upgradex"))?.status == 400)
        let v8 = reject(replacing("Sec-WebSocket-Version", with: "8"))
        #expect(v8?.status == 426)
        #expect(v8?.headers == [HandshakeHeader("Sec-WebSocket-Version", "13")])
        #expect(reject(replacing("Sec-WebSocket-Version", with: nil))?.status == 426)
        #expect(reject(replacing("Sec-WebSocket-Key", with: nil))?.status == 400)
        #expect(reject(replacing("Sec-WebSocket-Key", with: "dGhlIHNhbXBsZSBub25j"))?.status == 400)
        #expect(reject(replacing("Sec-WebSocket-Key", with: "not base64 at all!!!!!!="))?.status == 400)
        #expect(reject(headers(Self.goodHeaders + [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]))?.status == 400)
        // Token matching is case-insensitive and list-aware.
        #expect(reject(replacing("Connection", with: "UPGRADE")) == nil)
        #expect(reject(replacing("Upgrade", with: "foo, websocket")) == nil)
        #expect(reject(version: "HTTP/1.2", headers(Self.goodHeaders)) == nil)
    }

    @Test func serverNegotiatesDeflate() throws {
        let h = headers(Self.goodHeaders + [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")])
        let a = try WebSocketHandshake.acceptUpgrade(method: "GET", httpVersion: "HTTP/1.1", headers: h,
                                                     configuration: .init(deflate: .init(clientMaxWindowBits: 12)))
        #expect(a.deflate == PerMessageDeflateAgreement(clientMaxWindowBits: 12))
        #expect(a.responseHeaders.last == HandshakeHeader("Sec-WebSocket-Extensions",
                                                          "permessage-deflate; client_max_window_bits=12"))
        // Without a deflate configuration the offer is ignored.
        let b = try WebSocketHandshake.acceptUpgrade(method: "GET", httpVersion: "HTTP/1.1", headers: h)
        #expect(b.deflate == nil)
    }

    @Test func clientRoundTripWithServer() throws {
        let client = ClientHandshake(subprotocols: ["chat", "superchat"], deflate: .init())
        #expect(WebSocketHandshake.isValidKey(client.key))
        let request = HandshakeHeaderList(client.requestHeaders)
        #expect(request.values(forHeader: "sec-websocket-version") == ["13"])
        #expect(request.values(forHeader: "Sec-WebSocket-Extensions") == ["permessage-deflate; client_max_window_bits"])
        let accept = try WebSocketHandshake.acceptUpgrade(
            method: "GET", httpVersion: "HTTP/1.1", headers: request,
            configuration: .init(subprotocols: ["superchat"], deflate: .init(serverNoContextTakeover: true)))
        let result = try client.validateResponse(status: 101, headers: HandshakeHeaderList(accept.responseHeaders))
        #expect(result.subprotocol == "superchat")
        #expect(result.deflate == PerMessageDeflateAgreement(serverNoContextTakeover: true))
    }

    @Test func clientRejections() {
        let client = ClientHandshake(key: "dGhlIHNhbXBsZSBub25jZQ==", subprotocols: ["chat"])
        let good: [(String, String)] = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]
        func fails(_ status: Int, _ fields: [(String, String)]) -> Bool {
            (try? client.validateResponse(status: status, headers: headers(fields))) == nil
        }
        #expect(!fails(101, good))
        #expect(fails(200, good))
        #expect(fails(101, Array(good.dropFirst())))
        #expect(fails(101, [good[0], ("Connection", "close"), good[2]]))
        #expect(fails(101, [good[0], good[1], ("Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")]))
        #expect(fails(101, good + [("Sec-WebSocket-Protocol", "superchat")]))
        #expect(!fails(101, good + [("Sec-WebSocket-Protocol", "chat")]))
        #expect(fails(101, good + [("Sec-WebSocket-Extensions", "permessage-deflate")]))  // not offered
    }
}

/// The client's handshake response goes through the HTTP response parser: served
/// over a real socket by a raw server that answers with the given head.
@Suite struct ClientHandshakeResponseTests {
    /// Starts a server on `loop` that reads the request, answers `reply(acceptValue)`,
    /// and closes once the client sends anything more or closes.
    func rawServer(on loop: EventLoop, _ reply: @escaping @Sendable (String) -> [UInt8]) throws -> Server {
        try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { connection in
            let io = AsyncConnection(connection)
            Task(executorPreference: connection.loop) {
                var request: [UInt8] = []
                while request.firstRange(of: [13, 10, 13, 10]) == nil, let more = try? await io.read() { request += more }
                let text = String(decoding: request, as: UTF8.self)
                let key = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("sec-websocket-key:") }
                    .map { String($0.dropFirst("sec-websocket-key:".count).trimmingCharacters(where: { $0 == " " })) } ?? ""
                try? await io.write(reply(WebSocketHandshake.acceptValue(forKey: key)))
                // Whatever comes next (the client's close frame, or its close) ends it.
                _ = try? await io.read()
                await io.close()
            }
            return connection.handler!
        }
    }

    func failure(_ error: any Error) -> String? {
        if case WebSocketError.handshakeFailed(let why) = error { return why }
        return nil
    }

    @Test("a 101 with bare-LF line ends and a frame right behind the head is accepted; the frame is delivered")
    func acceptsLenientHeadWithLeftover() async throws {
        try await withGroup(loops: 2) { group in
            let server = try rawServer(on: group.loops[0]) { accept in
                Array("HTTP/1.1 101 Switching Protocols\nUPGRADE: websocket\r\nconnection: Upgrade\nSec-WebSocket-Accept: \(accept)\n\n".utf8)
                    + [0x81, 0x02] + Array("hi".utf8)
            }
            let ws = try await WebSocketClient.connect(host: "127.0.0.1", port: server.address.port!, on: group.loops[1])
            let message = try await ws.nextMessage()
            #expect(message == .text("hi"))
            await ws.close()
            server.close()
        }
    }

    @Test("malformed or refusing responses fail the handshake with the parser's reason")
    func refusesMalformedResponses() async throws {
        try await withGroup(loops: 2) { group in
            let cases: [(@Sendable (String) -> String, String)] = [
                ({ "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n folded\r\nSec-WebSocket-Accept: \($0)\r\n\r\n" },
                 "malformed response: obsolete line folding"),
                ({ "HTTP/1.1 101 OK\r\nUpgrade : websocket\r\nSec-WebSocket-Accept: \($0)\r\n\r\n" },
                 "malformed response: whitespace before colon in header field"),
                ({ _ in "HTTP/2.0 101 OK\r\n\r\n" }, "malformed response: HTTP version not supported"),
                ({ _ in "garbage\r\n\r\n" }, "malformed response: invalid status line"),
                ({ _ in "HTTP/1.1 101 OK\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n" }, "response head too large"),
            ]
            for (reply, reason) in cases {
                let server = try rawServer(on: group.loops[0]) { Array(reply($0).utf8) }
                do {
                    let ws = try await WebSocketClient.connect(host: "127.0.0.1", port: server.address.port!, on: group.loops[1])
                    Issue.record("connected despite \(reason)")
                    await ws.close()
                } catch {
                    #expect(failure(error) == reason)
                }
                server.close()
            }
            // A well-formed refusal reaches the handshake check.
            let server = try rawServer(on: group.loops[0]) { _ in Array("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".utf8) }
            do {
                _ = try await WebSocketClient.connect(host: "127.0.0.1", port: server.address.port!, on: group.loops[1])
                Issue.record("connected despite a 403")
            } catch {
                #expect(failure(error)?.contains("403") == true, "\(error)")
            }
            server.close()
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
