# L2 order book of one instrument: bounded sorted int64 arrays, hot calls nogil.
from libc.stdint cimport int64_t, uint64_t
from records cimport MarketEvent, BookRow

cdef struct BookSide:
    int64_t *key      # first (worst) kept level; ascending, best LAST (bids: price, asks: -price)
    int64_t *qty
    int64_t *kbase    # start of the storage (2 * cap slots): key/qty slide forward on eviction
    int64_t *qbase
    Py_ssize_t n
    Py_ssize_t cap

cdef class L2Book:
    cdef BookSide _bids
    cdef BookSide _asks
    cdef readonly Py_ssize_t max_levels
    cdef readonly int64_t levels_dropped     # inserts refused/evicted because a side was full
    cdef readonly int64_t missing_removes    # qty 0 for a level the book does not hold
    cdef int64_t _pub[4]                     # top last emitted: bid px, bid qty, ask px, ask qty
    cdef object _arrays
    cdef const int64_t *_in[4]
    cdef Py_ssize_t _in_cap
    cdef object _in_ref
    cdef MarketEvent *_events
    cdef Py_ssize_t _n_events
    cdef object _events_ref
    cdef BookRow *_row
    cdef object _row_ref

    cdef void clear_c(self) noexcept nogil
    cdef int set_level_c(self, int side, int64_t px, int64_t qty) noexcept nogil
    cdef int apply_c(self, const int64_t *bpx, const int64_t *bqty, Py_ssize_t nb,
                     const int64_t *apx, const int64_t *aqty, Py_ssize_t na) noexcept nogil
    cdef int state_c(self) noexcept nogil
    cdef bint _top_differs(self) noexcept nogil
    cdef Py_ssize_t top_c(self, int side, int64_t *px, int64_t *qty, Py_ssize_t n) noexcept nogil
    cdef double vwap_c(self, int side, int64_t qty) noexcept nogil
    cdef double imbalance_c(self, Py_ssize_t levels) noexcept nogil
    cdef double microprice_c(self) noexcept nogil
    cdef void emit_c(self, Py_ssize_t slot, int kind, uint64_t md_seq, int instrument, int venue, int status,
                     uint64_t update_id, int64_t venue_ts, int64_t local_ts) noexcept nogil
    cdef void write_row_c(self, int instrument, int status, uint64_t md_seq, uint64_t update_id,
                          int64_t venue_ts, int64_t local_ts) noexcept nogil
