#ifndef TORUS_HUB_MALLOC_H
#define TORUS_HUB_MALLOC_H
#include <stddef.h>

/// Heap statistics from glibc's mallinfo2 (zero elsewhere). Walks every arena, so
/// call it for metrics, not on hot paths.
typedef struct {
    /// Bytes in allocated chunks (including mmapped ones): what the program holds.
    size_t in_use;
    /// Bytes the allocator got from the system (arenas + mmapped chunks).
    size_t reserved;
    /// Free bytes held inside the arenas.
    size_t free;
} torus_hub_heap_stats;

torus_hub_heap_stats torus_hub_heap(void);

#endif
