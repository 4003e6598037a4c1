#ifndef TORUS_ALLOC_COUNTER_H
#define TORUS_ALLOC_COUNTER_H
/*
 * Counts heap allocations per thread by interposing the malloc family in the
 * executable that links this target (the executable's definitions win over
 * glibc's for every caller, the Swift runtime included). Each call forwards to
 * glibc's __libc_* entry points, so pointers stay compatible with free().
 * Only the allocation-check benchmark links it.
 */
unsigned long torus_thread_allocations(void);
/* Prints a backtrace (to stderr) of the next n allocations on this thread. */
void torus_trace_allocations(int n);
#endif
