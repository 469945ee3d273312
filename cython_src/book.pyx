# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""L2 order book of one instrument: int64 ticks/lots, bounded memory, hot calls nogil.

Each side is a sorted array of (key, qty) with the BEST level LAST: bids keyed by price,
asks by minus price, so both sides are ascending and share one implementation, and the
levels that change most (near the top) sit at the end, where an insert or a removal
moves few bytes. A diff is applied per side as a gap buffer (``side_apply``): a venue's
diff lists levels best to worst, so the levels between its deepest insert/removal and the
top move about twice per diff instead of once per insert/removal. A side keeps at most ``max_levels`` levels: a new level worse than all
kept levels of a full side is refused, a better one evicts the worst; both are counted
(``levels_dropped``). Levels beyond the bound are unknown, so a bounded book is exact only
in its kept range: keep the bound at least as deep as the venue's snapshot.

Quantities are absolute (a diff level sets the level, qty 0 removes it), as Binance sends.
"""
from libc.stdint cimport int64_t, uint64_t, uint8_t, uint16_t
from libc.string cimport memmove, memset, memcpy
from libc.math cimport NAN
from atomics cimport mm_monotonic_ns
from records cimport MarketEvent, BookRow

cdef enum:
    MD_BOOK_DEPTH = 20   # records.BOOK_DEPTH (checked in bind_row)

import numpy as np

BID = 1          # == records.Side.BUY: the side that buys
ASK = 2          # == records.Side.SELL
# flags returned by apply_*: the top differs from the last emitted one; locked; crossed
TOP_CHANGED = 1
LOCKED = 2
CROSSED = 4

cdef enum:
    C_BID = 1
    C_ASK = 2
    C_TOP_CHANGED = 1
    C_LOCKED = 2
    C_CROSSED = 4


cdef inline Py_ssize_t lower_bound(const int64_t *a, Py_ssize_t n, int64_t k) noexcept nogil:
    """First index i with a[i] >= k (n if none). Starts from the top end: most updates land there."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    if n > 0 and a[n - 1] < k:
        return n
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline void move_down(int64_t *dst, const int64_t *src, Py_ssize_t c) noexcept nogil:
    """memmove of c int64 (regions may overlap); skips the call for the common tiny moves."""
    if c == 1:
        dst[0] = src[0]
    elif c > 1:
        memmove(dst, src, c * sizeof(int64_t))


