import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusWebSocket

/// What an idle server-side WebSocket connection holds (issue 11: a held connection
/// costs almost nothing): no upgrade request unless the route keeps it, no async face
/// until it is used, no closing record while open, its one registry membership inline.
@Suite("Idle WebSocket connection state")
struct IdleConnectionStateTests {
    /// What the server side looked like, read on its loop.
    struct Seen: Sendable {
        var requestAfter: String?
        var hasAsyncFace = false
        var hasClosingRecord = false
        var membershipIsInline = false
        var objectBytes = 0
    }

    /// Holds the server-side connections of a test (loop thread only).
    final class Held: @unchecked Sendable {
        var connections: [WebSocketConnection] = []
    }

    @Test("the upgrade request is there in the callback and dropped after it, unless the route keeps it",
          arguments: [false, true])
    func upgradeRequestKeptOnlyWhenAsked(keep: Bool) async throws {
        try await withLoop { loop in
            let held = Held()
            let inCallback = Locked<String?>(nil)
            let registry = WebSocketRegistry()
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/idle", configuration: WebSocketServerConfiguration(keepsUpgradeRequest: keep),
                                 registry: registry) { ws in
                    inCallback.withLock { $0 = ws.request?.path }
                    ws.onMessageBytes = { ws, kind, bytes in ws.send(bytes, as: kind) }
                    held.connections.append(ws)
                }
            }
            let client = try await connectClient(server, path: "/idle?x=1", on: loop)
            try await client.send(text: "ping")
            #expect(try await client.nextMessage() == .text("ping"))
            let seen: Seen = loop.runAndWait {
                guard let ws = held.connections.first else { return Seen() }
                var membershipIsInline = false
                if case .one = ws.memberships { membershipIsInline = true }
                return Seen(requestAfter: ws.request?.path, hasAsyncFace: ws.asyncFace != nil,
                            hasClosingRecord: ws.closeInfo != nil || ws.failure != nil,
                            membershipIsInline: membershipIsInline,
                            objectBytes: heapBlockSize(of: ws) ?? 0)
            }
            #expect(inCallback.current == "/idle")
            #expect(seen.requestAfter == (keep ? "/idle" : nil))
            #expect(!seen.hasAsyncFace, "callbacks only: no inbox")
            #expect(!seen.hasClosingRecord)
            #expect(seen.membershipIsInline, "one registry: no array")
            // The object itself (callbacks, decoder, flags): it was ~650 bytes before
            // the issue-11 work; 344-352 now, plus the allocator's slack.
            #expect(seen.objectBytes > 0 && seen.objectBytes <= 352 + heapBlockSlack,
                    "WebSocketConnection is \(seen.objectBytes) bytes")
            await client.close()
            _ = await client.closed()
            loop.runAndWait { held.connections.removeAll() }
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test("the async face is made at first use, also after the peer closed")
    func asyncFaceMadeLazily() async throws {
        try await withLoop { loop in
            let held = Held()
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/lazy") { ws in held.connections.append(ws) }
            }
            let client = try await connectClient(server, path: "/lazy", on: loop)
            #expect(await eventually { loop.runAndWait { held.connections.count == 1 } })
            #expect(loop.runAndWait { held.connections.first?.asyncFace == nil })
            // No callback set: the message goes to the async face, made for it.
            try await client.send(text: "queued")
            #expect(await eventually { loop.runAndWait { held.connections.first?.asyncFace != nil } })
            let ws = try #require(loop.runAndWait { held.connections.first })
            #expect(try await ws.nextMessage() == .text("queued"))
            await client.close()
            #expect(try await ws.nextMessage() == nil, "a closing handshake ends the sequence")
            _ = await ws.closed()
            loop.runAndWait { held.connections.removeAll() }
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test("a connection closed before any async use still ends its message sequence")
    func asyncFaceAfterClose() async throws {
        try await withLoop { loop in
            let held = Held()
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/gone") { ws in
                    ws.onText = { _, _ in }
                    held.connections.append(ws)
                }
            }
            let client = try await connectClient(server, path: "/gone", on: loop)
            #expect(await eventually { loop.runAndWait { held.connections.count == 1 } })
            let ws = try #require(loop.runAndWait { held.connections.first })
            await client.close()
            let info = await ws.closed()
            #expect(info.wasClean)
            #expect(loop.runAndWait { ws.asyncFace == nil })
            #expect(try await ws.nextMessage() == nil)
            loop.runAndWait { held.connections.removeAll() }
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test("with permessage-deflate the compressor is made at the first message compressed, not at the upgrade")
    func compressorMadeAtFirstUse() async throws {
        try await withLoop { loop in
            let held = Held()
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/deflate", configuration: WebSocketServerConfiguration(deflate: PerMessageDeflateConfiguration())) { ws in
                    ws.onText = { ws, text in ws.send(text: text) }
                    held.connections.append(ws)
                }
            }
            let client = try await connectClient(server, path: "/deflate", on: loop, deflate: true)
            #expect(await eventually { loop.runAndWait { held.connections.count == 1 } })
            #expect(loop.runAndWait { held.connections.first?.deflate != nil && held.connections.first?.negotiated?.hasCompressor == false })
            // Under the compression threshold: sent plain, still no compressor.
            try await client.send(text: "hi")
            #expect(try await client.nextMessage() == .text("hi"))
            #expect(loop.runAndWait { held.connections.first?.negotiated?.hasCompressor == false })
            let long = testText(4096)
            try await client.send(text: long)
            #expect(try await client.nextMessage() == .text(long))
            #expect(loop.runAndWait { held.connections.first?.negotiated?.hasCompressor == true })
            await client.close()
            _ = await client.closed()
            loop.runAndWait { held.connections.removeAll() }
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test("a frame header split across reads is reassembled (inline partial header)")
    func splitHeader() throws {
        var encoder = [UInt8]()
        FrameEncoder(role: .client).encodeFrame(opcode: .binary, payload: Array(repeating: 7, count: 300), into: &encoder)
        var decoder = MessageDecoder(role: .server)
        var events: [WebSocketEvent] = []
        // One byte at a time: the 8-byte header (2 + 2 length + 4 key) straddles 8 inputs.
        for b in encoder {
            try [b].withUnsafeBytes { raw in
                var input = raw
                while let e = try decoder.next(&input) { events.append(e) }
            }
        }
        #expect(events == [.binary(Array(repeating: 7, count: 300))])
    }
}
