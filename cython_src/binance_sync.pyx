# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Steady state of the Binance USD-M book sync, in C: one call per frame.

``mmshm.venues.binance_usdm.marketdata.BinanceUsdmBook`` owns the state machine; while
the book is in sequence, every frame is handled here without touching Python objects:
parse, check ``pu``, apply, detect a top change, write the MARKET_EVENTs and the BOOK_ROW.
Whatever needs a decision (a diff while not in sync, a sequence break, a snapshot, a
ticker that disagrees with the book) returns a negative code and the Python side takes
over, with the parser still holding the parsed frame.

bookTickers are checked against the book: a ticker with ``u`` equal to an applied diff's
``u`` describes the same book state. On Binance the ticker usually arrives BEFORE the
diff carrying the same ``u``, so tickers ahead of the book wait in a small ring until the
diff with their ``u`` is applied (or a later one passes them).
"""
from libc.stdint cimport uint8_t, int64_t, uint64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from mmshm._native.binance_parse cimport BinanceParser
from mmshm._native.book cimport L2Book
from mmshm._native.shm cimport BroadcastWriter, SeqlockTable

import numpy as np

# return codes of on_frame (>= 0: number of events written)
cdef enum:
    C_SLOW_DEPTH = -1      # a diff while not in sync, or a sequence break (counted as a gap)
    C_SLOW_SNAPSHOT = -2   # a REST snapshot frame
    C_SLOW_RESYNC = -3     # the book disagreed with a bookTicker: now STALE (events in n_events)
SLOW_DEPTH = C_SLOW_DEPTH
SLOW_SNAPSHOT = C_SLOW_SNAPSHOT
SLOW_RESYNC = C_SLOW_RESYNC

SYNC_COUNTERS = (
    "gaps",               # pu != previous u (a diff is missing)
    "resyncs",            # snapshots requested after the first one
    "snapshots",          # snapshots loaded
    "stale_diffs",        # diffs dropped: u < lastUpdateId, or already applied
    "snapshot_too_old",   # the first diff after a snapshot had U > lastUpdateId
    "buffer_overflow",    # buffered diffs lost while waiting for a snapshot
    "applied",            # diffs applied
    "crossed",            # applied diffs that left the book crossed or locked
    "ticker_checks",      # bookTickers compared with the book at the same u
    "ticker_mismatches",  # ... that disagreed (treated as a break)
    "trades",             # trade/aggTrade events emitted
    "pending_overflow",   # tickers dropped from the pending ring
)

cdef enum:
    C_GAPS = 0
    C_RESYNCS = 1
    C_SNAPSHOTS = 2
    C_STALE_DIFFS = 3
    C_TOO_OLD = 4
    C_BUF_OVERFLOW = 5
    C_APPLIED = 6
    C_CROSSED = 7
    C_TICKER_CHECKS = 8
    C_TICKER_MISMATCHES = 9
    C_TRADES = 10
    C_PENDING_OVERFLOW = 11
    N_COUNTERS = 12
    # parser kinds (binance_parse K_*)
    K_DEPTH = 1
    K_TICKER = 2
    K_TRADE = 3
    K_AGG = 4
    K_SNAPSHOT = 5
    # MdKind / MdStatus
    EV_TOP = 1
    EV_STATUS = 3
    ST_LIVE = 2
    ST_STALE = 3
    # book flags
    F_TOP = 1
    F_BAD = 6


cdef class BinanceSyncCore:
    """The C steady state for one instrument. Python drives it (see marketdata.py).

    ``seq`` is a 1-element uint64 array holding the feed-wide event sequence: cores of
    one feed share it, so ``md_seq`` is unique and increasing across instruments.
    """

    def __init__(self, BinanceParser parser, L2Book book, seq, int instrument, int venue, int status):
        if not (isinstance(seq, np.ndarray) and seq.dtype == np.uint64 and seq.shape == (1,)):
            raise TypeError("seq must be a 1-element uint64 array")
        self.parser = parser
        self.book = book
        self._seq_ref = seq
        cdef uint64_t[::1] sv = seq
        self._seq = &sv[0]
        self.counters = np.zeros(N_COUNTERS, np.int64)
        cdef int64_t[::1] cv = self.counters
        self._cnt = &cv[0]
        self.instrument = instrument
        self.venue = venue
        self.status = status
        self.in_sync = False
        self.row_dirty = False
        self._pt_head = 0
        self._pt_len = 0

    # ------------------------------------------------------------------ C
    cdef void set_status_c(self, int status, int64_t local_ts, uint64_t update_id) noexcept nogil:
        if status == self.status:
            return
        self.status = status
        self._seq[0] += 1
        self.book.emit_c(self.n_events, EV_STATUS, self._seq[0], self.instrument, self.venue, status,
                         update_id, self.last_venue_ts, local_ts)
        self.n_events += 1
        self.book.write_row_c(self.instrument, status, self._seq[0], update_id, self.last_venue_ts, local_ts)
        self.row_dirty = True

    cdef int ticker_check_c(self, int64_t bp, int64_t bq, int64_t ap, int64_t aq) noexcept nogil:
        """1 if the book's best levels equal the ticker's, else 0 (counted either way)."""
        self._cnt[C_TICKER_CHECKS] += 1
        if (self.book._bids.n and self.book._asks.n and self.book._bids.key[self.book._bids.n - 1] == bp and self.book._bids.qty[self.book._bids.n - 1] == bq
                and -self.book._asks.key[self.book._asks.n - 1] == ap and self.book._asks.qty[self.book._asks.n - 1] == aq):
            return 1
        self._cnt[C_TICKER_MISMATCHES] += 1
        return 0

    cdef int apply_c(self, int64_t local_ts, bint quiet) noexcept nogil:
        """Apply the diff held by the parser. quiet: no events (buffer drains). Returns n_events,
        or SLOW_RESYNC when a waiting ticker disagrees with the result."""
        cdef int flags = self.book.apply_c(self.parser._bpx, self.parser._bqty, self.parser.n_bids, self.parser._apx, self.parser._aqty, self.parser.n_asks)
        cdef int64_t u = self.parser.update_id
        cdef int64_t *t
        self.last_update_id = u
        self._cnt[C_APPLIED] += 1
        self.last_venue_ts = self.parser.event_time * 1000000
        self.last_local_ts = local_ts
        if quiet:
            self._pt_len = 0
            return 0
        if flags & F_BAD:
            self._cnt[C_CROSSED] += 1
            self.set_status_c(ST_STALE, local_ts, u)
        elif self.status != ST_LIVE:
            self.set_status_c(ST_LIVE, local_ts, u)
        if flags & F_TOP:
            self._seq[0] += 1
            self.book.emit_c(self.n_events, EV_TOP, self._seq[0], self.instrument, self.venue, self.status,
                             u, self.last_venue_ts, local_ts)
            self.n_events += 1
        self.book.write_row_c(self.instrument, self.status, self._seq[0], u, self.last_venue_ts, local_ts)
        self.row_dirty = True
        # tickers that waited for this u (older ones can no longer match anything)
        while self._pt_len:
            t = self._pt[self._pt_head]
            if t[0] > u:
                break
            self._pt_head = (self._pt_head + 1) % PENDING_TICKERS
            self._pt_len -= 1
            if t[0] == u and not self.ticker_check_c(t[1], t[2], t[3], t[4]):
                self.in_sync = False
                self._pt_len = 0
                self.set_status_c(ST_STALE, local_ts, u)
                return C_SLOW_RESYNC
        return self.n_events

    cdef void flush_c(self) noexcept nogil:
        """Publish events[:n_events] into the bound ring and the dirty row into the bound table."""
        cdef int i
        if self._bound_w:
            for i in range(self.n_events):
                if self._writer.publish_ptr(&self.book._events[i]):
                    self.published += 1
                else:
                    self.publish_refused += 1
        if self._bound_t and self.row_dirty:
            self._table.write_ptr(self._table_row, self.book._row)
            self.row_dirty = False
        self.n_events = 0

    cdef int on_frame_c(self, const uint8_t *buf, Py_ssize_t n, int64_t local_ts) noexcept nogil:
        """_frame, then (when outputs are bound) publish what it produced. On a SLOW_* code
        nothing is published: the state machine finishes the step and calls flush()."""
        cdef int r = self._frame(buf, n, local_ts)
        cdef int m
        if (self._bound_w or self._bound_t) and r >= 0 and (r > 0 or self.row_dirty):
            m = self.n_events
            self.flush_c()
            self.n_events = m
        return r

    cdef int _frame(self, const uint8_t *buf, Py_ssize_t n, int64_t local_ts) noexcept nogil:
        cdef int kind = self.parser.parse_c(buf, n)
        cdef int64_t u
        cdef Py_ssize_t slot
        self.n_events = 0
        if kind == K_DEPTH:
            if not self.in_sync:
                return C_SLOW_DEPTH
            if self.parser.prev_update_id != self.last_update_id:
                if self.parser.update_id <= self.last_update_id:
                    self._cnt[C_STALE_DIFFS] += 1
                    return 0
                self._cnt[C_GAPS] += 1
                return C_SLOW_DEPTH
            return self.apply_c(local_ts, False)
        if kind == K_TICKER:
            if not self.in_sync:
                return 0
            u = self.parser.update_id
            if u == self.last_update_id:
                if self.ticker_check_c(self.parser.bid_px, self.parser.bid_qty, self.parser.ask_px, self.parser.ask_qty):
                    return 0
                self.in_sync = False
                self._pt_len = 0
                self.set_status_c(ST_STALE, local_ts, u)
                return C_SLOW_RESYNC
            if u > self.last_update_id:
                if self._pt_len == PENDING_TICKERS:
                    self._pt_head = (self._pt_head + 1) % PENDING_TICKERS
                    self._pt_len -= 1
                    self._cnt[C_PENDING_OVERFLOW] += 1
                slot = (self._pt_head + self._pt_len) % PENDING_TICKERS
                self._pt[slot][0] = u
                self._pt[slot][1] = self.parser.bid_px
                self._pt[slot][2] = self.parser.bid_qty
                self._pt[slot][3] = self.parser.ask_px
                self._pt[slot][4] = self.parser.ask_qty
                self._pt_len += 1
            return 0
        if kind == K_TRADE or kind == K_AGG:
            self._cnt[C_TRADES] += 1
            self._seq[0] += 1
            self.parser.emit_trade_c(0, self._seq[0], self.instrument, self.venue, self.status, local_ts)
            self.n_events = 1
            return 1
        if kind == K_SNAPSHOT:
            return C_SLOW_SNAPSHOT
        return 0

    # ------------------------------------------------------------------ Python
    def on_frame(self, frame, int64_t local_ts):
        """Handle one frame: n >= 0 events written. A SLOW_* code goes to the slow handler
        (whose result is returned) or, without one, back to the caller."""
        cdef int r
        if not PyBytes_CheckExact(frame):
            if isinstance(frame, str):
                frame = (<str>frame).encode("utf-8", "surrogatepass")
            else:
                frame = bytes(frame)
        r = self.on_frame_c(<const uint8_t *>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), local_ts)
        if r >= 0 or self._slow is None:
            return r
        return self._slow(r, frame, local_ts)

    def set_slow_handler(self, handler):
        """``handler(code, frame, local_ts) -> n`` finishes a frame the C path cannot (None: off)."""
        self._slow = handler

    def apply_parsed(self, int64_t local_ts, bint quiet=False):
        """Apply the diff the parser holds (the state machine checked the sequence)."""
        if self.parser.kind != K_DEPTH:
            raise ValueError("the parser does not hold a depth diff")
        if not quiet:
            self.n_events = 0
        return self.apply_c(local_ts, quiet)

    def bind_output(self, BroadcastWriter writer=None, SeqlockTable table=None, uint64_t row=0):
        """Publish from C: events into ``writer`` (the md ring) and the book row into
        ``row`` of ``table`` (the book seqlock table). Keep both open while bound; call
        with no arguments to unbind."""
        if table is not None and row >= table.rows:
            raise IndexError(f"row {row} out of range")
        self._writer = writer
        self._table = table
        self._table_row = row
        self._bound_w = writer is not None
        self._bound_t = table is not None

    def flush(self):
        """Publish the pending events and dirty row (after a slow-path step); returns how many
        events were published. Without bound outputs this only reports n_events."""
        cdef int m = self.n_events
        if self._bound_w or self._bound_t:
            self.flush_c()
        self.n_events = m
        return m

    def begin(self):
        """Start a new output batch: the next event goes to slot 0."""
        self.n_events = 0

    def set_status(self, int status, int64_t local_ts, uint64_t update_id):
        """Append a STATUS event if ``status`` differs from the current one; returns n_events."""
        if self.n_events >= self.book._n_events:
            raise IndexError("events buffer full")
        self.set_status_c(status, local_ts, update_id)
        return self.n_events

    def emit_top(self, int64_t local_ts):
        """Append a BOOK_TOP event with the current top if it changed; returns n_events."""
        if self.n_events >= self.book._n_events:
            raise IndexError("events buffer full")
        if self.book._top_differs():
            self._seq[0] += 1
            self.book.emit_c(self.n_events, EV_TOP, self._seq[0], self.instrument, self.venue, self.status,
                             self.last_update_id, self.last_venue_ts, local_ts)
            self.n_events += 1
        return self.n_events

    def write_row(self, int64_t local_ts):
        """Refresh the bound BOOK_ROW from the book and mark it dirty."""
        self.book.write_row_c(self.instrument, self.status, self._seq[0], self.last_update_id,
                              self.last_venue_ts, local_ts)
        self.row_dirty = True

    def clear_pending(self):
        """Forget tickers waiting for a diff (on any loss of sync)."""
        self._pt_len = 0

    def count(self, Py_ssize_t index, int64_t by=1):
        """Add to counter ``index`` (an index into SYNC_COUNTERS), for the Python side."""
        if not (0 <= index < N_COUNTERS):
            raise IndexError(index)
        self._cnt[index] += by

    @property
    def pending_tickers(self):
        return self._pt_len
