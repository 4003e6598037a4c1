#include "hub_malloc.h"
#if defined(__linux__)
#include <features.h>
#include <malloc.h>
#endif

torus_hub_heap_stats torus_hub_heap(void) {
    torus_hub_heap_stats s = {0, 0, 0};
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 m = mallinfo2();
    s.in_use = m.uordblks + m.hblkhd;
    s.reserved = m.arena + m.hblkhd;
    s.free = m.fordblks;
#endif
    return s;
}
