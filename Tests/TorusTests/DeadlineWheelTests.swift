import Testing
@testable import Torus

/// An owner that records when the wheel handed it back.
private final class Owner: DeadlineOwner {
    let id: Int
    var deadlinePosition = DeadlinePosition.none
    init(_ id: Int) { self.id = id }
    func checkDeadlines(now: UInt64) -> UInt64? { nil }
}

/// The wheel on its own, with a made-up clock: 100 ns slots, 8 of them (800 ns a
/// revolution), so every path (rounds, wrap-around, a late loop) is reached.
@Suite("Deadline wheel")
struct DeadlineWheelTests {
    private func take(_ wheel: inout DeadlineWheel, at now: UInt64) -> [Int] {
        var due: [any DeadlineOwner] = []
        wheel.takeDue(now: now, into: &due)
        return due.map { ($0 as! Owner).id }.sorted()
    }

    @Test("an owner comes back at its deadline's slot boundary, never before")
    func dueAtBoundary() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let a = Owner(1), b = Owner(2)
        #expect(wheel.nextDue == nil)
        wheel.schedule(a, at: 250)   // rounded up to 300
        wheel.schedule(b, at: 300)   // exactly on a boundary
        #expect(wheel.count == 2)
        #expect(wheel.nextDue == 300)
        #expect(take(&wheel, at: 299) == [])
        #expect(a.deadlinePosition.isScheduled)
        #expect(take(&wheel, at: 300) == [1, 2])
        #expect(a.deadlinePosition == .due)
        #expect(wheel.isEmpty)
        #expect(wheel.nextDue == nil)
    }

    @Test("a deadline already past is due at the next tick")
    func pastDeadline() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 1_000)
        let a = Owner(1)
        wheel.schedule(a, at: 10)
        #expect(wheel.nextDue == 1_100)
        #expect(take(&wheel, at: 1_099) == [])
        #expect(take(&wheel, at: 1_100) == [1])
    }

    @Test("scheduling again moves an owner earlier, never later")
    func reschedule() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let a = Owner(1)
        wheel.schedule(a, at: 500)
        wheel.schedule(a, at: 700)    // later: ignored
        #expect(wheel.count == 1)
        #expect(take(&wheel, at: 500) == [1])
        a.deadlinePosition = .none   // checked (what the loop does)
        wheel.schedule(a, at: 900)
        wheel.schedule(a, at: 600)    // earlier: moved
        #expect(wheel.count == 1)
        #expect(take(&wheel, at: 600) == [1])
        #expect(take(&wheel, at: 900) == [])
    }

    @Test("an owner marked due is not scheduled behind the check that is about to run")
    func dueStaysDue() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let a = Owner(1)
        wheel.schedule(a, at: 100)
        #expect(take(&wheel, at: 100) == [1])
        wheel.schedule(a, at: 500)
        #expect(a.deadlinePosition == .due)
        #expect(wheel.isEmpty)
        wheel.remove(a)   // closed before its check: not checked
        #expect(a.deadlinePosition == .none)
    }

    @Test("removal is a swap: the moved owner keeps a valid position")
    func remove() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let owners = (0..<5).map { Owner($0) }
        for o in owners { wheel.schedule(o, at: 300) }
        wheel.remove(owners[1])
        wheel.remove(owners[1])   // twice: nothing
        #expect(owners[1].deadlinePosition == .none)
        #expect(owners[4].deadlinePosition.index == 1)
        wheel.remove(owners[4])
        wheel.remove(owners[0])
        #expect(wheel.count == 2)
        #expect(take(&wheel, at: 300) == [2, 3])
        #expect(wheel.isEmpty)
    }

    @Test("a deadline beyond one revolution waits for its round")
    func farDeadline() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let far = Owner(1), near = Owner(2)
        wheel.schedule(far, at: 5_000)     // six revolutions on
        wheel.schedule(near, at: 1_000)    // the same slot: ticks 50 and 10, both ≡ 2 mod 8
        #expect(far.deadlinePosition.slot == near.deadlinePosition.slot)
        var handedOut: [UInt64: [Int]] = [:]
        var now: UInt64 = 0
        while now <= 6_000 {
            let ids = take(&wheel, at: now)
            if !ids.isEmpty { handedOut[now] = ids }
            if let due = wheel.nextDue { #expect(due > now) }
            now += 100
        }
        #expect(handedOut == [1_000: [2], 5_000: [1]])
    }

    @Test("the earliest deadline is what the loop sleeps for")
    func nextDue() throws {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let a = Owner(1), b = Owner(2)
        wheel.schedule(a, at: 3_050)   // tick 31, beyond a revolution
        #expect(wheel.nextDue == 3_100)
        wheel.schedule(b, at: 420)     // tick 5
        #expect(wheel.nextDue == 500)
        #expect(take(&wheel, at: 500) == [2])
        // Only the far one is left: the wake-up is a lower bound, never later than it.
        let due = try #require(wheel.nextDue)
        #expect(due > 500 && due <= 3_100)
        var now: UInt64 = 600
        var seen: [Int] = []
        while seen.isEmpty {
            now = max(now, wheel.nextDue ?? 0)
            seen = take(&wheel, at: now)
            #expect(now <= 3_100)
        }
        #expect(seen == [1] && now == 3_100)
    }

    @Test("a loop late by several revolutions gets everything that came due")
    func lateLoop() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 8, now: 0)
        let owners = (0..<20).map { Owner($0) }
        for (i, o) in owners.enumerated() { wheel.schedule(o, at: UInt64(100 + i * 250)) }
        // 20 deadlines from 100 to 4_850; wake at 3_000: those up to 3_000 are due.
        let expected = owners.filter { UInt64(100 + $0.id * 250) <= 3_000 }.map(\.id)
        #expect(take(&wheel, at: 3_000) == expected)
        #expect(take(&wheel, at: 10_000) == owners.filter { !expected.contains($0.id) }.map(\.id))
        #expect(wheel.isEmpty)
    }

    @Test("10,000 owners: each handed out once, at its own slot, and rescheduled")
    func manyOwners() {
        var wheel = DeadlineWheel(resolution: 100, slotCount: 64, now: 0)
        let owners = (0..<10_000).map { Owner($0) }
        var deadline: [UInt64] = []
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for o in owners {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let d = 1 + (seed >> 33) % 20_000   // up to 200 ticks: several revolutions
            deadline.append(d)
            wheel.schedule(o, at: d)
        }
        var handedOut = Array(repeating: 0, count: owners.count)
        var rescheduled = Set<Int>()
        var now: UInt64 = 0
        while now <= 40_000 {
            var due: [any DeadlineOwner] = []
            wheel.takeDue(now: now, into: &due)
            for owner in due {
                let o = owner as! Owner
                #expect(deadline[o.id] <= now && now < deadline[o.id] + 100, "owner \(o.id) at \(now)")
                handedOut[o.id] += 1
                o.deadlinePosition = .none
                // Half of them once more, 123 ns on.
                if o.id % 2 == 0, rescheduled.insert(o.id).inserted {
                    deadline[o.id] = now + 123
                    wheel.schedule(o, at: deadline[o.id])
                }
            }
            now += 100
        }
        #expect(wheel.isEmpty)
        #expect(handedOut.enumerated().allSatisfy { $0.element == ($0.offset % 2 == 0 ? 2 : 1) })
    }
}
