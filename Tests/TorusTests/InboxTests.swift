import Synchronization
import Testing
import Torus
import TorusTestSupport

/// Runs `body` on `loop`'s thread and returns its result.
@discardableResult
private func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in loop.execute { c.resume(returning: body()) } }
}

/// Records what an inbox asked of its producer.
private final class PressureLog: Sendable {
    let events = Mutex<[String]>([])
    func record(_ p: Inbox<[UInt8]>.Pressure) {
        events.withLock { $0.append(p == .pause ? "pause" : "resume") }
    }
    var all: [String] { events.withLock { $0 } }
}

@Suite("Inbox")
struct InboxTests {
    @Test("elements arrive in order; a waiting consumer is handed the next one directly; the end follows")
    func orderAndEnd() async throws {
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 1 << 20)
            // A consumer that waits first gets the element straight from push.
            let first = Task { try await inbox.next() }
            while await onLoop(loop, { inbox.hasWaiter }) == false { await Task.yield() }
            await onLoop(loop) { inbox.push(1, weight: 1) }
            let value1 = try await first.value
            #expect(value1 == 1)
            await onLoop(loop) {
                for i in 2...100 { inbox.push(i, weight: 1) }
                inbox.finish()
            }
            var got: [Int] = []
            while let e = try await inbox.next() { got.append(e) }
            #expect(got == Array(2...100))
            let value2 = try await inbox.next()
            #expect(value2 == nil)
            let value3 = await onLoop(loop) { inbox.push(7, weight: 1) }
            #expect(value3 == false)
        }
    }

    @Test("pause above the high water mark, resume at the low one, once each")
    func backpressure() async throws {
        try await withLoop { loop in
            let log = PressureLog()
            let inbox = Inbox<[UInt8]>(loop: loop, highWater: 1000, lowWater: 300) { log.record($0) }
            await onLoop(loop) {
                for _ in 0..<20 { inbox.push([UInt8](repeating: 1, count: 100), weight: 100) }
            }
            #expect(log.all == ["pause"])
            for taken in 1...20 {
                _ = try await inbox.next()
                let left = 2000 - taken * 100
                #expect(log.all == (left <= 300 ? ["pause", "resume"] : ["pause"]), "after \(taken)")
            }
            let value4 = await onLoop(loop) { inbox.weight }
            #expect(value4 == 0)
        }
    }

    @Test("dropOldest keeps the newest elements within the mark and counts the rest")
    func dropOldest() async throws {
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 10, overflow: .dropOldest)
            let kept = await onLoop(loop) { (0..<25).map { inbox.push($0, weight: 1) } }
            #expect(kept.prefix(10).allSatisfy { $0 })
            #expect(kept.suffix(15).allSatisfy { !$0 })
            let value5 = await onLoop(loop) { inbox.dropped }
            #expect(value5 == 15)
            await onLoop(loop) { inbox.finish() }
            var got: [Int] = []
            while let e = try await inbox.next() { got.append(e) }
            #expect(got == Array(15..<25))
        }
    }

    @Test("the producer's error comes after the queued elements; discard drops them")
    func errorAfterQueue() async throws {
        struct Boom: Error {}
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 100)
            await onLoop(loop) {
                inbox.push(1, weight: 1)
                inbox.push(2, weight: 1)
                inbox.finish(error: Boom())
                inbox.finish()  // the first call decides
            }
            let value6 = try await inbox.next()
            #expect(value6 == 1)
            let value7 = try await inbox.next()
            #expect(value7 == 2)
            await #expect(throws: Boom.self) { try await inbox.next() }

            let other = Inbox<Int>(loop: loop, highWater: 100)
            await onLoop(loop) {
                other.push(1, weight: 1)
                other.discard(error: Boom())
            }
            await #expect(throws: Boom.self) { try await other.next() }
        }
    }

    @Test("pushFront puts bytes back ahead of the queue")
    func pushFront() async throws {
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 100)
            await onLoop(loop) {
                inbox.push(2, weight: 1)
                inbox.push(3, weight: 1)
                inbox.pushFront(1, weight: 1)
                inbox.finish()
            }
            var got: [Int] = []
            while let e = try await inbox.next() { got.append(e) }
            #expect(got == [1, 2, 3])
        }
    }

    @Test("cancelling the waiting task ends only that wait; the queue stays usable")
    func cancellation() async throws {
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 100)
            let waiting = Task { try await inbox.next() }
            while await onLoop(loop, { inbox.hasWaiter }) == false { await Task.yield() }
            waiting.cancel()
            await #expect(throws: CancellationError.self) { try await waiting.value }
            let value8 = await onLoop(loop) { inbox.hasWaiter }
            #expect(value8 == false)
            // A task cancelled before it waits is refused without taking an element.
            await onLoop(loop) { inbox.push(5, weight: 1) }
            let early = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await inbox.next()
            }
            await #expect(throws: CancellationError.self) { try await early.value }
            let value9 = try await inbox.next()
            #expect(value9 == 5)
            await onLoop(loop) { inbox.finish() }
        }
    }

    @Test("a wait with a timeout returns idle without an element, then the element when one comes")
    func idleTimeout() async throws {
        try await withLoop { loop in
            let inbox = Inbox<Int>(loop: loop, highWater: 100)
            guard case .idle = try await inbox.next(timeout: .milliseconds(20)) else {
                Issue.record("expected idle")
                return
            }
            let later = Task { try await inbox.next(timeout: .seconds(30)) }
            while await onLoop(loop, { inbox.hasWaiter }) == false { await Task.yield() }
            await onLoop(loop) { inbox.push(9, weight: 1) }
            guard case .element(9) = try await later.value else {
                Issue.record("expected the element")
                return
            }
            await onLoop(loop) { inbox.finish() }
            guard case .end = try await inbox.next(timeout: .seconds(30)) else {
                Issue.record("expected the end")
                return
            }
        }
    }
}
