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
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <linux/time_types.h>
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

/* errno is a macro over a thread-local; give Swift a function. */
static inline int torus_errno(void) { return errno; }

#endif
