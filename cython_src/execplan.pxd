# The executor's plan in C (see execplan.pyx), for the fused order path (orderpath.pyx).
from libc.stdint cimport int64_t

cdef enum:
    MAX_SIDE = 128          # live orders per side handled here (more -> the Python plan)
    MAX_LEVELS = 5          # TARGET_ROW levels per side
    MAX_ACTS = 2 * MAX_SIDE + 2 * MAX_LEVELS
    SIDE_BUY = 1
    SIDE_SELL = 2

cdef struct Ord:
    int64_t orig_price  # the order's price at the venue (working order is sorted by it)
    int64_t price       # effective: the price an amend in flight is moving it to
    int64_t qty         # effective, likewise
    int64_t filled
    int status
    int side
    bint amend_pending
    int obj             # index into the Python list of Order objects


cdef struct Lvl:
    int64_t price
    int64_t qty


cdef struct Act:
    int side
    int obj             # order index (cancel, amend); -1 for a place
    int64_t price
    int64_t qty


cdef struct Plan:
    int n_cancel, n_amend, n_place
    Act cancels[MAX_ACTS]
    Act amends[MAX_ACTS]
    Act places[MAX_ACTS]


cdef int plan_into(Plan* p, Ord* orders, list objs, object row, dict books, dict positions,
                   object flatten_ids, int mode, object control, int64_t px_tol, int64_t qty_tol,
                   bint amend, double tol_bp, double tol_frac, int* inst_out, int64_t* md_seq_out) except -1
cdef object actions_of(const Plan* p, list objs, int inst, int64_t md_seq)
