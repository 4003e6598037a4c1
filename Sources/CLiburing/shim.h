/*
 * CLiburing: the C side of Torus. Everything here is a thin, documented
 * wrapper over liburing 2.3 and Linux headers; no policy lives in C.
 *
 * <features.h> must come before <liburing.h> or the glibc module clashes
 * over fd_set when imported into Swift.
 */
#ifndef TORUS_CLIBURING_SHIM_H
#define TORUS_CLIBURING_SHIM_H

#include <features.h>
#include <pthread.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <malloc.h>
#include <dlfcn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <linux/time_types.h>
#include <linux/stat.h>
#include <liburing.h>

/* IOSQE_* are macros built from enum bits; they do not import. */
static const unsigned char TORUS_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const unsigned char TORUS_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const unsigned char TORUS_IOSQE_ASYNC = IOSQE_ASYNC;
static const unsigned char TORUS_IOSQE_BUFFER_SELECT = IOSQE_BUFFER_SELECT;
static const unsigned char TORUS_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;

/*
 * Provided buffer ring, set up by hand (liburing 2.3 has no
 * io_uring_setup_buf_ring): mmap the ring entries, register them as buffer
 * group `bgid`. Returns NULL and sets *err (negative errno) on failure.
 * The caller owns the mapping and frees it with torus_free_buf_ring.
 */
static inline struct io_uring_buf_ring *
torus_setup_buf_ring(struct io_uring *ring, unsigned entries, int bgid, int *err)
{
    size_t size = (size_t)entries * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        *err = -errno;
        return NULL;
    }
    struct io_uring_buf_ring *br = (struct io_uring_buf_ring *)mem;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)br;
    reg.ring_entries = entries;
    reg.bgid = (unsigned short)bgid;
    int ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret != 0) {
        munmap(mem, size);
        *err = ret;
        return NULL;
    }
    *err = 0;
    return br;
}

static inline int
torus_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
                    unsigned entries, int bgid)
{
    int ret = io_uring_unregister_buf_ring(ring, bgid);
    munmap(br, (size_t)entries * sizeof(struct io_uring_buf));
    return ret;
}

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
static const int TORUS_AT_EMPTY_PATH = AT_EMPTY_PATH;

/*
 * openat2(2) path resolution (<linux/openat2.h>, already included by liburing's
 * compat.h): `struct open_how` imports as is; the RESOLVE_* bits are given typed.
 * RESOLVE_BENEATH refuses (EXDEV) any resolution that leaves the directory fd,
 * through "..", an absolute path or a symlink's target; RESOLVE_NO_SYMLINKS refuses
 * (ELOOP) every symlink on the path, the last component included;
 * RESOLVE_NO_MAGICLINKS refuses /proc-style magic links.
 */
#include <linux/openat2.h>
static const unsigned long long TORUS_RESOLVE_BENEATH = RESOLVE_BENEATH;
static const unsigned long long TORUS_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
static const unsigned long long TORUS_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;

/* A directory handle to resolve paths beneath (O_PATH: not for reading). open(2) is
 * variadic, so Swift gets this fixed form; -1 with errno set on failure. */
static inline int torus_open_directory_handle(const char *path) {
#ifdef O_PATH
    return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
#else
    return open(path, __O_PATH | O_DIRECTORY | O_CLOEXEC);
#endif
}

/* Whether this kernel's io_uring has IORING_OP_OPENAT2 (probed on a throwaway ring;
 * -1 when the probe itself is refused). */
static inline int torus_ring_supports_openat2(void) {
    struct io_uring_probe *probe = io_uring_get_probe();
    if (!probe) return -1;
    int ok = io_uring_opcode_supported(probe, IORING_OP_OPENAT2);
    io_uring_free_probe(probe);
    return ok ? 1 : 0;
}

/*
 * Whether `malloc` is glibc's own. A sanitizer runtime (ASan, TSan) or a preloaded
 * allocator (jemalloc, tcmalloc) interposes `malloc`; glibc's arenas are then never
 * set up and `malloc_trim` would walk uninitialized state (it crashes under TSan).
 * Decided once per process, by comparing the `malloc` the program binds to with
 * the one libc.so.6 exports.
 */
static inline int torus_malloc_is_glibc(void) {
    static int state; /* 0 unknown, 1 glibc, 2 interposed */
    int known = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (known == 0) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        void *own = libc ? dlsym(libc, "malloc") : NULL;
        void *bound = dlsym(RTLD_DEFAULT, "malloc");
        known = (own != NULL && own == bound) ? 1 : 2;
        if (libc) dlclose(libc);
        __atomic_store_n(&state, known, __ATOMIC_RELAXED);
    }
    return known == 1;
}

/*
 * Asks the allocator to return free memory to the kernel (every arena; glibc
 * madvises the free pages inside its heaps, not only the top). Called by a loop's
 * memory housekeeping after a burst has been given back, at most once a second.
 * Does nothing (returns 0) when `malloc` is not glibc's (see above).
 */
static inline int torus_malloc_trim(void) {
    return torus_malloc_is_glibc() ? malloc_trim(0) : 0;
}

/* Wakes a loop sleeping on its eventfd. */
static inline void torus_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r;
}

/*
 * Enables a ring created with IORING_SETUP_R_DISABLED (liburing 2.3 declares
 * io_uring_enable_rings but its shared library does not export it). With
 * SINGLE_ISSUER, the calling thread becomes the ring's only submitter.
 */
static inline int torus_enable_rings(struct io_uring *ring) {
    long r = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

/* Names the calling thread (shown by top -H, perf, gdb). */
static inline void torus_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

/* errno is a macro over a thread-local; give Swift a function. */
static inline int torus_errno(void) { return errno; }

/*
 * ThreadSanitizer's happens-before annotation: present only in a process built
 * with TSan (a weak symbol, null elsewhere: then this is one compare). Used by
 * TaskHandoff.swift; see there.
 */
extern void __tsan_acquire(void *addr) __attribute__((weak));
static inline void torus_tsan_acquire(const void *addr) {
    if (__tsan_acquire) __tsan_acquire((void *)addr);
}

#endif
