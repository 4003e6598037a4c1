# Sourced by the callgrind scripts (redis-callgrind.sh, server-callgrind.sh).
#
#   callgrind_shim DIR          builds DIR/shim.so, to be LD_PRELOADed under valgrind:
#                               valgrind writes into sigsuspend's mask, which libdispatch
#                               passes read-only (the shim copies it), and it keeps its
#                               big lock across io_uring_enter, starving the other
#                               threads (the shim yields first)
callgrind_shim() {
  cat > "$1/shim.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <liburing.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return syscall(SYS_rt_sigsuspend, &copy, 8);
}
typedef int (*wait_fn)(struct io_uring *, struct io_uring_cqe **, unsigned, struct __kernel_timespec *, sigset_t *);
int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe, unsigned n,
                                     struct __kernel_timespec *ts, sigset_t *sigmask) {
    static wait_fn real;
    if (!real) real = (wait_fn)dlsym(RTLD_NEXT, "io_uring_submit_and_wait_timeout");
    sched_yield();
    return real(ring, cqe, n, ts, sigmask);
}
C
  cc -shared -fPIC -O2 -o "$1/shim.so" "$1/shim.c" -ldl
}

# callgrind_total FILE   the total instructions a callgrind output file counted
callgrind_total() {
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}
