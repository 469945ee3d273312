# cython: boundscheck=False, wraparound=False, cdivision=True
"""The matching core of the simulated venue (and, later, the backtester).

One instance per symbol. Everything is int64 fixed point: prices in ticks, quantities in
lots. The *outside* book is the displayed liquidity of the market being simulated (the
synthetic market or a replayed capture); own orders are the clients' orders. Model:

- An own order joins the queue BEHIND the displayed quantity at its price: ``ahead`` is
  the displayed quantity in front of it. Displayed quantity that disappears without a
  trade (a cancel) shrinks ``ahead`` to at most the new displayed quantity; quantity that
  is added goes behind.
- A public trade at the order's price first consumes ``ahead`` (and own orders with
  better time priority), then fills the order, partially if need be. A public trade
  through the price (a sell below an own bid) fills the order fully.
- A displayed level crossing an own order (an ask at or below an own bid) means the
  market moved through it: the order fills fully at its own price as maker.
- An incoming aggressive own order takes the displayed book (which is reduced locally,
  until the market's next update of that level) and own resting orders of any account,
  best price first; within a price, first in first out: the displayed quantity ahead of
  a resting own order, then that order, then displayed quantity that queued behind it.
- Post-only (GTX) orders that would take are refused without any change; IOC/FOK/market
  remainders expire; self-trade prevention follows the TAKER's mode.

Each mutating call first clears the event buffer, then records what happened (fills of
own orders, STP cancels of resting own orders) for the caller to drain. Rounding, fees,
positions and the wire protocol live in Python (mmshm.venues.sim).
"""
from libc.stdint cimport int64_t, int32_t, int8_t
from matching_defs cimport *
import numpy as np

BUY = M_BUY
SELL = M_SELL
GTC = TIF_GTC
IOC = TIF_IOC
FOK = TIF_FOK
GTX = TIF_GTX
STP_MODES = {"NONE": STP_NONE, "EXPIRE_TAKER": STP_EXPIRE_TAKER,
             "EXPIRE_MAKER": STP_EXPIRE_MAKER, "EXPIRE_BOTH": STP_EXPIRE_BOTH}
