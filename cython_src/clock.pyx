# cython: boundscheck=False, wraparound=False
"""Clocks from C (CLOCK_MONOTONIC / CLOCK_REALTIME in ns), for code that stamps events."""
from atomics cimport mm_monotonic_ns, mm_realtime_ns


cpdef long long monotonic_ns() noexcept nogil:
    """CLOCK_MONOTONIC in ns: heartbeats and latency."""
    return mm_monotonic_ns()


cpdef long long realtime_ns() noexcept nogil:
    """CLOCK_REALTIME in ns: venue and local receive times."""
    return mm_realtime_ns()