cdef Py_ssize_t side_apply(BookSide *s, const int64_t *px, const int64_t *qty, Py_ssize_t m,
                           bint neg, int64_t *dropped, int64_t *missing) noexcept nogil:
    """Set m levels of one side in order (key = -px for asks); the bound rule applied per level.

    Exactly the result of setting the levels one by one into the sorted array, but the
    side is held as a gap buffer for the batch: a lower segment L (the worst levels) at
    ``key``, an upper segment U (the best levels) at the END of the storage, and the free
    slots between them. An insert or a removal moves the gap to its position, so moving
    levels costs the distance between consecutive edits, not the distance to the top:
    a diff sorted best to worst (as Binance sends them, and as snapshots are) moves each
    level between its deepest edit and the top about twice (out into U, back when the gap
    is closed at the end) instead of once per edit. Quantity updates of held levels move
    nothing. Returns the number of levels held.
    """
    cdef int64_t *lk = s.key
    cdef int64_t *lq = s.qty
    cdef int64_t *kend = s.kbase + 2 * s.cap
    cdef int64_t *qend = s.qbase + 2 * s.cap
    cdef Py_ssize_t g = s.n          # |L|: logical levels 0..g-1 are lk[0..g)
    cdef Py_ssize_t u = 0            # |U|: logical levels g..g+u-1 are (kend - u)[0..u)
    cdef Py_ssize_t n = s.n, cap = s.cap, i, c, j
    cdef int64_t k, q
    for j in range(m):
        k = -px[j] if neg else px[j]
        q = qty[j]
        if g and lk[g - 1] >= k:
            i = lower_bound(lk, g, k)            # i < g
            if lk[i] == k:
                if q:
                    lq[i] = q
                    continue
                c = g - i - 1                    # removal: L[i+1..g) -> front of U, drop L[i]
                u += c
                move_down(kend - u, lk + i + 1, c)
                move_down(qend - u, lq + i + 1, c)
                g = i
                n -= 1
                continue
        else:
            i = lower_bound(kend - u, u, k)      # index within U
            if i < u and (kend - u)[i] == k:
                if q:
                    (qend - u)[i] = q
                    continue
                move_down(lk + g, kend - u, i)   # removal: U[0..i) -> end of L, drop U[i]
                move_down(lq + g, qend - u, i)
                g += i
                u -= i + 1
                n -= 1
                continue
            i += g
        if q == 0:
            missing[0] += 1
            continue
        if n == cap:
            dropped[0] += 1
            if i == 0:
                continue                         # worse than every kept level
            if g:                                # evict the worst
                lk += 1
                lq += 1
                g -= 1
            else:
                u -= 1
            i -= 1
            n -= 1
        if i < g:                                # move the gap to logical position i
            c = g - i
            u += c
            move_down(kend - u, lk + i, c)
            move_down(qend - u, lq + i, c)
            g = i
        elif i > g:
            c = i - g
            move_down(lk + g, kend - u, c)
            move_down(lq + g, qend - u, c)
            u -= c
            g = i
        if lk + g == kend - u:                   # no free slot: L back to the storage start
            memmove(s.kbase, lk, g * sizeof(int64_t))
            memmove(s.qbase, lq, g * sizeof(int64_t))
            lk = s.kbase
            lq = s.qbase
        lk[g] = k
        lq[g] = q
        g += 1
        n += 1
    if u:                                        # close the gap: U right after L
        memmove(lk + g, kend - u, u * sizeof(int64_t))
        memmove(lq + g, qend - u, u * sizeof(int64_t))
    s.key = lk
    s.qty = lq
    s.n = n
    return n


