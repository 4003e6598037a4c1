import Glibc
import Testing
@testable import Torus
import TorusTestSupport

/// Answers each received buffer as many write-queue entries: 16-byte pieces sent
/// alternately as a copy and as `SharedBytes`, so every flush is a multi-entry
/// `sendmsg` that needs a message slot from the loop's arena.
final class ScatterEcho: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        var offset = 0
        var piece = 0
        let raw = bytes.unsafeBytes
        while offset < raw.count {
            let n = min(16, raw.count - offset)
            let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + n])
            if piece & 1 == 0 {
                connection.send(slice)
            } else {
                connection.send(SharedBytes(slice))
            }
            offset += n
            piece += 1
        }
    }
}

@Suite("sendmsg scratch shared by the loop")
struct SendMessageArenaTests {
    @Test("the arena hands out its slots, refuses when all are out, and reclaims them all")
    func arenaSlots() {
        var arena = SendMessageArena(slots: 3)
        let a = arena.take()
        let b = arena.take()
        let c = arena.take()
        #expect(a != nil && b != nil && c != nil)
        #expect(Set([a, b, c].map { UInt(bitPattern: $0) }).count == 3)
        #expect(a?.pointee.msg_iov != b?.pointee.msg_iov)
        #expect(arena.take() == nil)
        #expect(arena.refusals == 1)
        arena.reclaimAll()
        #expect(arena.take() == a)
    }

    /// 200 clients on a server loop with 4 message slots: in a turn where more than 4
    /// connections flush, the rest send their front entry alone, and every byte still
    /// arrives in order on the right connection.
    static func scatterEcho(_ configuration: EventLoop.Configuration, busySubmits: Int) async throws -> (LedgerSnapshot, Int) {
        let refusals = Locked(0)
        let ledger = try await withServer(configuration, makeHandler: { _ in ScatterEcho() }) {
            serverLoop, server, clientLoop in
            if busySubmits > 0 { serverLoop.execute { serverLoop.ring.injectedBusySubmits = busySubmits } }
            let ok = try await echoClients(200, payloadSize: 8 * 1024, to: server.address, on: [clientLoop], seed: 11)
            #expect(ok == 200)
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                serverLoop.execute {
                    refusals.withLock { $0 = serverLoop.sendMessages.refusals }
                    // Every queue drained: the entry storage is back with the loop.
                    #expect(serverLoop.writeEntryBlocks.spareCount > 0)
                    c.resume()
                }
            }
        }
        return (ledger, refusals.current)
    }

    @Test("200 connections gathering multi-entry sends with 4 message slots: byte-exact, quiescent")
    func manyConnectionsFewSlots() async throws {
        var c = EventLoop.Configuration()
        c.sendMessageSlots = 4
        let (_, refusals) = try await Self.scatterEcho(c, busySubmits: 0)
        #expect(refusals > 0, "no flush ever found the arena full: the test did not test the fallback")
    }

    @Test("the same under refused submits on a tiny ring: slots stay out until their SQEs reach the kernel")
    func fewSlotsDeferredSubmissions() async throws {
        var c = SubmitPressureTests.tiny
        c.sendMessageSlots = 4
        let (ledger, _) = try await Self.scatterEcho(c, busySubmits: 200)
        #expect(ledger.deferredSubmissions > 0, "no SQE was ever deferred: the test did not test the path")
    }
}
