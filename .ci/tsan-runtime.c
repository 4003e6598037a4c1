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
// `__tsan_release(task)` and then moves the continuation's status from Pending to
// Resumed, or, when the task already awaits, enqueues it; the executor's job run
// then does `__tsan_acquire(task)`. But `swift_continuation_await` goes on inline,
// with no acquire, in two cases: the status is already Resumed when it looks (the
// resumer was faster: a loop completed the operation before the awaiting thread
// reached its `await`, common on a busy 2-core machine), or the resumer wins the
// race between that look and the await's own Pending->Awaited compare-and-swap.
// Everything the resumer wrote (an AsyncConnection made on the loop, a buffer
// filled there) then looked like a race to the task that reads it. CI failed on
// exactly that, twice. (Wrapping the resume side cannot work: CheckedContinuation
// resumes from inside the runtime library, not through the PLT.)
// The fix: every continuation resumes its task through a trampoline that does the
// acquire. `swift_continuation_init` is wrapped: before the runtime copies the
// context's ResumeParent (the task's resume point) into the task, the wrapper
// records it in a table keyed by the context and puts the trampoline there. Every
// path of a resumption (inline in the await, through `swift_task_switch`, through
// the executor) then calls the trampoline exactly once, on the resumed task: it
// does `__tsan_acquire(task)` (the address the resumer released on), takes the
// recorded resume point out of the table, puts it back in the context and jumps
// to it. When the table is full a continuation is left alone (no annotation).
// ABI (Swift 6.3, include/swift/ABI/Task.h, Concurrency.h): init(context, flags)
// is swiftcall with ordinary arguments and returns the task; an AsyncContext
// starts with Parent, then ResumeParent (offset 8), a swiftasynccall function
// taking the context as its async context; `swift_task_getCurrent` is swiftcall.
// scripts/tsan.sh checks the shim with a reproducer before the run.
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <time.h>

#define SWIFTCALL __attribute__((swiftcall))
#define SELF __attribute__((swift_context))

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

// 2. Continuations resume through an acquiring trampoline (see above).
enum { RESUME_PARENT_OFFSET = 8, TABLE_SIZE = 16384, PROBES = 32 };

#define SWIFTASYNCCALL __attribute__((swiftasynccall))
#define ASYNC_CONTEXT __attribute__((swift_async_context))

SWIFTCALL void *swift_task_getCurrent(void);
typedef SWIFTASYNCCALL void (*resume_point)(void *ASYNC_CONTEXT context);

/// context -> the resume point the trampoline stands in for.
static struct { void *context; resume_point resume; } table[TABLE_SIZE];
static int table_lock;

static void table_lock_take(void) {
    while (__atomic_exchange_n(&table_lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
}
static void table_lock_give(void) { __atomic_store_n(&table_lock, 0, __ATOMIC_RELEASE); }
static size_t slot_of(void *context) { return (size_t)(((uintptr_t)context >> 4) * 2654435761u % TABLE_SIZE); }

static bool remember(void *context, resume_point resume) {
    size_t first = slot_of(context);
    bool stored = false;
    table_lock_take();
    for (size_t i = 0; i < PROBES && !stored; i++) {
        size_t slot = (first + i) % TABLE_SIZE;
        if (table[slot].context == NULL || table[slot].context == context) {
            table[slot].context = context;
            table[slot].resume = resume;
            stored = true;
        }
    }
    table_lock_give();
    return stored;
}

static resume_point take(void *context) {
    resume_point resume = NULL;
    size_t first = slot_of(context);
    table_lock_take();
    for (size_t i = 0; i < PROBES; i++) {
        size_t slot = (first + i) % TABLE_SIZE;
        if (table[slot].context == context) {
            resume = table[slot].resume;
            table[slot].context = NULL;
            table[slot].resume = NULL;
            break;
        }
    }
    table_lock_give();
    return resume;
}

static SWIFTASYNCCALL void acquiring_resume(void *ASYNC_CONTEXT context) {
    resume_point resume = take(context);
    if (!resume) {
        fprintf(stderr, "tsan-runtime: a continuation resumed with no recorded resume point\n");
        abort();
    }
    *(resume_point *)((char *)context + RESUME_PARENT_OFFSET) = resume;
    if (__tsan_acquire) __tsan_acquire(swift_task_getCurrent());
    __attribute__((musttail)) return resume(context);
}

typedef SWIFTCALL void *(*init_fn)(void *context, size_t flags);
static void *init_real;

SWIFTCALL void *swift_continuation_init(void *context, size_t flags) {
    init_fn init = (init_fn)real("swift_continuation_init", &init_real);
    resume_point *slot = (resume_point *)((char *)context + RESUME_PARENT_OFFSET);
    if (__tsan_acquire && remember(context, *slot)) *slot = acquiring_resume;
    return init(context, flags);
}
