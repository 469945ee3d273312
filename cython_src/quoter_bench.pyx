# cython: boundscheck=False, wraparound=False, initializedcheck=False
"""Timed quote cycles in C for bench/quoter.py: seqlock read of the book (and the two
control rows) -> native quote cycle -> seqlock write of the target row, timed per cycle
with CLOCK_MONOTONIC, no Python between the two clock reads."""
from libc.stdint cimport int64_t, uint64_t

from atomics cimport mm_monotonic_ns
from mmshm._native.quoter cimport Quoter
from mmshm._native.shm cimport SeqlockTable


def timed_cycles(Quoter q, SeqlockTable books, SeqlockTable control, SeqlockTable targets,
                 const unsigned char[:, ::1] feed, const int64_t[::1] positions,
                 unsigned char[::1] book_buf, unsigned char[::1] cg_buf, unsigned char[::1] ci_buf,
                 unsigned char[::1] out_buf, int64_t[::1] lat_ns, int instrument_row=0):
    """For each i: (untimed) publish feed[i] into the book table as the feed would, then
    time read book + control rows, quote, write the target row. Returns the number of
    cycles that quoted (reason 0)."""
    cdef Py_ssize_t i, n = lat_ns.shape[0]
    cdef int64_t t0, t1
    cdef int r, quoted = 0
    if feed.shape[0] < n or positions.shape[0] < n:
        raise ValueError("feed/positions shorter than lat_ns")
    with nogil:
        for i in range(n):
            books.write_ptr(instrument_row, &feed[i, 0])
            t0 = mm_monotonic_ns()
            books.read_ptr(instrument_row, &book_buf[0], 100_000_000)
            control.read_ptr(0, &cg_buf[0], 100_000_000)
            control.read_ptr(1 + instrument_row, &ci_buf[0], 100_000_000)
            r = q.cycle_raw(&book_buf[0], &cg_buf[0], &ci_buf[0], positions[i], t0, &out_buf[0])
            targets.write_ptr(instrument_row, &out_buf[0])
            t1 = mm_monotonic_ns()
            lat_ns[i] = t1 - t0
            if r == 0:
                quoted += 1
    return quoted


def timed_cycles_no_shm(Quoter q, const unsigned char[:, ::1] feed, const int64_t[::1] positions,
                        unsigned char[::1] cg_buf, unsigned char[::1] ci_buf,
                        unsigned char[::1] out_buf, int64_t[::1] lat_ns):
    """The cycle alone (book already in local memory): the part the quoter owns."""
    cdef Py_ssize_t i, n = lat_ns.shape[0]
    cdef int64_t t0, t1
    cdef int r, quoted = 0
    with nogil:
        for i in range(n):
            t0 = mm_monotonic_ns()
            r = q.cycle_raw(&feed[i, 0], &cg_buf[0], &ci_buf[0], positions[i], t0, &out_buf[0])
            t1 = mm_monotonic_ns()
            lat_ns[i] = t1 - t0
            if r == 0:
                quoted += 1
    return quoted
