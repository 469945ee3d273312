# The rate budget's debit (see ratebudget.pyx), for the executor's fused order path.
from libc.stdint cimport int64_t

cdef enum:
    N_BUCKETS = 4
    B_WEIGHT = 0            # B_WEIGHT_1M: debited by weight, the others by order count

cdef int64_t debit(int64_t *w, int64_t weight, int64_t orders, int64_t now, int w_version, int w_interval,
                   int w_limit, int w_used, int w_window, int w_blocked, int w_refused, int w_margin) noexcept nogil

cdef int lock_budget(int fd) except -1
cdef void unlock_budget(int fd) noexcept nogil
