# cdef API of the per-stage latency histograms (mmshm._native.latency), for Cython hot loops.
#
#   from mmshm._native.latency cimport LatencyHist
#   cdef LatencyHist h = <LatencyHist>LatencyRecorder.open(instance, "quote_to_send").hist
#   with nogil:
#       h.record(now - t0)                 # local copy only: a few ns
#       h.publish(now)                     # one seqlock row write, now and then
#
# The Python object (kept alive by the caller) owns the table mapping and the local row.
from libc.stdint cimport uint64_t, int64_t
from mmshm._native.shm cimport SeqlockTable


cdef class LatencyHist:
    cdef SeqlockTable table
    cdef uint64_t row
    cdef object rec                 # 1-element LATENCY_ROW array: the local copy
    cdef char* p
    cdef uint64_t* buckets
    cdef uint64_t* count
    cdef uint64_t* sum_ns
    cdef int64_t* max_ns
    cdef int64_t* updated_mono
    cdef int n_buckets

    cdef void record(self, int64_t ns) noexcept nogil
    cdef void publish(self, int64_t now_mono) noexcept nogil