RESTING = R_RESTING
FILLED = R_FILLED
EXPIRED = R_EXPIRED
GTX_REJECT = R_GTX_REJECT
STP_EXPIRED = R_STP_EXPIRED
FULL = R_FULL
DUPLICATE = R_DUPLICATE
EV_FILL_KIND = EV_FILL
EV_STP_CANCEL_KIND = EV_STP_CANCEL


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef class MatchingCore:
    """Queue-position matching of own orders against a displayed book (see module doc)."""

    cdef readonly int capacity
    cdef readonly int max_levels
    # outside (displayed) book, best first
    cdef int64_t[::1] bpx
    cdef int64_t[::1] bqty
    cdef int64_t[::1] apx
    cdef int64_t[::1] aqty
    cdef readonly int n_bids
    cdef readonly int n_asks
    # own resting orders (unordered; priority by seq)
    cdef int64_t[::1] o_id
    cdef int64_t[::1] o_px
    cdef int64_t[::1] o_rem
    cdef int64_t[::1] o_ahead
    cdef int64_t[::1] o_acct
    cdef int64_t[::1] o_seq
    cdef int8_t[::1] o_side
    cdef int8_t[::1] o_stp
    cdef readonly int n_orders
    cdef int64_t next_seq
    cdef readonly int64_t next_match_id
    # events of the last mutating call
    cdef int64_t[::1] e_kind
    cdef int64_t[::1] e_id
    cdef int64_t[::1] e_px
    cdef int64_t[::1] e_qty
    cdef int64_t[::1] e_maker
    cdef int64_t[::1] e_counter
    cdef int64_t[::1] e_match
    cdef readonly int n_events
    cdef int ev_cap
    cdef readonly int64_t last_filled
    # scratch for level processing
    cdef int32_t[::1] scratch

    def __init__(self, int capacity=4096, int max_levels=4096):
        if capacity <= 0 or max_levels <= 0:
            raise ValueError("capacity and max_levels must be positive")
        self.capacity = capacity
        self.max_levels = max_levels
        self.bpx = np.zeros(max_levels, np.int64)
        self.bqty = np.zeros(max_levels, np.int64)
        self.apx = np.zeros(max_levels, np.int64)
        self.aqty = np.zeros(max_levels, np.int64)
        self.o_id = np.zeros(capacity, np.int64)
        self.o_px = np.zeros(capacity, np.int64)
        self.o_rem = np.zeros(capacity, np.int64)
        self.o_ahead = np.zeros(capacity, np.int64)
        self.o_acct = np.zeros(capacity, np.int64)
        self.o_seq = np.zeros(capacity, np.int64)
        self.o_side = np.zeros(capacity, np.int8)
        self.o_stp = np.zeros(capacity, np.int8)
        # one call emits at most: a fill per displayed level, two per own maker, one per own order
        self.ev_cap = 3 * capacity + max_levels + 16
        self.e_kind = np.zeros(self.ev_cap, np.int64)
        self.e_id = np.zeros(self.ev_cap, np.int64)
        self.e_px = np.zeros(self.ev_cap, np.int64)
        self.e_qty = np.zeros(self.ev_cap, np.int64)
        self.e_maker = np.zeros(self.ev_cap, np.int64)
        self.e_counter = np.zeros(self.ev_cap, np.int64)
        self.e_match = np.zeros(self.ev_cap, np.int64)
        self.scratch = np.zeros(capacity, np.int32)
        self.n_bids = 0
        self.n_asks = 0
        self.n_orders = 0
        self.n_events = 0
        self.next_seq = 1
        self.next_match_id = 1
        self.last_filled = 0

    # ------------------------------------------------------------------ internals

    cdef int _find(self, int64_t oid) noexcept nogil:
        cdef int i
        for i in range(self.n_orders):
            if self.o_id[i] == oid:
                return i
        return -1

    cdef void _remove_at(self, int i) noexcept nogil:
        cdef int last = self.n_orders - 1
        if i != last:
            self.o_id[i] = self.o_id[last]
            self.o_px[i] = self.o_px[last]
            self.o_rem[i] = self.o_rem[last]
            self.o_ahead[i] = self.o_ahead[last]
            self.o_acct[i] = self.o_acct[last]
            self.o_seq[i] = self.o_seq[last]
            self.o_side[i] = self.o_side[last]
            self.o_stp[i] = self.o_stp[last]
        self.n_orders = last

    cdef void _compact(self) noexcept nogil:
        cdef int i = self.n_orders - 1
        while i >= 0:
            if self.o_rem[i] <= 0:
                self._remove_at(i)
            i -= 1

    cdef void _emit(self, int64_t kind, int64_t oid, int64_t px, int64_t qty, int64_t maker,
                    int64_t counter, int64_t match) noexcept nogil:
        cdef int n = self.n_events
        if n >= self.ev_cap:  # cannot happen by construction (see ev_cap)
            return
        self.e_kind[n] = kind
        self.e_id[n] = oid
        self.e_px[n] = px
        self.e_qty[n] = qty
        self.e_maker[n] = maker
        self.e_counter[n] = counter
        self.e_match[n] = match
        self.n_events = n + 1

    cdef int _level_index(self, int side, int64_t px, bint *found) noexcept nogil:
        """Index of px in the side's best-first array, or where it would be inserted."""
        cdef int lo = 0, hi, mid
        cdef int64_t v
        cdef int64_t[::1] arr
        if side == M_BUY:
            arr = self.bpx
            hi = self.n_bids
        else:
            arr = self.apx
            hi = self.n_asks
        found[0] = False
        while lo < hi:
            mid = (lo + hi) >> 1
            v = arr[mid]
            if v == px:
                found[0] = True
                return mid
            # bids descending, asks ascending: is v better than px?
            if (side == M_BUY and v > px) or (side == M_SELL and v < px):
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef void _set_level(self, int side, int64_t px, int64_t qty) noexcept nogil:
        cdef bint found
        cdef int idx = self._level_index(side, px, &found)
        cdef int64_t[::1] p
        cdef int64_t[::1] q
        cdef int n, k
        if side == M_BUY:
            p = self.bpx
            q = self.bqty
            n = self.n_bids
        else:
            p = self.apx
            q = self.aqty
            n = self.n_asks
        if found:
            if qty > 0:
                q[idx] = qty
                return
            for k in range(idx, n - 1):
                p[k] = p[k + 1]
                q[k] = q[k + 1]
            n -= 1
        else:
            if qty <= 0 or idx >= self.max_levels:
                return
            if n == self.max_levels:
                n -= 1  # drop the worst level to make room
            k = n
            while k > idx:
                p[k] = p[k - 1]
                q[k] = q[k - 1]
                k -= 1
            p[idx] = px
            q[idx] = qty
            n += 1
        if side == M_BUY:
            self.n_bids = n
        else:
            self.n_asks = n

    cdef int64_t _outside_qty(self, int side, int64_t px) noexcept nogil:
        cdef bint found
        cdef int idx = self._level_index(side, px, &found)
        if not found:
            return 0
        return self.bqty[idx] if side == M_BUY else self.aqty[idx]

    cdef void _fill_own(self, int i, int64_t px, int64_t qty, int64_t maker, int64_t counter,
                        int64_t match) noexcept nogil:
        self._emit(EV_FILL, self.o_id[i], px, qty, maker, counter, match)
        self.o_rem[i] -= qty

    cdef void _cross_own(self) noexcept nogil:
        """Fill own orders the displayed book has moved through (full fill at own price)."""
        cdef int i
        cdef bint crossed
        for i in range(self.n_orders):
            if self.o_rem[i] <= 0:
                continue
            if self.o_side[i] == M_BUY:
                crossed = self.n_asks > 0 and self.apx[0] <= self.o_px[i]
            else:
                crossed = self.n_bids > 0 and self.bpx[0] >= self.o_px[i]
            if crossed:
                self._fill_own(i, self.o_px[i], self.o_rem[i], 1, 0, self.next_match_id)
                self.next_match_id += 1
        self._compact()

    cdef int _best_own(self, int side) noexcept nogil:
        """Index of the own resting order with the best price-time priority on a side, or -1."""
        cdef int i, best = -1
        for i in range(self.n_orders):
            if self.o_side[i] != side or self.o_rem[i] <= 0:
                continue
            if best < 0:
                best = i
            elif side == M_BUY and (self.o_px[i] > self.o_px[best] or
                                    (self.o_px[i] == self.o_px[best] and self.o_seq[i] < self.o_seq[best])):
                best = i
            elif side == M_SELL and (self.o_px[i] < self.o_px[best] or
                                     (self.o_px[i] == self.o_px[best] and self.o_seq[i] < self.o_seq[best])):
                best = i
        return best

    cdef int _level_orders(self, int side, int64_t px) noexcept nogil:
        """Own orders at (side, px) into scratch, in time priority; returns how many."""
        cdef int i, j, n = 0
        cdef int32_t t
        for i in range(self.n_orders):
            if self.o_side[i] == side and self.o_px[i] == px and self.o_rem[i] > 0:
                self.scratch[n] = i
                n += 1
        for i in range(1, n):  # insertion sort by seq: levels hold few own orders
            t = self.scratch[i]
            j = i - 1
            while j >= 0 and self.o_seq[self.scratch[j]] > self.o_seq[t]:
                self.scratch[j + 1] = self.scratch[j]
                j -= 1
            self.scratch[j + 1] = t
        return n

    cdef void _reduce_ahead(self, int side, int64_t px, int64_t qty) noexcept nogil:
        cdef int i
        for i in range(self.n_orders):
            if self.o_side[i] == side and self.o_px[i] == px:
                self.o_ahead[i] = _max(0, self.o_ahead[i] - qty)

    cdef int64_t _available(self, int side, int64_t px, bint market, int64_t acct, int stp) noexcept nogil:
        """Quantity an order taking `side` up to px could fill (for FOK)."""
        cdef int64_t total = 0
        cdef int i
        cdef int n = self.n_bids if side == M_BUY else self.n_asks
        for i in range(n):
            if side == M_SELL:
                if not market and self.apx[i] > px:
                    break
                total += self.aqty[i]
            else:
                if not market and self.bpx[i] < px:
                    break
                total += self.bqty[i]
        for i in range(self.n_orders):
            if self.o_side[i] != side or self.o_rem[i] <= 0:
                continue
            if stp != STP_NONE and self.o_acct[i] == acct:
                continue
            if market or (side == M_SELL and self.o_px[i] <= px) or (side == M_BUY and self.o_px[i] >= px):
                total += self.o_rem[i]
        return total

    # ------------------------------------------------------------------ C API

    cdef void c_level(self, int side, int64_t px, int64_t qty) noexcept nogil:
        cdef int i
        self.n_events = 0
        self._set_level(side, px, qty)
        for i in range(self.n_orders):
            if self.o_side[i] == side and self.o_px[i] == px and self.o_ahead[i] > qty:
                self.o_ahead[i] = _max(qty, 0)
        self._cross_own()

    cdef void c_trade(self, int64_t px, int64_t qty, int aggressor) noexcept nogil:
        cdef int side = M_BUY if aggressor == M_SELL else M_SELL
        cdef int i, k, n
        cdef int64_t own_before = 0, start, f, rem
        self.n_events = 0
        if qty <= 0:
            return
        # through the price: the resting own order was better than the trade price
        for i in range(self.n_orders):
            if self.o_side[i] != side or self.o_rem[i] <= 0:
                continue
            if (side == M_BUY and self.o_px[i] > px) or (side == M_SELL and self.o_px[i] < px):
                self._fill_own(i, self.o_px[i], self.o_rem[i], 1, 0, self.next_match_id)
                self.next_match_id += 1
        # at the price: the trade eats the queue ahead, then own orders in time priority
        n = self._level_orders(side, px)
        for k in range(n):
            i = self.scratch[k]
            rem = self.o_rem[i]
            start = self.o_ahead[i] + own_before
            own_before += rem
            f = _min(_max(qty - start, 0), rem)
            self.o_ahead[i] = _max(0, self.o_ahead[i] - qty)
            if f > 0:
                self._fill_own(i, px, f, 1, 0, self.next_match_id)
                self.next_match_id += 1
        self._compact()

    cdef int c_submit(self, int64_t oid, int side, int64_t px, int64_t qty, int64_t acct,
                      int tif, int stp, bint market) noexcept nogil:
        cdef int opp = M_SELL if side == M_BUY else M_BUY
        cdef int64_t rem = qty, f, p, m
        cdef int j
        cdef bint has_out, has_own, use_out, rests, same_px
        self.n_events = 0
        self.last_filled = 0
        if self._find(oid) >= 0:
            return R_DUPLICATE
        rests = (not market) and (tif == TIF_GTC or tif == TIF_GTX)
        if rests and self.n_orders >= self.capacity:
            return R_FULL
        if tif == TIF_GTX and not market:
            if side == M_BUY:
                if self.n_asks > 0 and self.apx[0] <= px:
                    return R_GTX_REJECT
            elif self.n_bids > 0 and self.bpx[0] >= px:
                return R_GTX_REJECT
            j = self._best_own(opp)
            if j >= 0 and ((side == M_BUY and self.o_px[j] <= px) or (side == M_SELL and self.o_px[j] >= px)):
                return R_GTX_REJECT
        if tif == TIF_FOK and self._available(opp, px, market, acct, stp) < qty:
            return R_EXPIRED
        while rem > 0:
            if opp == M_SELL:
                has_out = self.n_asks > 0 and (market or self.apx[0] <= px)
            else:
                has_out = self.n_bids > 0 and (market or self.bpx[0] >= px)
            j = self._best_own(opp)
            has_own = j >= 0 and (market or (opp == M_SELL and self.o_px[j] <= px) or
                                  (opp == M_BUY and self.o_px[j] >= px))
            if not has_out and not has_own:
                break
            same_px = False
            if has_out and has_own:
                if opp == M_SELL:
                    use_out = self.apx[0] < self.o_px[j]
                    same_px = self.apx[0] == self.o_px[j]
                else:
                    use_out = self.bpx[0] > self.o_px[j]
                    same_px = self.bpx[0] == self.o_px[j]
                # at one price the queue is FIFO: displayed quantity ahead of the own
                # order first, then the own order, then what queued behind it
                if same_px and self.o_ahead[j] > 0:
                    use_out = True
            else:
                use_out = has_out
            if use_out:
                if opp == M_SELL:
                    p = self.apx[0]
                    f = _min(rem, self.aqty[0])
                    if same_px:
                        f = _min(f, self.o_ahead[j])
                    self._set_level(M_SELL, p, self.aqty[0] - f)
                else:
                    p = self.bpx[0]
                    f = _min(rem, self.bqty[0])
                    if same_px:
                        f = _min(f, self.o_ahead[j])
                    self._set_level(M_BUY, p, self.bqty[0] - f)
                self._reduce_ahead(opp, p, f)
                self._emit(EV_FILL, oid, p, f, 0, 0, self.next_match_id)
                self.next_match_id += 1
                rem -= f
                self.last_filled += f
                continue
            if stp != STP_NONE and self.o_acct[j] == acct:
                if stp == STP_EXPIRE_TAKER:
                    self._compact()
                    return R_STP_EXPIRED
                self._emit(EV_STP_CANCEL, self.o_id[j], self.o_px[j], self.o_rem[j], 1, oid, 0)
                self.o_rem[j] = 0
                self._compact()
                if stp == STP_EXPIRE_BOTH:
                    return R_STP_EXPIRED
                continue
            p = self.o_px[j]
            f = _min(rem, self.o_rem[j])
            m = self.next_match_id
            self.next_match_id += 1
            self._fill_own(j, p, f, 1, oid, m)
            self._emit(EV_FILL, oid, p, f, 0, self.o_id[j], m)
            rem -= f
            self.last_filled += f
            if self.o_rem[j] <= 0:
                self._compact()
        if rem == 0:
            return R_FILLED
        if not rests:
            return R_EXPIRED
        j = self.n_orders
        self.o_id[j] = oid
        self.o_px[j] = px
        self.o_rem[j] = rem
        self.o_ahead[j] = self._outside_qty(side, px)
        self.o_acct[j] = acct
        self.o_seq[j] = self.next_seq
        self.next_seq += 1
        self.o_side[j] = side
        self.o_stp[j] = stp
        self.n_orders = j + 1
        return R_RESTING

    # ------------------------------------------------------------------ Python API

    def set_level(self, int side, int64_t px, int64_t qty) -> int:
        """Displayed quantity at (side, px) is now qty (0 removes); returns events recorded."""
        if side != M_BUY and side != M_SELL:
            raise ValueError(f"bad side {side}")
        self.c_level(side, px, qty)
        return self.n_events

    def clear_side(self, int side) -> None:
        """Forget the displayed side (before applying a full snapshot)."""
        if side == M_BUY:
            self.n_bids = 0
        elif side == M_SELL:
            self.n_asks = 0
        else:
            raise ValueError(f"bad side {side}")

    def trade(self, int64_t px, int64_t qty, int aggressor) -> int:
        """A public trade of qty at px by `aggressor` (BUY lifts asks); returns events recorded."""
        if aggressor != M_BUY and aggressor != M_SELL:
            raise ValueError(f"bad aggressor side {aggressor}")
        self.c_trade(px, qty, aggressor)
        return self.n_events

    def submit(self, int64_t oid, int side, int64_t px, int64_t qty, int64_t acct,
               int tif=TIF_GTC, int stp=STP_NONE, bint market=False) -> int:
        """Enter an own order; returns an R_* outcome (RESTING, FILLED, ...). Events recorded."""
        if side != M_BUY and side != M_SELL:
            raise ValueError(f"bad side {side}")
        if qty <= 0 or (not market and px <= 0):
            raise ValueError("qty and price must be positive")
        if tif < TIF_GTC or tif > TIF_GTX or stp < STP_NONE or stp > STP_EXPIRE_BOTH:
            raise ValueError("bad time in force or STP mode")
        return self.c_submit(oid, side, px, qty, acct, tif, stp, market)

    def cancel(self, int64_t oid) -> int:
        """Remove a resting own order; returns its remaining qty, or -1 if not resting."""
        cdef int i = self._find(oid)
        cdef int64_t rem
        self.n_events = 0
        if i < 0:
            return -1
        rem = self.o_rem[i]
        self._remove_at(i)
        return rem

    def order(self, int64_t oid):
        """(side, px, remaining, ahead, account) of a resting own order, or None."""
        cdef int i = self._find(oid)
        if i < 0:
            return None
        return (int(self.o_side[i]), self.o_px[i], self.o_rem[i], self.o_ahead[i], self.o_acct[i])

    def order_ids(self) -> list:
        """Ids of resting own orders in time priority."""
        idx = sorted(range(self.n_orders), key=lambda i: self.o_seq[i])
        return [self.o_id[i] for i in idx]

    def events(self) -> list:
        """Events of the last mutating call: (kind, order id, px, qty, maker, counter id, match id)."""
        return [(self.e_kind[i], self.e_id[i], self.e_px[i], self.e_qty[i], self.e_maker[i],
                 self.e_counter[i], self.e_match[i]) for i in range(self.n_events)]

    def best(self, int side):
        """(px, qty) of the best displayed level on a side, or None."""
        if side == M_BUY:
            return (self.bpx[0], self.bqty[0]) if self.n_bids else None
        return (self.apx[0], self.aqty[0]) if self.n_asks else None

    def levels(self, int side, int limit=1000) -> list:
        """Displayed levels of a side, best first: [(px, qty), ...]."""
        n = min(limit, self.n_bids if side == M_BUY else self.n_asks)
        if side == M_BUY:
            return [(self.bpx[i], self.bqty[i]) for i in range(n)]
        return [(self.apx[i], self.aqty[i]) for i in range(n)]

    def level_qty(self, int side, int64_t px) -> int:
        """Displayed quantity at (side, px)."""
        return self._outside_qty(side, px)
