// Teaches ThreadSanitizer the Swift runtime's `Synchronization.Mutex` on Linux.
//
// Why: Mutex's fast paths are inlined into the caller (@_alwaysEmitIntoClient), so
// TSan sees their atomic acquire (lock) and release (unlock) on the lock word. Under
// contention they call `_MutexHandle._lockSlow`, `_tryLockSlow` and `_unlockSlow`
// in libswiftSynchronization.so, which is not built with TSan: they take and hand
// over the lock with plain `lock cmpxchg` and `syscall(SYS_futex, FUTEX_LOCK_PI /
// FUTEX_UNLOCK_PI)`, none of which TSan sees. Every access guarded by a contended
// Mutex is then reported as a race (Torus's EventLoop inbox and run state, the
// blocking pool's queue, LoopShards, tests' own Mutexes): false positives caused by
// runtime code, whose frames are not even on the reported stacks (so no suppression
// could name them without naming Torus).
//
// What: scripts/tsan.sh builds this file into a small library and LD_PRELOADs it
// for the TSan run only. It defines the three slow-path symbols, calls the real
// ones (dlsym RTLD_NEXT), and tells TSan what they did with the public annotation
// interface: `__tsan_acquire(lockword)` once the lock is held, `__tsan_release
// (lockword)` before it is handed over. Those act on the same synchronisation
// object as the inlined fast paths' atomics on that word, so TSan then models the
// lock exactly; nothing is suppressed, and a real race on Mutex-guarded data (an
// access outside the lock) is still reported. In a process without the TSan
// runtime (a child that is not a TSan build) the annotations are absent (weak)
// and the wrappers only forward.
//
// ABI (checked against the 6.3 runtime's disassembly): `self` (the borrowed
// `_MutexHandle`, i.e. the lock word's address) travels in the Swift self register
// (r13: clang's swift_context), `selfId` (the caller's tid) in the first argument.
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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
        fprintf(stderr, "tsan-mutex: %s not found\n", name);
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
