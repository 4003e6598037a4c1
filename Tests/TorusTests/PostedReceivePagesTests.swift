import CLiburing
import Testing
@testable import Torus
import TorusTestSupport

// The pages of posted receive buffers go back to the kernel while receives stay
// armed on the ring (`ProvidedBufferRing.givePostedBack`): after a burst the ring
// keeps every buffer it posted, but not their memory.

private func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in loop.execute { c.resume(returning: body()) } }
}

/// What a loop's first receive ring holds now.
private struct RingState: Sendable {
    var residentBytes: Int
    var posted: Int
    var armedReceives: Int
    var postedGivenBack: Int
    var bufferSize: Int
    var deferTaskrun: Bool
}

private func ringState(_ loop: EventLoop) async -> RingState {
    await onLoop(loop) {
        let ring = loop.receiveRing(0)
        return RingState(residentBytes: ring.residentBytes(), posted: ring.posted, armedReceives: ring.armedReceives,
                         postedGivenBack: ring.postedBuffersGivenBack, bufferSize: ring.size,
                         deferTaskrun: loop.ring.setupFlags & UInt32(IORING_SETUP_DEFER_TASKRUN) != 0)
    }
}

@Suite("Posted receive pages given back")
struct PostedReceivePagesTests {
    @Test("every turn gives back every posted buffer's pages: 16 async echo clients stay byte-exact",
          arguments: [4096, 65536])
    func givenBackEveryTurnUnderEcho(chunk: Int) async throws {
        try await withGroup(loops: 2) { group in
            for loop in group.loops {
                await onLoop(loop) { loop.receiveRing(0).givesBackPostedEveryCommit = true }
            }
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let ok = try await withThrowingTaskGroup(of: Bool.self) { clients in
                for c in 0..<16 {
                    clients.addTask {
                        let payload = testBytes(chunk * 32, seed: UInt64(c + 1) &* 7919)
                        return try await asyncEcho(payload, chunk: chunk, to: server.address, on: group.loops[c % 2])
                    }
                }
                var n = 0
                for try await matched in clients where matched { n += 1 }
                return n
            }
            #expect(ok == 16)
            for loop in group.loops {
                let state = await ringState(loop)
                await onLoop(loop) { loop.receiveRing(0).givesBackPostedEveryCommit = false }
                if state.deferTaskrun {
                    #expect(state.postedGivenBack > 0, "no posted buffer's pages went back: the test did not test it")
                } else {
                    #expect(state.postedGivenBack == 0, "without DEFER_TASKRUN posted pages must stay")
                }
            }
            server.close()
        }
    }

    @Test("after a burst the posted buffers' pages go back while the receives stay armed; the echo goes on")
    func burstPagesComeBackWithReceivesArmed() async throws {
        try await withGroup(loops: 2) { group in
            let serverLoop = group.loops[0], clientLoop = group.loops[1]
            let server = try Server.start(on: [serverLoop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let clients = 8
            let connections = try await clientLoop.run {
                var opened: [AsyncConnection] = []
                for _ in 0..<clients { opened.append(try await AsyncConnection.connect(to: server.address, on: clientLoop)) }
                return opened
            }
            // The burst: 1 MiB each way on every connection at once.
            func echoOnAll(_ size: Int, seed: UInt64) async throws -> Int {
                try await withThrowingTaskGroup(of: Bool.self) { tasks in
                    for (i, conn) in connections.enumerated() {
                        tasks.addTask {
                            let payload = testBytes(size, seed: seed &+ UInt64(i))
                            async let sent: Void = conn.write(payload)
                            let back = try await conn.read(exactly: size)
                            try await sent
                            return back == payload
                        }
                    }
                    var n = 0
                    for try await matched in tasks where matched { n += 1 }
                    return n
                }
            }
            #expect(try await echoOnAll(1 << 20, seed: 11) == clients)
            let after = await ringState(serverLoop)
            let cancelsBefore = await serverLoop.ledgerSnapshot()[.recv].cancelled
            #expect(after.posted > 2 * ProvidedBufferRing.minimumTarget, "the burst did not raise the posted count: \(after)")

            // Idle, every receive still armed, and nobody wakes the loop: its own
            // housekeeping timer gives the pages back within a few intervals (the
            // burst's last turns count in the first; spare buffers go after a whole
            // interval untaken).
            try await Task.sleep(for: .seconds(6))
            let idle = await ringState(serverLoop)
            let floor = 2 * ProvidedBufferRing.minimumTarget * after.bufferSize
            if after.deferTaskrun {
                #expect(idle.residentBytes <= floor, "ring memory still resident: \(idle.residentBytes) bytes, at most \(floor) wanted (right after the burst: \(after.residentBytes))")
                #expect(idle.postedGivenBack > 0)
            }
            #expect(idle.armedReceives == clients, "the idle receives stayed armed")
            #expect(idle.posted == after.posted, "nothing was consumed or reset meanwhile")
            #expect(await serverLoop.ledgerSnapshot()[.recv].cancelled == cancelsBefore, "no receive was cancelled")

            // The same receives fill the buffers whose pages went back: byte-exact.
            #expect(try await echoOnAll(256 << 10, seed: 23) == clients)
            for conn in connections { await conn.close() }
            server.close()
        }
    }
}
