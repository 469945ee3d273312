# Cython view of atomics.h: the only way hot code orders stores across processes.
from libc.stdint cimport uint64_t, int64_t

cdef extern from "atomics.h" nogil:
    uint64_t mm_load_acquire_u64(const void *p)
    uint64_t mm_load_relaxed_u64(const void *p)
    void mm_store_release_u64(void *p, uint64_t v)
    void mm_store_relaxed_u64(void *p, uint64_t v)
    int64_t mm_load_acquire_i64(const void *p)
    void mm_store_release_i64(void *p, int64_t v)
    uint64_t mm_fetch_add_u64(void *p, uint64_t v)
    int mm_cas_u64(void *p, uint64_t expected, uint64_t desired)
    int mm_cas_i64(void *p, int64_t expected, int64_t desired)
    void mm_fence_acquire()
    void mm_fence_release()
    void mm_fence_seq_cst()
    void mm_cpu_relax()
    int64_t mm_monotonic_ns()
    int64_t mm_realtime_ns()
