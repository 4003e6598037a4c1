// The reproducer scripts/tsan.sh runs before the TSan suite, with and without the
// runtime shim (.ci/tsan-runtime.c, part 2): a thread resumes a continuation with
// an object it just made, before the awaiting task reaches its `await` (the task
// sleeps first), and the task then reads the object. The resume happens-before the
// read, so with the shim TSan must report nothing; without it the runtime's
// already-resumed path lacks its acquire and TSan reports a race here. With the
// shim a report means its assumptions about the runtime (the continuation layout,
// the status values) no longer hold.
import Glibc

final class Made: @unchecked Sendable { var value = 0 }
final class Handoff: @unchecked Sendable { var continuation: CheckedContinuation<Made, Never>? }

@main struct ContinuationCheck {
    static func main() async {
        var total = 0
        for _ in 0..<50 {
            let made: Made = await withCheckedContinuation { continuation in
                let handoff = Handoff()
                handoff.continuation = continuation
                var thread = pthread_t()
                let started = pthread_create(&thread, nil, { raw in
                    guard let raw else { return nil }
                    let handoff = Unmanaged<Handoff>.fromOpaque(raw).takeRetainedValue()
                    let made = Made()
                    made.value = 1
                    handoff.continuation?.resume(returning: made)
                    return nil
                }, Unmanaged.passRetained(handoff).toOpaque())
                precondition(started == 0, "pthread_create failed")
                pthread_detach(thread)
                usleep(2_000)  // the resume comes first
            }
            total += made.value
        }
        print("continuation check: \(total) handoffs")
    }
}
