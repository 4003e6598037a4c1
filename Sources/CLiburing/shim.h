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

#endif
