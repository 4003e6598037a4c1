import CLiburing

/// Tells ThreadSanitizer, in a TSan build, that the current task has just been
/// resumed by the thread that resumed its continuation; elsewhere it costs one
/// compare.
///
/// Why: resuming a continuation releases on the task (`__tsan_release`), and the
/// executor acquires it when it runs the task again. But when the resume comes
/// before the task reaches its `await`, or races with it, the Swift runtime (6.3)
/// continues the task inline without that acquire, so TSan took what the loop made
/// for the task (an `AsyncConnection`, a `File`) for a data race when the task read
/// it. Optimised code gets the acquire from the test shim (`.ci/tsan-runtime.c`);
/// debug builds call the runtime library's `withChecked…Continuation`, which the
/// shim cannot reach, so the awaits that hand over an object made on the loop call
/// this right after.
@inline(__always)
package func taskResumedByLoop() {
    withUnsafeCurrentTask { task in
        guard let task else { return }
        // `UnsafeCurrentTask` is one reference to the task object: the address the
        // runtime released on.
        torus_tsan_acquire(unsafeBitCast(task, to: UnsafeRawPointer.self))
    }
}
