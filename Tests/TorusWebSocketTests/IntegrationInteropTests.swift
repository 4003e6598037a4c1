import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusWebSocket

/// Interop with an independent implementation: Python's `websockets` as client of
/// our server and as server for our client; and the torus-ws demo as a process.
@Suite struct IntegrationInteropTests {
    /// Python client: echo sizes with and without compression, fragmented messages,
    /// ping, close code; exits 0 when every check passed.
    static let pythonClient = #"""
import asyncio, sys
from websockets.asyncio.client import connect

async def main(port):
    base = f"ws://127.0.0.1:{port}"
    for compression in (None, "deflate"):
        async with connect(base + "/", compression=compression, max_size=None) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (ext is not None) == (compression is not None), ext
            for size in (0, 125, 126, 65535, 65536, 16 << 20):
                text = ("abcdefghij" * (size // 10 + 1))[:size]
                await ws.send(text)
                assert await ws.recv() == text, ("text", size)
                data = bytes((i * 31 + 7) & 0xFF for i in range(size)) if size < 100000 else bytes(range(256)) * (size // 256)
                await ws.send(data)
                assert await ws.recv() == data, ("binary", size)
            await ws.send(["fra", "gmen", "ted ", "héllo"])
            assert await ws.recv() == "fragmented héllo"
            await ws.send([b"\x00" * 1000, b"\x01" * 70000])
            assert await ws.recv() == b"\x00" * 1000 + b"\x01" * 70000
            pong = await ws.ping(b"python")
            await asyncio.wait_for(pong, 5)
            await ws.close(4007, "python done")
            assert ws.close_code == 4007, ws.close_code
            print("OK", compression, flush=True)
    async with connect(base + "/close-me") as ws:
        await ws.send("close")
        try:
            await ws.recv()
            raise SystemExit("expected a close")
        except Exception:
            pass
        assert ws.close_code == 1001 and ws.close_reason == "server says bye", (ws.close_code, ws.close_reason)
        print("OK server close", flush=True)

asyncio.run(main(int(sys.argv[1])))
"""#

    /// Python echo server; `/close-me` closes with 4002 after the first message.
    static let pythonServer = #"""
import asyncio
from websockets.asyncio.server import serve

async def handler(ws):
    if ws.request.path == "/close-me":
        await ws.recv()
        await ws.close(4002, "python bye")
        return
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=None, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"""#

    @Test func pythonClientAgainstOurServer() async throws {
        try await withGroup(loops: 2) { group in
            let server = try startServer(on: group.loops) { router in
                router.webSocket("/", configuration: WebSocketServerConfiguration(deflate: PerMessageDeflateConfiguration()),
                                 echo)
                router.webSocket("/close-me") { ws in
                    ws.onText = { ws, _ in ws.close(code: .goingAway, reason: "server says bye") }
                }
            }
            let python = try ChildProcess("/usr/bin/env", ["python3", "-c", Self.pythonClient, String(server.port)])
            let status = await python.wait(timeout: .seconds(120))
            #expect(status == 0, "python client: \(python.text)")
            #expect(python.text.contains("OK None") && python.text.contains("OK deflate")
                && python.text.contains("OK server close"), "\(python.text)")
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test(arguments: [false, true])
    func ourClientAgainstPythonServer(compression: Bool) async throws {
        let python = try ChildProcess("/usr/bin/env", ["python3", "-u", "-c", Self.pythonServer])
        guard let port = await python.listeningPort() else {
            Issue.record("python server did not start: \(python.text)")
            _ = await python.stop()
            return
        }
        try await withLoop { loop in
            let ws = try await WebSocketClient.connect(
                to: "ws://127.0.0.1:\(port)/", on: loop,
                configuration: WebSocketClientConfiguration(deflate: compression ? PerMessageDeflateConfiguration() : nil))
            #expect((ws.deflate != nil) == compression)
            for size in IntegrationEchoTests.sizes {
                let text = testText(size)
                try await ws.send(text: text)
                #expect(try await ws.nextMessage() == .text(text), "text \(size)")
                let bytes = testBytes(size)
                try await ws.send(binary: bytes)
                #expect(try await ws.nextMessage() == .binary(bytes), "binary \(size)")
            }
            let fragmented = await onLoop(loop) {
                ws.send(fragment: utf8("frag"), of: .text, isFinal: false)
                    && ws.ping(utf8("p"))
                    && ws.send(fragment: utf8("ments ✓"), of: .text, isFinal: true)
            }
            #expect(fragmented)
            #expect(try await ws.nextMessage() == .text("fragments ✓"))
            await ws.close(code: CloseCode(rawValue: 4011), reason: "swift done")
            let info = await ws.closed()
            #expect(info.code.rawValue == 4011 && info.wasClean, "\(info)")

            let closing = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(port)/close-me", on: loop)
            try await closing.send(text: "x")
            #expect(try await closing.nextMessage() == nil)
            let closingInfo = await closing.closed()
            #expect(closingInfo.code.rawValue == 4002 && closingInfo.reason == "python bye" && closingInfo.wasClean,
                    "\(closingInfo)")
        }
        _ = await python.stop()
    }

    /// The demo: echo, chat, then SIGTERM sends 1001 to clients and prints a
    /// quiescent ledger.
    @Test func torusWSDemo() async throws {
        let demo = try ChildProcess(BuiltProducts.path("torus-ws"), ["--port", "0", "--threads", "2"])
        guard let port = await demo.listeningPort() else {
            Issue.record("torus-ws did not start: \(demo.text)")
            _ = await demo.stop()
            return
        }
        try await withLoop { loop in
            let client = WebSocketClientConfiguration(deflate: PerMessageDeflateConfiguration())
            let echoWS = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(port)/", on: loop, configuration: client)
            #expect(echoWS.deflate != nil)
            try await echoWS.send(text: "hello demo")
            #expect(try await echoWS.nextMessage() == .text("hello demo"))
            try await echoWS.send(binary: testBytes(100_000))
            #expect(try await echoWS.nextMessage() == .binary(testBytes(100_000)))

            let a = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(port)/chat", on: loop)
            let b = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(port)/chat", on: loop)
            try await Task.sleep(for: .milliseconds(100))
            try await a.send(text: "hi room")
            #expect(try await a.nextMessage() == .text("hi room"))
            #expect(try await b.nextMessage() == .text("hi room"))

            let status = await demo.stop(signal: SIGTERM)
            #expect(status == 0, "\(demo.text)")
            #expect(demo.text.contains("ledger: quiescent"), "\(demo.text)")
            for ws in [echoWS, a, b] {
                let info = await ws.closed()
                #expect(info.code == .goingAway && info.wasClean, "\(info)")
            }
        }
    }

    /// The demo logs, on stderr with the peer as metadata, a close for a protocol
    /// error (with its code) and a refused handshake.
    @Test func torusWSDemoLogsProtocolErrorsAndRefusals() async throws {
        let demo = try ChildProcess(BuiltProducts.path("torus-ws"),
                                    ["--port", "0", "--threads", "1", "--log-level", "info"])
        guard let port = await demo.listeningPort() else {
            Issue.record("torus-ws did not start: \(demo.text)")
            _ = await demo.stop()
            return
        }
        let upgrade = "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        try await withLoop { loop in
            let raw = try await AsyncConnection.connect(to: .tcp("127.0.0.1", port), on: loop)
            try await raw.write(upgrade + "Sec-WebSocket-Version: 13\r\n\r\n")
            var received: [UInt8] = []
            let end: [UInt8] = Array("\r\n\r\n".utf8)
            func headEnd() -> Int? {
                guard received.count >= 4 else { return nil }
                return (0...(received.count - 4)).first { Array(received[$0 ..< $0 + 4]) == end }.map { $0 + 4 }
            }
            while headEnd() == nil, let chunk = try await raw.read() { received += chunk }
            let headCount = try #require(headEnd())
            #expect(String(decoding: received[..<headCount], as: UTF8.self).hasPrefix("HTTP/1.1 101"))
            // An unmasked client frame breaks RFC 6455 5.1: close 1002, then the server's FIN.
            try await raw.write([0x81, 0x02, 0x68, 0x69])
            while let chunk = try await raw.read() { received += chunk }
            let close = Array(received[headCount...])
            #expect(close.count >= 4 && close[0] == 0x88 && close[2] == 0x03 && close[3] == 0xEA, "\(close)")
            await raw.close()

            let refused = try await AsyncConnection.connect(to: .tcp("127.0.0.1", port), on: loop)
            try await refused.write(upgrade + "Sec-WebSocket-Version: 8\r\nConnection: close\r\n\r\n")
            var answer: [UInt8] = []
            while let chunk = try await refused.read() { answer += chunk }
            #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 426"), "\(String(decoding: answer, as: UTF8.self))")
            await refused.close()
        }
        #expect(await demo.stop() == 0, "\(demo.text)")
        let text = demo.text
        #expect(text.contains("protocol error; closing") && text.contains("code=1002") && text.contains("peer=127.0.0.1:"),
                "\(text)")
        #expect(text.contains("handshake refused") && text.contains("status=426"), "\(text)")
        #expect(text.contains("ledger: quiescent"), "\(text)")
    }
}
