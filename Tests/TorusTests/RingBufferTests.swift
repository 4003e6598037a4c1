import Testing
@testable import Torus
import TorusTestSupport

/// Counts live instances, to prove the ring releases what it holds.
private final class Tracked {
    static let live = Locked(0)
    let value: Int
    init(_ value: Int) {
        self.value = value
        Tracked.live.withLock { $0 += 1 }
    }
    deinit { Tracked.live.withLock { $0 -= 1 } }
}

@Suite("RingBuffer", .serialized)
struct RingBufferTests {
    @Test("FIFO order across wrap-around and growth; in-place modification")
    func fifoWrapAndGrow() {
        var ring = RingBuffer<Int>(capacity: 4)
        var model: [Int] = []
        var next = 0
        // Interleave pushes and pops so the head walks around the block while it grows.
        for round in 0..<50 {
            for _ in 0..<(round % 7 + 1) {
                ring.append(next)
                model.append(next)
                next += 1
            }
            for _ in 0..<(round % 5) where !model.isEmpty {
                #expect(ring.popFirst() == model.removeFirst())
            }
            if round % 3 == 0, !model.isEmpty {
                #expect(ring.popLast() == model.removeLast())
            }
            #expect(ring.count == model.count)
            if ring.count > 0 {
                ring[ring.count - 1] += 1000
                model[model.count - 1] += 1000
                #expect(ring[0] == model[0])
            }
        }
        var drained: [Int] = []
        while let e = ring.popFirst() { drained.append(e) }
        #expect(drained == model)
        #expect(ring.isEmpty && ring.popFirst() == nil && ring.popLast() == nil)
    }

    @Test("elements are released when popped, removed, or when the ring goes away")
    func releasesElements() {
        do {
            var ring = RingBuffer<Tracked>(capacity: 2)
            for i in 0..<10 { ring.append(Tracked(i)) }
            #expect(Tracked.live.current == 10)
            #expect(ring.popFirst()?.value == 0)
            #expect(ring.popLast()?.value == 9)
            #expect(Tracked.live.current == 8)
            #expect(ring[0].value == 1)
        }
        #expect(Tracked.live.current == 0, "deinit releases what is left")
        var ring = RingBuffer<Tracked>()
        for i in 0..<5 { ring.append(Tracked(i)) }
        ring.removeAll()
        #expect(Tracked.live.current == 0 && ring.isEmpty)
    }
}
