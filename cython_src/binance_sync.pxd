# Hot path of the Binance USD-M book sync (the state machine's steady state).
from libc.stdint cimport uint8_t, int64_t, uint64_t
from mmshm._native.binance_parse cimport BinanceParser
from mmshm._native.book cimport L2Book
from mmshm._native.shm cimport BroadcastWriter, SeqlockTable

cdef enum:
    PENDING_TICKERS = 256

cdef class BinanceSyncCore:
    cdef readonly BinanceParser parser
    cdef readonly L2Book book
    cdef public int instrument, venue, status
    cdef public bint in_sync, row_dirty
    cdef public int64_t last_update_id, last_venue_ts, last_local_ts
    cdef readonly int n_events
    cdef readonly object counters
    cdef int64_t *_cnt
    cdef uint64_t *_seq
    cdef object _seq_ref
    cdef int64_t _pt[PENDING_TICKERS][5]
    cdef Py_ssize_t _pt_head, _pt_len
    cdef BroadcastWriter _writer
    cdef SeqlockTable _table
    cdef uint64_t _table_row
    cdef readonly int64_t published, publish_refused
    cdef bint _bound_w, _bound_t
    cdef object _slow

    cdef void flush_c(self) noexcept nogil

    cdef int on_frame_c(self, const uint8_t *buf, Py_ssize_t n, int64_t local_ts) noexcept nogil
    cdef int _frame(self, const uint8_t *buf, Py_ssize_t n, int64_t local_ts) noexcept nogil
    cdef int apply_c(self, int64_t local_ts, bint quiet) noexcept nogil
    cdef void set_status_c(self, int status, int64_t local_ts, uint64_t update_id) noexcept nogil
    cdef int ticker_check_c(self, int64_t bp, int64_t bq, int64_t ap, int64_t aq) noexcept nogil
