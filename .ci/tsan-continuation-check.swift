// The reproducer scripts/tsan.sh runs before the TSan suite, with and without the
// runtime shim (.ci/tsan-runtime.c, part 2). A resumer thread resumes a
// continuation with an object it just made, and the task reads the object. Two
// rounds: the resume comes long before the await (the task sleeps first), then
// right as the task reaches its await (the resumer starts when the continuation's
// body returns), so both of the runtime's inline paths are taken. The resume
// happens-before the read, so with the shim TSan must report nothing; without it
// the runtime lacks the acquire on those paths and TSan reports a race here. With
// the shim a report means its assumptions about the runtime no longer hold.
import Glibc
import Synchronization

final class Made: @unchecked Sendable { var value = 0 }

/// The handoff between the task and the resumer thread.
final class Handoff: @unchecked Sendable {
    var continuation: CheckedContinuation<Made, Never>?
    /// 1: a continuation is ready to resume; 2: stop.
    let signal = Atomic<Int>(0)
}

let handoff = Handoff()

@main struct ContinuationCheck {
    static func main() async {
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { _ in
            while true {
                switch handoff.signal.load(ordering: .acquiring) {
                case 1:
                    handoff.signal.store(0, ordering: .relaxed)
                    let made = Made()
                    made.value = 1
                    let continuation = handoff.continuation
                    handoff.continuation = nil
                    continuation?.resume(returning: made)
                case 2:
                    return nil
                default:
                    continue
                }
            }
        }, nil)
        precondition(started == 0, "pthread_create failed")
        var total = 0
        for round in 0..<2 {
            for _ in 0..<(round == 0 ? 50 : 20_000) {
                let made: Made = await withCheckedContinuation { continuation in
                    handoff.continuation = continuation
                    handoff.signal.store(1, ordering: .releasing)
                    if round == 0 { usleep(2_000) }  // the resume comes first
                }
                total += made.value
            }
        }
        handoff.signal.store(2, ordering: .releasing)
        pthread_join(thread, nil)
        print("continuation check: \(total) handoffs")
    }
}
