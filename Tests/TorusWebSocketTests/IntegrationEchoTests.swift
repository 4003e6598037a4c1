import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusWebSocket

/// The project's own client against the project's own server.
@Suite struct IntegrationEchoTests {
    static let sizes = [0, 125, 126, 65535, 65536, 16 << 20]

    /// Both callback faces: `onText`/`onBinary` (owned copies) and `onMessageBytes`
    /// (borrowed from the receive buffer, whole frames unmasked in place).
    @Test(arguments: [false, true], [false, true])
    func echoSizes(compression: Bool, borrowed: Bool) async throws {
        try await withLoop { loop in
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/", configuration: WebSocketServerConfiguration(deflate: PerMessageDeflateConfiguration()),
                                 borrowed ? borrowedEcho : echo)
            }
            let ws = try await connectClient(server, on: loop, deflate: compression)
            #expect((ws.deflate != nil) == compression)
            for size in Self.sizes {
                let text = testText(size)
                try await ws.send(text: text)
                #expect(try await ws.nextMessage() == .text(text), "text of \(size) bytes")
                let bytes = testBytes(size, seed: UInt64(size) + 1)
                try await ws.send(binary: bytes)
                #expect(try await ws.nextMessage() == .binary(bytes), "binary of \(size) bytes")
            }
            await ws.close()
            let info = await ws.closed()
            #expect(info.code == .normalClosure && info.wasClean)
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test func fragmentedMessagesWithInterleavedPings() async throws {
        try await withLoop { loop in
            let received = Locked<[WebSocketMessage]>([])
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/") { ws in
                    ws.onText = { ws, text in received.withLock { $0.append(.text(text)) }; ws.send(text: text) }
                    ws.onBinary = { ws, bytes in received.withLock { $0.append(.binary(bytes)) }; ws.send(binary: bytes) }
                }
            }
            let ws = try await connectClient(server, on: loop)
            let pongs = Locked(0)
            let text = testText(10_000)
            let bytes = testBytes(70_000)
            let sent = await onLoop(loop) { () -> Bool in
                ws.onPong = { _, _ in pongs.withLock { $0 += 1 } }
                let utf8 = Array(text.utf8)
                var ok = true
                // Text in 7 pieces (cut anywhere, even inside nothing multi-byte), pings between.
                var i = 0
                while i < utf8.count {
                    let end = min(i + 1500, utf8.count)
                    ok = ok && ws.send(fragment: Array(utf8[i..<end]), of: .text, isFinal: end == utf8.count)
                    ok = ok && ws.ping([UInt8(i & 0xFF)])
                    // A data message in the middle of a fragmented one is refused.
                    if end < utf8.count { ok = ok && !ws.send(text: "no") }
                    i = end
                }
                ok = ok && ws.send(fragment: [], of: .binary, isFinal: false)
                ok = ok && ws.send(fragment: Array(bytes[..<1]), of: .binary, isFinal: false)
                ok = ok && ws.send(fragment: Array(bytes[1...]), of: .binary, isFinal: true)
                return ok
            }
            #expect(sent)
            #expect(try await ws.nextMessage() == .text(text))
            #expect(try await ws.nextMessage() == .binary(bytes))
            #expect(received.current == [.text(text), .binary(bytes)])
            #expect(await eventually { pongs.current == 7 })
            await ws.close()
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test func hundredConcurrentConnections() async throws {
        try await withGroup(loops: 2) { group in
            let server = try startServer(on: group.loops) { router in
                router.webSocket("/", configuration: WebSocketServerConfiguration(deflate: PerMessageDeflateConfiguration()),
                                 echo)
            }
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for i in 0..<100 {
                    let loop = group.loops[i % 2]
                    tasks.addTask {
                        let ws = try await connectClient(server, on: loop, deflate: i % 3 == 0)
                        for k in 0..<10 {
                            let message = "client \(i) message \(k) " + testText(k * 100)
                            try await ws.send(text: message)
                            guard try await ws.nextMessage() == .text(message) else {
                                throw WebSocketError.handshakeFailed("wrong echo on client \(i)")
                            }
                        }
                        await ws.close(code: CloseCode(rawValue: 4000 + UInt16(i)))
                        let info = await ws.closed()
                        guard info.code.rawValue == 4000 + UInt16(i), info.wasClean else {
                            throw WebSocketError.handshakeFailed("client \(i) closed with \(info)")
                        }
                    }
                }
                try await tasks.waitForAll()
            }
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test func asyncServerFace() async throws {
        try await withLoop { loop in
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/upper", serve: { ws in
                    for try await message in ws.messages {
                        if case .text(let t) = message { try await ws.send(text: t.uppercased()) }
                        if case .binary(let b) = message { try await ws.send(binary: b.reversed()) }
                    }
                })
            }
            let ws = try await connectClient(server, path: "/upper", on: loop)
            try await ws.send(text: "hello")
            #expect(try await ws.nextMessage() == .text("HELLO"))
            try await ws.send(binary: [1, 2, 3])
            #expect(try await ws.nextMessage() == .binary([3, 2, 1]))
            await ws.close(code: .normalClosure, reason: "done")
            #expect(await ws.closed().wasClean)
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test func subprotocolOriginAndHandshakeRejections() async throws {
        try await withLoop { loop in
            let configuration = WebSocketServerConfiguration(
                subprotocols: ["chat.v2", "chat.v1"],
                originCheck: WebSocketServerConfiguration.allowingOrigins(["http://good.example"]))
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/", configuration: configuration, echo)
            }
            let ws = try await connectClient(server, on: loop) { c in
                c.subprotocols = ["chat.v1", "chat.v2"]
                c.headers = [HandshakeHeader("Origin", "http://good.example")]
            }
            #expect(ws.subprotocol == "chat.v2")
            await ws.close()

            let bad = try await RawClient.connect(port: server.port, on: loop)
            #expect(try await bad.handshake(extra: [("Origin", "http://evil.example")]).hasPrefix("HTTP/1.1 403"))
            await bad.close()
            let old = try await RawClient.connect(port: server.port, on: loop)
            let oldHead = try await old.request(fields: [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                         ("Sec-WebSocket-Version", "8")])
            #expect(oldHead.hasPrefix("HTTP/1.1 426"))
            #expect(oldHead.contains("Sec-WebSocket-Version: 13"))
            await old.close()
            let noKey = try await RawClient.connect(port: server.port, on: loop)
            #expect(try await noKey.request(fields: [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                     ("Sec-WebSocket-Version", "13")]).hasPrefix("HTTP/1.1 400"))
            await noKey.close()
            let good = try await RawClient.connect(port: server.port, on: loop)
            let head = try await good.handshake()
            #expect(head.hasPrefix("HTTP/1.1 101"))
            #expect(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
            await good.close()
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test func clientRejectsBadURLsAndRefusedHandshakes() async throws {
        #expect(try WebSocketURL("wss://127.0.0.1/") == WebSocketURL(host: "127.0.0.1", port: 443, target: "/", secure: true))
        #expect(try WebSocketURL("WSS://localhost:8443/x").hostField == "localhost:8443")
        #expect(try WebSocketURL("wss://localhost/x").hostField == "localhost")
        #expect(throws: WebSocketError.self) { try WebSocketURL("https://127.0.0.1/") }
        #expect(throws: WebSocketError.self) { try WebSocketURL("ws://127.0.0.1:0/") }
        #expect(try WebSocketURL("ws://127.0.0.1:9001/a?b=1") == WebSocketURL(host: "127.0.0.1", port: 9001, target: "/a?b=1"))
        #expect(try WebSocketURL("ws://[::1]:80?x").target == "/?x")
        try await withLoop { loop in
            let server = try startServer(on: [loop]) { router in
                router.get("/plain") { _ in .text("not a websocket") }
            }
            await #expect(throws: WebSocketError.self) {
                _ = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(server.port)/plain", on: loop)
            }
            await server.shutdown(grace: .seconds(1))
        }
    }
}