cdef class L2Book:
    """An L2 book with at most ``max_levels`` levels per side (prices in ticks, qty in lots).

    Python methods are thin wrappers of the ``*_c`` nogil methods (declared in book.pxd
    for other Cython modules). Empty-side queries return 0 prices/quantities (and None or
    NaN from the analytics), never raise.
    """

    def __init__(self, Py_ssize_t max_levels=1000):
        if max_levels <= 0:
            raise ValueError("max_levels must be positive")
        self.max_levels = max_levels
        arrays = [np.zeros(2 * max_levels, np.int64) for _ in range(4)]
        self._arrays = arrays
        cdef int64_t[::1] mv
        mv = arrays[0]; self._bids.kbase = &mv[0]
        mv = arrays[1]; self._bids.qbase = &mv[0]
        mv = arrays[2]; self._asks.kbase = &mv[0]
        mv = arrays[3]; self._asks.qbase = &mv[0]
        self._bids.cap = max_levels
        self._asks.cap = max_levels
        self.clear_c()
        self._events = NULL
        self._row = NULL
        self._in_cap = 0

    # ------------------------------------------------------------------ C API
    cdef void clear_c(self) noexcept nogil:
        self._bids.n = 0
        self._asks.n = 0
        self._bids.key = self._bids.kbase
        self._bids.qty = self._bids.qbase
        self._asks.key = self._asks.kbase
        self._asks.qty = self._asks.qbase
        self._pub[0] = self._pub[1] = self._pub[2] = self._pub[3] = -1

    cdef int set_level_c(self, int side, int64_t px, int64_t qty) noexcept nogil:
        cdef int64_t dropped = self.levels_dropped, missing = self.missing_removes
        side_apply(&self._bids if side == C_BID else &self._asks, &px, &qty, 1, side != C_BID,
                   &self.levels_dropped, &self.missing_removes)
        if self.levels_dropped != dropped:
            return 1
        if self.missing_removes != missing:
            return 2
        return 0

    cdef int apply_c(self, const int64_t *bpx, const int64_t *bqty, Py_ssize_t nb,
                     const int64_t *apx, const int64_t *aqty, Py_ssize_t na) noexcept nogil:
        """Apply levels in order; returns TOP_CHANGED | LOCKED | CROSSED flags."""
        cdef int flags
        if nb:
            side_apply(&self._bids, bpx, bqty, nb, False, &self.levels_dropped, &self.missing_removes)
        if na:
            side_apply(&self._asks, apx, aqty, na, True, &self.levels_dropped, &self.missing_removes)
        flags = self.state_c()
        flags = C_CROSSED if flags == 2 else (C_LOCKED if flags == 1 else 0)
        if self._top_differs():
            flags |= C_TOP_CHANGED
        return flags

    cdef bint _top_differs(self) noexcept nogil:
        cdef int64_t bp = 0, bq = 0, ap = 0, aq = 0
        if self._bids.n:
            bp = self._bids.key[self._bids.n - 1]; bq = self._bids.qty[self._bids.n - 1]
        if self._asks.n:
            ap = -self._asks.key[self._asks.n - 1]; aq = self._asks.qty[self._asks.n - 1]
        return bp != self._pub[0] or bq != self._pub[1] or ap != self._pub[2] or aq != self._pub[3]

    cdef int state_c(self) noexcept nogil:
        """0 normal (or a side empty), 1 locked (bid == ask), 2 crossed (bid > ask)."""
        cdef int64_t bp, ap
        if self._bids.n == 0 or self._asks.n == 0:
            return 0
        bp = self._bids.key[self._bids.n - 1]
        ap = -self._asks.key[self._asks.n - 1]
        if bp > ap:
            return 2
        if bp == ap:
            return 1
        return 0

    cdef Py_ssize_t top_c(self, int side, int64_t *px, int64_t *qty, Py_ssize_t n) noexcept nogil:
        """Copy up to n best levels of a side, best first; returns how many."""
        cdef BookSide *s = &self._bids if side == C_BID else &self._asks
        cdef Py_ssize_t i, m = n if n < s.n else s.n
        cdef int64_t sign = 1 if side == C_BID else -1
        for i in range(m):
            px[i] = sign * s.key[s.n - 1 - i]
            qty[i] = s.qty[s.n - 1 - i]
        return m

    cdef double vwap_c(self, int side, int64_t qty) noexcept nogil:
        """Average price in ticks to BUY (walks asks) or SELL (walks bids) `qty` lots; NaN if
        the book is not deep enough or qty <= 0."""
        cdef BookSide *s = &self._asks if side == C_BID else &self._bids
        cdef int64_t sign = -1 if side == C_BID else 1
        cdef int64_t left = qty, take
        cdef double notional = 0.0
        cdef Py_ssize_t i = s.n - 1
        if qty <= 0:
            return NAN
        while left > 0 and i >= 0:
            take = s.qty[i] if s.qty[i] < left else left
            notional += <double>(sign * s.key[i]) * <double>take
            left -= take
            i -= 1
        if left > 0:
            return NAN
        return notional / <double>qty

    cdef double imbalance_c(self, Py_ssize_t levels) noexcept nogil:
        """(bid qty - ask qty) / (bid qty + ask qty) over the top `levels` of each side."""
        cdef double b = 0.0, a = 0.0
        cdef Py_ssize_t i
        for i in range(levels if levels < self._bids.n else self._bids.n):
            b += self._bids.qty[self._bids.n - 1 - i]
        for i in range(levels if levels < self._asks.n else self._asks.n):
            a += self._asks.qty[self._asks.n - 1 - i]
        if a + b == 0.0:
            return NAN
        return (b - a) / (b + a)

    cdef double microprice_c(self) noexcept nogil:
        """Size-weighted mid in ticks: (bid*ask_qty + ask*bid_qty) / (bid_qty + ask_qty)."""
        cdef double bp, bq, ap, aq
        if self._bids.n == 0 or self._asks.n == 0:
            return NAN
        bp = self._bids.key[self._bids.n - 1]; bq = self._bids.qty[self._bids.n - 1]
        ap = -self._asks.key[self._asks.n - 1]; aq = self._asks.qty[self._asks.n - 1]
        return (bp * aq + ap * bq) / (bq + aq)

    cdef void emit_c(self, Py_ssize_t slot, int kind, uint64_t md_seq, int instrument, int venue, int status,
                     uint64_t update_id, int64_t venue_ts, int64_t local_ts) noexcept nogil:
        """Write a MARKET_EVENT (BOOK_TOP or STATUS) carrying the current top into the bound
        buffer and remember that top as the last emitted one."""
        cdef MarketEvent *ev = &self._events[slot]
        memset(ev, 0, sizeof(MarketEvent))
        ev.md_seq = md_seq
        ev.kind = <uint8_t>kind
        ev.instrument = <uint16_t>instrument
        ev.status = <uint16_t>status
        ev.venue = <uint16_t>venue
        ev.venue_ts = venue_ts
        ev.local_ts = local_ts
        ev.update_id = update_id
        if self._bids.n:
            ev.bid_px = self._bids.key[self._bids.n - 1]; ev.bid_qty = self._bids.qty[self._bids.n - 1]
        if self._asks.n:
            ev.ask_px = -self._asks.key[self._asks.n - 1]; ev.ask_qty = self._asks.qty[self._asks.n - 1]
        if kind == 1:
            self._pub[0] = ev.bid_px; self._pub[1] = ev.bid_qty
            self._pub[2] = ev.ask_px; self._pub[3] = ev.ask_qty
        ev.publish_mono = mm_monotonic_ns()

    cdef void write_row_c(self, int instrument, int status, uint64_t md_seq, uint64_t update_id,
                          int64_t venue_ts, int64_t local_ts) noexcept nogil:
        """Fill the bound BOOK_ROW with the top BOOK_DEPTH levels (version left alone)."""
        cdef BookRow *r = self._row
        r.instrument = <uint16_t>instrument
        r.status = <uint16_t>status
        r.md_seq = md_seq
        r.update_id = update_id
        r.venue_ts = venue_ts
        r.local_ts = local_ts
        memset(r.bid_px, 0, 4 * MD_BOOK_DEPTH * sizeof(int64_t))
        r.n_bids = <uint16_t>self.top_c(C_BID, r.bid_px, r.bid_qty, MD_BOOK_DEPTH)
        r.n_asks = <uint16_t>self.top_c(C_ASK, r.ask_px, r.ask_qty, MD_BOOK_DEPTH)
        r.publish_mono = mm_monotonic_ns()

    # ------------------------------------------------------------------ Python API
    def clear(self):
        """Remove every level (the book then reports no top)."""
        self.clear_c()

    def set_level(self, int side, int64_t px, int64_t qty):
        """Set one level (side BID/ASK, qty 0 removes). Returns 0, 1 (side full) or 2 (absent)."""
        if side != C_BID and side != C_ASK:
            raise ValueError("side must be BID (1) or ASK (2)")
        if px <= 0 or qty < 0:
            raise ValueError("price must be > 0 and qty >= 0")
        return self.set_level_c(side, px, qty)

    def apply_diff(self, bids_px, bids_qty, asks_px, asks_qty):
        """Apply diff levels given as int64 arrays; returns TOP_CHANGED|LOCKED|CROSSED flags."""
        cdef const int64_t[::1] bp = np.ascontiguousarray(bids_px, np.int64)
        cdef const int64_t[::1] bq = np.ascontiguousarray(bids_qty, np.int64)
        cdef const int64_t[::1] ap = np.ascontiguousarray(asks_px, np.int64)
        cdef const int64_t[::1] aq = np.ascontiguousarray(asks_qty, np.int64)
        if bp.shape[0] != bq.shape[0] or ap.shape[0] != aq.shape[0]:
            raise ValueError("price and quantity arrays differ in length")
        cdef int64_t dummy = 0
        cdef const int64_t *pbp = &bp[0] if bp.shape[0] else &dummy
        cdef const int64_t *pbq = &bq[0] if bq.shape[0] else &dummy
        cdef const int64_t *pap = &ap[0] if ap.shape[0] else &dummy
        cdef const int64_t *paq = &aq[0] if aq.shape[0] else &dummy
        return self.apply_c(pbp, pbq, bp.shape[0], pap, paq, ap.shape[0])

    def load_snapshot(self, bids_px, bids_qty, asks_px, asks_qty):
        """Replace the whole book by a snapshot (qty-0 levels ignored); returns flags."""
        self.clear_c()
        return self.apply_diff(bids_px, bids_qty, asks_px, asks_qty)

    def bind_input(self, bids_px, bids_qty, asks_px, asks_qty):
        """Remember four int64 arrays (e.g. a parser's level buffers) for apply_bound/load_bound,
        so the hot path passes two counts instead of four arrays."""
        arrs = [np.asarray(a) for a in (bids_px, bids_qty, asks_px, asks_qty)]
        n = len(arrs[0])
        for a in arrs:
            if a.dtype != np.int64 or a.ndim != 1 or not a.flags.c_contiguous or len(a) != n or n == 0:
                raise TypeError("bind_input needs four equal-length C-contiguous int64 arrays")
        cdef const int64_t[::1] mv
        for i in range(4):
            mv = arrs[i]
            self._in[i] = &mv[0]
        self._in_cap = n
        self._in_ref = arrs

    def apply_bound(self, Py_ssize_t n_bids, Py_ssize_t n_asks):
        """Apply the first n_bids/n_asks levels of the bound input; returns flags."""
        if not (0 <= n_bids <= self._in_cap and 0 <= n_asks <= self._in_cap):
            raise IndexError("level count exceeds the bound input")
        return self.apply_c(self._in[0], self._in[1], n_bids, self._in[2], self._in[3], n_asks)

    def load_bound(self, Py_ssize_t n_bids, Py_ssize_t n_asks):
        """Replace the book by the first n_bids/n_asks levels of the bound input; returns flags."""
        if not (0 <= n_bids <= self._in_cap and 0 <= n_asks <= self._in_cap):
            raise IndexError("level count exceeds the bound input")
        self.clear_c()
        return self.apply_c(self._in[0], self._in[1], n_bids, self._in[2], self._in[3], n_asks)

    @property
    def n_bids(self):
        return self._bids.n

    @property
    def n_asks(self):
        return self._asks.n

    @property
    def best_bid_px(self):
        return self._bids.key[self._bids.n - 1] if self._bids.n else 0

    @property
    def best_bid_qty(self):
        return self._bids.qty[self._bids.n - 1] if self._bids.n else 0

    @property
    def best_ask_px(self):
        return -self._asks.key[self._asks.n - 1] if self._asks.n else 0

    @property
    def best_ask_qty(self):
        return self._asks.qty[self._asks.n - 1] if self._asks.n else 0

    def best(self):
        """(bid px, bid qty, ask px, ask qty); zeros for an empty side."""
        return (self.best_bid_px, self.best_bid_qty, self.best_ask_px, self.best_ask_qty)

    def side_levels(self, int side, Py_ssize_t n=-1):
        """(prices, quantities) of a side as new int64 arrays, best first (all if n < 0)."""
        cdef Py_ssize_t m = self._bids.n if side == C_BID else self._asks.n
        if n >= 0 and n < m:
            m = n
        px = np.zeros(m, np.int64)
        qty = np.zeros(m, np.int64)
        cdef int64_t[::1] p = px, q = qty
        if m:
            self.top_c(side, &p[0], &q[0], m)
        return px, qty

    def top_into(self, int64_t[::1] bid_px, int64_t[::1] bid_qty, int64_t[::1] ask_px, int64_t[::1] ask_qty):
        """Copy the best levels into caller buffers (as many as fit); returns (n_bids, n_asks)."""
        cdef Py_ssize_t nb = min(bid_px.shape[0], bid_qty.shape[0])
        cdef Py_ssize_t na = min(ask_px.shape[0], ask_qty.shape[0])
        cdef Py_ssize_t rb = 0, ra = 0
        with nogil:
            if nb:
                rb = self.top_c(C_BID, &bid_px[0], &bid_qty[0], nb)
            if na:
                ra = self.top_c(C_ASK, &ask_px[0], &ask_qty[0], na)
        return rb, ra

    def vwap(self, int side, int64_t qty):
        """Average price (ticks, float) to BUY (side BID: walks asks) or SELL qty lots; NaN if too thin."""
        return self.vwap_c(side, qty)

    def imbalance(self, Py_ssize_t levels=1):
        """(bid qty - ask qty)/(sum) over the top `levels`; NaN for an empty book."""
        return self.imbalance_c(levels)

    def microprice(self):
        """Size-weighted mid in ticks (float); NaN if a side is empty."""
        return self.microprice_c()

    def spread_ticks(self):
        """Best ask - best bid in ticks (<= 0 when locked/crossed); None if a side is empty."""
        if self._bids.n == 0 or self._asks.n == 0:
            return None
        return -self._asks.key[self._asks.n - 1] - self._bids.key[self._bids.n - 1]

    def state(self):
        """0 normal (or a side empty), 1 locked, 2 crossed. Locked/crossed books are stale."""
        return self.state_c()

    def top_changed(self):
        """Whether the top differs from the one last written by emit_top."""
        return self._top_differs()

    def bind_events(self, events):
        """Write events into ``events`` (1-D C-contiguous MARKET_EVENT array) from now on."""
        from mmshm.records import MARKET_EVENT
        if events.dtype != MARKET_EVENT or events.ndim != 1 or not events.flags.c_contiguous or len(events) == 0:
            raise TypeError("events must be a non-empty 1-D C-contiguous MARKET_EVENT array")
        if events.dtype.itemsize != sizeof(MarketEvent):
            raise TypeError("MARKET_EVENT layout differs from records.pxd")
        cdef uint8_t[::1] raw = events.view(np.uint8)
        self._events = <MarketEvent *>&raw[0]
        self._n_events = len(events)
        self._events_ref = events

    def emit(self, Py_ssize_t slot, int kind, uint64_t md_seq, int instrument, int venue, int status,
             uint64_t update_id, int64_t venue_ts, int64_t local_ts):
        """Fill ``events[slot]`` (kind 1 BOOK_TOP or 3 STATUS) with the current top and stamps."""
        if self._events == NULL or not (0 <= slot < self._n_events):
            raise IndexError("no bound events buffer or slot out of range")
        if kind != 1 and kind != 3:
            raise ValueError("the book emits BOOK_TOP (1) or STATUS (3) events")
        self.emit_c(slot, kind, md_seq, instrument, venue, status, update_id, venue_ts, local_ts)

    def bind_row(self, row):
        """Write the top levels into ``row`` (a 1-element BOOK_ROW array) from now on."""
        from mmshm.records import BOOK_DEPTH, BOOK_ROW
        if BOOK_DEPTH != MD_BOOK_DEPTH:
            raise TypeError("records.BOOK_DEPTH differs from book.pyx")
        if row.dtype != BOOK_ROW or row.ndim != 1 or len(row) != 1 or not row.flags.c_contiguous:
            raise TypeError("row must be a 1-element C-contiguous BOOK_ROW array")
        if row.dtype.itemsize != sizeof(BookRow):
            raise TypeError("BOOK_ROW layout differs from records.pxd")
        cdef uint8_t[::1] raw = row.view(np.uint8)
        self._row = <BookRow *>&raw[0]
        self._row_ref = row

    def write_row(self, int instrument, int status, uint64_t md_seq, uint64_t update_id,
                  int64_t venue_ts, int64_t local_ts):
        """Fill the bound BOOK_ROW with the top BOOK_DEPTH levels and the stamps."""
        if self._row == NULL:
            raise RuntimeError("no bound row")
        self.write_row_c(instrument, status, md_seq, update_id, venue_ts, local_ts)
