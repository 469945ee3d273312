/* Acquire/release atomics for shared-memory segments, via GCC/C11 builtins.
 *
 * Every cross-process ordering in mmshm goes through these helpers: never `volatile`,
 * never plain numpy stores. Pointers are raw addresses inside an mmap'd segment; every
 * 64-bit field they touch is 8-byte aligned (the layouts guarantee it).
 */
#ifndef MMSHM_ATOMICS_H
#define MMSHM_ATOMICS_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mm_load_acquire_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}
static inline uint64_t mm_load_relaxed_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}
static inline void mm_store_release_u64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}
static inline void mm_store_relaxed_u64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}
static inline int64_t mm_load_acquire_i64(const void *p) {
    return __atomic_load_n((const int64_t *)p, __ATOMIC_ACQUIRE);
}
static inline void mm_store_release_i64(void *p, int64_t v) {
    __atomic_store_n((int64_t *)p, v, __ATOMIC_RELEASE);
}
static inline uint64_t mm_fetch_add_u64(void *p, uint64_t v) {
    return __atomic_fetch_add((uint64_t *)p, v, __ATOMIC_ACQ_REL);
}
static inline int mm_cas_u64(void *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n((uint64_t *)p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline int mm_cas_i64(void *p, int64_t expected, int64_t desired) {
    return __atomic_compare_exchange_n((int64_t *)p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline void mm_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void mm_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void mm_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline void mm_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* CLOCK_MONOTONIC in ns: heartbeats and latency. */
static inline int64_t mm_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
/* CLOCK_REALTIME in ns: venue and local receive times. */
static inline int64_t mm_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
