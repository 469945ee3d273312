# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The rate budget's debit in C: :meth:`mmshm.execution.ratelimit.RateBudget.acquire`'s body.

Every order request passes here before it is sent; in Python the checks over four buckets
took ~3.5 us (memoryview word reads, method calls), here ~0.1 us. With ``lock_fd >= 0``
the debit takes and releases the budget's lock itself (the exclusive ``flock`` of the
shared segment's file: two plain syscalls instead of the Python context manager around
them, ~3 us on the order path); with -1 the caller holds it (or there is none),
exactly as around the Python version;
the word layout is RATE_STATE's (int64 words, offsets passed in from ratelimit.py, so the
layout is declared once). ``mmshm.execution.ratelimit.RateBudget._acquire_py`` keeps the
same logic in Python; the tests hold the two to identical results and state.
"""
from libc.errno cimport EINTR, errno
from libc.stdint cimport int64_t


cdef extern from "<sys/file.h>" nogil:
    int flock(int fd, int operation)
    enum:
        LOCK_EX
        LOCK_UN

cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    """Python's // for b > 0 (floor, also for negative a)."""
    cdef int64_t q = a / b
    if (a % b != 0) and (a < 0):
        q -= 1
    return q


def acquire(int64_t[::1] w, int64_t weight, int64_t orders, int64_t now, int w_version, int w_interval,
            int w_limit, int w_used, int w_window, int w_blocked, int w_refused, int w_margin,
            int lock_fd=-1, object clock=None) -> int:
    """Debit (weight, orders) from the buckets in ``w`` and return 0, or count a refusal and
    return the ns to wait (blocked after a 429/418, or until the full bucket's window rolls).
    ``lock_fd``: hold an exclusive flock on it around the debit (-1: the caller locks).
    ``clock``: read under the lock, replacing ``now`` (a time read before waiting for the
    lock could be older than another process's debit and roll its window back)."""
    cdef int64_t wait = 0
    if lock_fd >= 0:
        lock_budget(lock_fd)
    try:
        if clock is not None:
            now = clock()
        wait = debit(&w[0], weight, orders, now, w_version, w_interval, w_limit, w_used, w_window,
                     w_blocked, w_refused, w_margin)
    finally:
        if lock_fd >= 0:
            unlock_budget(lock_fd)
    return wait


cdef int lock_budget(int fd) except -1:
    """The budget's exclusive ``flock`` on ``fd``, waited for without the GIL (retried on
    EINTR). Also the fused order path's (``mmshm._native.orderpath``)."""
    cdef int rc
    with nogil:
        rc = flock(fd, LOCK_EX)
        while rc != 0 and errno == EINTR:
            rc = flock(fd, LOCK_EX)
    if rc != 0:
        raise OSError(errno, "flock of the rate budget failed")
    return 0


cdef void unlock_budget(int fd) noexcept nogil:
    flock(fd, LOCK_UN)


cdef int64_t debit(int64_t *w, int64_t weight, int64_t orders, int64_t now, int w_version, int w_interval,
                   int w_limit, int w_used, int w_window, int w_blocked, int w_refused, int w_margin) noexcept nogil:
    """The debit on the RATE_STATE words at ``w`` (the caller holds the lock): 0, or the
    ns to wait (a refusal, counted). Also the executor's fused order path's debit
    (``mmshm._native.orderpath``), so the rule is written once."""
    cdef int b
    cdef int64_t ival, win, need, lim, cap, wait = 0
    if now < w[w_blocked]:
        wait = w[w_blocked] - now
    else:
        for b in range(N_BUCKETS):                  # roll windows that have ended
            ival = w[w_interval + b]
            if ival:
                win = _floordiv(now, ival)
                if win != w[w_window + b]:
                    w[w_window + b] = win
                    w[w_used + b] = 0
        for b in range(N_BUCKETS):
            ival = w[w_interval + b]
            if not ival:
                continue
            need = weight if b == B_WEIGHT else orders
            lim = w[w_limit + b]
            cap = lim - _floordiv(lim * w[w_margin], 1_000_000)
            if need > 0 and w[w_used + b] + need > cap:
                wait = (w[w_window + b] + 1) * ival - now
                break
    if wait:
        w[w_refused] += 1
    else:
        for b in range(N_BUCKETS):
            if w[w_interval + b]:
                w[w_used + b] += weight if b == B_WEIGHT else orders
    w[w_version] += 2
    return wait
