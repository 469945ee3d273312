# Binance USD-M frame parser: raw combined-stream bytes -> typed fields, int64 ticks/lots.
from libc.stdint cimport uint8_t, int64_t, uint64_t
from records cimport MarketEvent

cdef class BinanceParser:
    cdef readonly int kind            # K_* of the last parse (0 = dropped)
    cdef readonly int drop_reason     # D_* of the last parse (0 = parsed)
    cdef readonly int64_t first_update_id, update_id, prev_update_id   # U, u, pu
    cdef readonly int64_t event_time, transaction_time                  # E, T (ms)
    cdef readonly int64_t last_update_id                                 # REST snapshot
    cdef readonly int64_t trade_id, trade_px, trade_qty
    cdef readonly bint buyer_maker
    cdef readonly int64_t bid_px, bid_qty, ask_px, ask_qty              # bookTicker
    cdef readonly Py_ssize_t n_bids, n_asks, max_levels
    cdef readonly int price_exp, qty_exp
    cdef readonly int64_t tick_mantissa, lot_mantissa
    cdef readonly object bids_px, bids_qty, asks_px, asks_qty           # int64[max_levels]
    cdef readonly object messages, drops                                 # int64 counters
    cdef int64_t *_bpx
    cdef int64_t *_bqty
    cdef int64_t *_apx
    cdef int64_t *_aqty
    cdef int64_t *_msgs
    cdef int64_t *_drops
    cdef unsigned int _have
    cdef int _ev
    cdef int _err
    cdef bytes _symbol
    cdef const uint8_t *_sym
    cdef Py_ssize_t _sym_len
    cdef MarketEvent *_events
    cdef Py_ssize_t _n_events
    cdef object _events_ref

    cdef int parse_c(self, const uint8_t *buf, Py_ssize_t n) noexcept nogil
    cdef int emit_trade_c(self, Py_ssize_t slot, uint64_t md_seq, int instrument, int venue,
                          int status, int64_t local_ts) noexcept nogil
    cdef void _err_set(self, int reason) noexcept nogil
    cdef const uint8_t *_price(self, const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil
    cdef const uint8_t *_qty(self, const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil
    cdef const uint8_t *_int(self, const uint8_t *p, const uint8_t *end, int64_t *out) noexcept nogil
    cdef const uint8_t *_levels(self, const uint8_t *p, const uint8_t *end, int64_t *px, int64_t *qty,
                                Py_ssize_t *count) noexcept nogil
    cdef const uint8_t *_object(self, const uint8_t *p, const uint8_t *end, int depth) noexcept nogil
    cdef void _event_type(self, const uint8_t *p, const uint8_t *end) noexcept nogil
    cdef const uint8_t *_symbol_field(self, const uint8_t *p, const uint8_t *end) noexcept nogil
