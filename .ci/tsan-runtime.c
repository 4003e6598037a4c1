// Teaches ThreadSanitizer two synchronisations of the Swift runtime on Linux that it
// cannot see, because the runtime libraries are not built with TSan. Without them
// TSan reports races on Torus frames that are not races; with them nothing has to be
// suppressed, and a real race is still reported.
//
// scripts/tsan.sh builds this file into a small library and LD_PRELOADs it for the
// TSan run only. Each wrapper defines a runtime symbol, calls the real one (dlsym
// RTLD_NEXT), and tells TSan what happened with the public annotation interface
// (`__tsan_acquire` / `__tsan_release`). In a process without the TSan runtime (a
// child that is not a TSan build) the annotations are absent (weak) and the
// wrappers only forward.
//
// 1. Synchronization.Mutex. Its fast paths are inlined into the caller
// (@_alwaysEmitIntoClient), so TSan sees their atomic acquire (lock) and release
// (unlock) on the lock word. Under contention they call `_MutexHandle._lockSlow`,
// `_tryLockSlow` and `_unlockSlow` in libswiftSynchronization.so, which take and
// hand over the lock with plain `lock cmpxchg` and `syscall(SYS_futex,
// FUTEX_LOCK_PI / FUTEX_UNLOCK_PI)`, none of which TSan sees: every access guarded
// by a contended Mutex was reported (Torus's EventLoop inbox and run state, the
// blocking pool's queue, LoopShards, tests' own Mutexes). The wrappers add
// `__tsan_acquire(lockword)` once the lock is held and `__tsan_release(lockword)`
// before it is handed over, on the same synchronisation object as the inlined fast
// paths' atomics, so TSan then models the lock exactly.
// ABI (checked against the 6.3 runtime's disassembly): `self` (the borrowed
// `_MutexHandle`, i.e. the lock word's address) travels in the Swift self register
// (r13: clang's swift_context), `selfId` (the caller's tid) in the first argument.
//
// 2. A continuation resumed before its task awaits. `resume` does
// `__tsan_release(task)` and then moves the continuation from Pending to Resumed;
// the task normally goes on through the executor, whose job run does
// `__tsan_acquire(task)`. But when the resumer was faster (a loop completed the
// operation before the awaiting thread reached its `await`: common on a busy
// 2-core machine), `swift_continuation_await` sees Resumed and continues the task
// at once, with no acquire: everything the resumer wrote (an AsyncConnection made
// on the loop, a buffer filled there) looked like a race to the task that reads
// it. CI failed on exactly that once. The wrapper reads the continuation's status
// the way the runtime does (an acquire load) and, when it is Resumed, does the
// missing `__tsan_acquire(task)` before handing over to the real function.
// ABI (Swift 6.3, include/swift/ABI/Task.h): `swift_continuation_await` is
// swiftasynccall with the ContinuationAsyncContext as its first, ordinary argument;
// the context's AwaitSynchronization word is at offset 24 (after Parent,
// ResumeParent and Flags), Resumed is 2; `swift_task_getCurrent` is swiftcall and
// returns the task the runtime released on. scripts/tsan.sh checks all of this
// with a reproducer before the run (`--self-check`).
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SWIFTCALL __attribute__((swiftcall))
#define SELF __attribute__((swift_context))
#define SWIFTASYNCCALL __attribute__((swiftasynccall))

extern void __tsan_acquire(void *addr) __attribute__((weak));
extern void __tsan_release(void *addr) __attribute__((weak));

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define TRY_LOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"

typedef SWIFTCALL void (*lock_slow_fn)(uint32_t, void *SELF);
typedef SWIFTCALL bool (*try_lock_slow_fn)(void *SELF);
typedef SWIFTCALL void (*unlock_slow_fn)(void *SELF);

static void *real(const char *name, void **cache) {
    void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (f) return f;
    f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "tsan-runtime: %s not found\n", name);
        abort();
    }
    __atomic_store_n(cache, f, __ATOMIC_RELEASE);
    return f;
}

static void *lock_slow_real, *try_lock_slow_real, *unlock_slow_real;

SWIFTCALL void torus_tsan_lock_slow(uint32_t self_id, void *SELF handle) __asm__(LOCK_SLOW);
SWIFTCALL void torus_tsan_lock_slow(uint32_t self_id, void *SELF handle) {
    ((lock_slow_fn)real(LOCK_SLOW, &lock_slow_real))(self_id, handle);
    if (__tsan_acquire) __tsan_acquire(handle);
}

SWIFTCALL bool torus_tsan_try_lock_slow(void *SELF handle) __asm__(TRY_LOCK_SLOW);
SWIFTCALL bool torus_tsan_try_lock_slow(void *SELF handle) {
    bool locked = ((try_lock_slow_fn)real(TRY_LOCK_SLOW, &try_lock_slow_real))(handle);
    if (locked && __tsan_acquire) __tsan_acquire(handle);
    return locked;
}

SWIFTCALL void torus_tsan_unlock_slow(void *SELF handle) __asm__(UNLOCK_SLOW);
SWIFTCALL void torus_tsan_unlock_slow(void *SELF handle) {
    if (__tsan_release) __tsan_release(handle);
    ((unlock_slow_fn)real(UNLOCK_SLOW, &unlock_slow_real))(handle);
}

// 2. swift_continuation_await: the acquire its already-resumed path lacks.
enum { AWAIT_SYNCHRONIZATION_OFFSET = 24, CONTINUATION_RESUMED = 2 };

SWIFTCALL void *swift_task_getCurrent(void);
typedef SWIFTASYNCCALL void (*await_fn)(void *context);
static void *await_real;

SWIFTASYNCCALL void swift_continuation_await(void *context) {
    await_fn f = (await_fn)real("swift_continuation_await", &await_real);
    size_t status = __atomic_load_n((size_t *)((char *)context + AWAIT_SYNCHRONIZATION_OFFSET),
                                    __ATOMIC_ACQUIRE);
    if (status == CONTINUATION_RESUMED && __tsan_acquire) __tsan_acquire(swift_task_getCurrent());
    __attribute__((musttail)) return f(context);
}
