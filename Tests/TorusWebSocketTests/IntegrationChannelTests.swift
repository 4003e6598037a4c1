import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusWebSocket

@Suite struct IntegrationChannelTests {
    /// One broadcast reaches every subscriber on every loop, encoded once (the same
    /// shared frame), including subscribers that negotiated permessage-deflate.
    @Test func broadcastReachesEverySubscriber() async throws {
        try await withGroup(loops: 2) { group in
            let channel = WebSocketChannel()
            let server = try startServer(on: group.loops) { router in
                router.webSocket("/chat", configuration: WebSocketServerConfiguration(deflate: PerMessageDeflateConfiguration())) { ws in
                    channel.subscribe(ws)
                    ws.onText = { ws, text in channel.broadcast(text: text, excluding: ws) }
                }
            }
            var clients: [WebSocketConnection] = []
            for i in 0..<20 {
                clients.append(try await connectClient(server, path: "/chat", on: group.loops[i % 2], deflate: i % 2 == 0))
            }
            #expect(await eventually { await channel.subscriberCount() == 20 })
            channel.broadcast(text: "hello everyone")
            channel.broadcast(binary: testBytes(100_000))
            for ws in clients {
                #expect(try await ws.nextMessage() == .text("hello everyone"))
                #expect(try await ws.nextMessage() == .binary(testBytes(100_000)))
            }
            #expect(channel.deliveredCount == 40)
            // A subscriber's message goes to all the others.
            try await clients[3].send(text: "from 3")
            for (i, ws) in clients.enumerated() where i != 3 {
                #expect(try await ws.nextMessage() == .text("from 3"))
            }
            // Closed subscribers leave the channel.
            for ws in clients[..<5] { await ws.close() }
            #expect(await eventually { await channel.subscriberCount() == 15 })
            for ws in clients[5...] { await ws.close() }
            #expect(await eventually { await channel.subscriberCount() == 0 })
            await server.shutdown(grace: .seconds(1))
        }
    }

    /// A subscriber that stops reading fills its write queue past the high water
    /// mark; the policy then drops messages for it (others get everything) or
    /// disconnects it.
    @Test(arguments: [WebSocketChannel.SlowSubscriberPolicy.drop, .disconnect])
    func slowSubscriber(policy: WebSocketChannel.SlowSubscriberPolicy) async throws {
        try await withLoop { loop in
            let channel = WebSocketChannel(policy: policy)
            let log = CloseLog()
            var socket = SocketOptions()
            socket.writeHighWater = 128 << 10
            socket.writeLowWater = 32 << 10
            var settings = WebSocketConfiguration()
            settings.closeTimeout = .milliseconds(200)
            let server = try startServer(on: [loop], socket: socket) { router in
                router.webSocket("/chat", configuration: WebSocketServerConfiguration(connection: settings)) { ws in
                    log.watch(ws)
                    channel.subscribe(ws)
                }
            }
            let fast = try await connectClient(server, path: "/chat", on: loop)
            let slow = try await connectClient(server, path: "/chat", on: loop)
            await onLoop(loop) { slow.pauseReading() }
            #expect(await eventually { await channel.subscriberCount() == 2 })
            let payload = testBytes(64 << 10)
            let frame = WebSocketFrame(binary: payload)
            var sent = 0
            // Lockstep with the fast subscriber, until the slow one is found slow.
            while sent < 2000 && channel.droppedCount == 0 && channel.disconnectedCount == 0 {
                channel.broadcast(frame)
                sent += 1
                #expect(try await fast.nextMessage() == .binary(payload))
            }
            #expect(sent < 2000, "the slow subscriber was never found slow")
            switch policy {
            case .drop:
                #expect(channel.droppedCount >= 1)
                // The slow one is still subscribed and, once it reads again, gets
                // what was not dropped for it, in order.
                await onLoop(loop) { slow.resumeReading() }
                var got = 0
                while let m = try await nextMessage(slow, within: .milliseconds(500)) {
                    #expect(m == .binary(payload))
                    got += 1
                }
                #expect(got >= 1 && got < sent)
                channel.broadcast(text: "last")
                #expect(try await fast.nextMessage() == .text("last"))
                #expect(try await slow.nextMessage() == .text("last"))
                #expect(await channel.subscriberCount() == 2)
            case .disconnect:
                #expect(channel.disconnectedCount == 1)
                let infos = await log.waitFor()
                #expect(infos.first?.sentCode == .policyViolation)
                #expect(await channel.subscriberCount() == 1)
                await onLoop(loop) { slow.resumeReading() }
                while (try? await slow.nextMessage()) != nil {}
                #expect(await slow.closed().wasClean == false)
            }
            await fast.close()
            await slow.close()
            await server.shutdown(grace: .seconds(1))
        }
    }
}
