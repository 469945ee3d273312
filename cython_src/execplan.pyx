# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The executor's plan in C: one TARGET_ROW against our live orders -> venue actions.

Why native: the plan runs for every target change between "target seen" and "request on
the socket" (the issue's 30 us budget); in Python it took ~28 us in a tight loop and
more in situ (about 80 interpreted calls: level objects, sorts, tolerance checks, the
limit passes). Here the live orders of the instrument are copied once into C structs
(a few attribute reads each), diff, risk mode and limits run in C over them, and only
the resulting actions become Python objects.

Semantics are exactly those of :func:`mmshm.execution.diff.diff` followed by the risk
mode filter and ``ExecutionSession._apply_limits_py`` (the Python statement of the same
plan, kept as the test oracle and the benchmark's peer): the property tests hold the two
to identical actions, in the same order. Read the docstrings there for the why of each
rule (tolerances, amend pairing, limit clipping, worst-price-first dropping).
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from libc.stdint cimport int64_t, uint8_t

from records cimport ControlRow, TargetRow

from mmshm.execution.diff import Actions, Amend, Cancel, Place
from mmshm.records import CONTROL_ROW, Mode, OrderStatus, Side, TARGET_ROW

cdef int ST_PENDING_NEW = OrderStatus.PENDING_NEW
cdef int ST_NEW = OrderStatus.NEW
cdef int ST_PARTIAL = OrderStatus.PARTIALLY_FILLED
cdef int MODE_REDUCE_ONLY = Mode.REDUCE_ONLY
cdef int MODE_HALT = Mode.HALT
cdef object SIDES = (None, Side.BUY, Side.SELL)
assert int(Side.BUY) == SIDE_BUY and int(Side.SELL) == SIDE_SELL
assert TARGET_ROW.itemsize == sizeof(TargetRow) and CONTROL_ROW.itemsize == sizeof(ControlRow)


class TooManyOrders(Exception):
    """More live orders on one side than the native plan holds: use the Python plan."""


cdef inline int64_t _key(int side, int64_t price) noexcept nogil:
    """Sort key, best price first: highest bid, lowest ask."""
    return -price if side == SIDE_BUY else price


cdef inline int64_t _worse(int side, int64_t price) noexcept nogil:
    """Larger = worse price for us (lower bid, higher ask)."""
    return -price if side == SIDE_BUY else price


cdef inline int64_t _abs(int64_t v) noexcept nogil:
    return -v if v < 0 else v


cdef inline int64_t _remaining(const Ord* o) noexcept nogil:
    cdef int64_t r = o.qty - o.filled
    return r if r > 0 else 0


cdef inline bint _working(int status) noexcept nogil:
    return status == ST_PENDING_NEW or status == ST_NEW or status == ST_PARTIAL


cdef void _sort_orders(Ord* a, int n, int side) noexcept nogil:
    """Stable insertion sort by the venue price, best first (WorkingOrders.live_orders'
    order; a handful of orders: beats anything else)."""
    cdef int i, j
    cdef Ord x
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and _key(side, a[j].orig_price) > _key(side, x.orig_price):
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


cdef int _collect(object book, object flatten, list objs, Ord* out, int side) except -1:
    """Copy one side's live orders (a WorkingOrders book: client id -> Order, in creation
    order) into C, skipping FLATTEN's orders; sorted best price first."""
    cdef int n = 0
    cdef object pa
    if not book:
        return 0
    for o in book.values():
        if flatten and o.client_id in flatten:
            continue
        if n >= MAX_SIDE:
            raise TooManyOrders(n)
        pa = o.pending_amend
        out[n].orig_price = o.price
        if pa is None:
            out[n].price = o.price
            out[n].qty = o.qty
            out[n].amend_pending = False
        else:
            out[n].price = pa[0]
            out[n].qty = pa[1]
            out[n].amend_pending = True
        out[n].filled = o.filled_qty
        out[n].status = o.status
        out[n].side = side
        out[n].obj = len(objs)
        objs.append(o)
        n += 1
    _sort_orders(out, n, side)
    return n


cdef int _levels(const TargetRow* r, int side, Lvl* out) noexcept nogil:
    """Non-empty target levels of one side, sorted best first (stable)."""
    cdef int i, j, m = 0
    cdef int n = r.n_bids if side == SIDE_BUY else r.n_asks
    cdef int64_t px, qty
    cdef Lvl x
    if n > MAX_LEVELS:
        n = MAX_LEVELS
    for i in range(n):
        px = r.bid_px[i] if side == SIDE_BUY else r.ask_px[i]
        qty = r.bid_qty[i] if side == SIDE_BUY else r.ask_qty[i]
        if qty > 0 and px > 0:
            out[m].price = px
            out[m].qty = qty
            m += 1
    for i in range(1, m):
        x = out[i]
        j = i - 1
        while j >= 0 and _key(side, out[j].price) > _key(side, x.price):
            out[j + 1] = out[j]
            j -= 1
        out[j + 1] = x
    return m


cdef inline int64_t _tolerance(int64_t price, int64_t mid2, int64_t px_tol, double tol_bp,
                               double tol_frac) noexcept nogil:
    cdef int64_t tol = px_tol, t
    if tol_bp > 0.0:
        t = <int64_t>((<double>price * tol_bp) * 1e-4)
        if t > tol:
            tol = t
    if tol_frac > 0.0 and mid2 > 0:
        t = <int64_t>((tol_frac * <double>_abs(2 * price - mid2)) * 0.5)
        if t > tol:
            tol = t
    return tol


cdef inline void _push(Act* arr, int* n, int side, int obj, int64_t price, int64_t qty) noexcept nogil:
    arr[n[0]].side = side
    arr[n[0]].obj = obj
    arr[n[0]].price = price
    arr[n[0]].qty = qty
    n[0] += 1


cdef void _diff_side(Plan* p, int side, const Lvl* tg, int n_tg, const Ord* orders, int n_ord,
                     int64_t px_tol, int64_t qty_tol, bint amend, double tol_bp, double tol_frac,
                     int64_t mid2) noexcept nogil:
    """diff.diff_side: keep orders that satisfy a level, amend leftovers pairwise best
    first, place or cancel the rest."""
    cdef int i, k, best, n_free = 0, n_un = 0, n_am = 0, n_rest = 0
    cdef int free[MAX_SIDE]
    cdef int amendable[MAX_SIDE]
    cdef int rest[MAX_SIDE]
    cdef int unmatched[MAX_LEVELS]
    cdef int64_t tol, d, bd
    cdef const Ord* o
    for i in range(n_ord):
        if _working(orders[i].status):
            # stable insertion by the effective price (orders come in venue-price order)
            k = n_free - 1
            while k >= 0 and _key(side, orders[free[k]].price) > _key(side, orders[i].price):
                free[k + 1] = free[k]
                k -= 1
            free[k + 1] = i
            n_free += 1
    for k in range(n_tg):
        tol = _tolerance(tg[k].price, mid2, px_tol, tol_bp, tol_frac) if (tol_bp != 0.0 or tol_frac != 0.0) else px_tol
        best = -1
        bd = 0
        for i in range(n_free):
            o = &orders[free[i]]
            d = _abs(o.price - tg[k].price)
            if d <= tol and _abs(_remaining(o) - tg[k].qty) <= qty_tol:
                if best < 0 or d < bd:
                    best = i
                    bd = d
        if best < 0:
            unmatched[n_un] = k
            n_un += 1
        else:
            for i in range(best, n_free - 1):
                free[i] = free[i + 1]
            n_free -= 1
    for i in range(n_free):
        o = &orders[free[i]]
        if amend and (o.status == ST_NEW or o.status == ST_PARTIAL) and not o.amend_pending:
            amendable[n_am] = free[i]
            n_am += 1
        else:
            rest[n_rest] = free[i]
            n_rest += 1
    i = 0                                   # next amendable order
    for k in range(n_un):
        if i < n_am:
            o = &orders[amendable[i]]
            _push(p.amends, &p.n_amend, side, o.obj, tg[unmatched[k]].price, o.filled + tg[unmatched[k]].qty)
            i += 1
        else:
            _push(p.places, &p.n_place, side, -1, tg[unmatched[k]].price, tg[unmatched[k]].qty)
    for k in range(i, n_am):
        _push(p.cancels, &p.n_cancel, side, orders[amendable[k]].obj, 0, 0)
    for k in range(n_rest):
        _push(p.cancels, &p.n_cancel, side, orders[rest[k]].obj, 0, 0)


cdef int _find_order(const Ord* all_orders, int n, int obj) noexcept nogil:
    cdef int i
    for i in range(n):
        if all_orders[i].obj == obj:
            return i
    return -1


cdef bint _cancelled(const Plan* p, int obj) noexcept nogil:
    cdef int i
    for i in range(p.n_cancel):
        if p.cancels[i].obj == obj:
            return True
    return False


cdef void _reduce_only(Plan* p, const Ord* orders, int n, int64_t pos) noexcept nogil:
    """Drop what grows the position; cancel every order on the growing side."""
    cdef int grow = SIDE_BUY if pos >= 0 else SIDE_SELL
    cdef int i, k, m
    m = 0
    for i in range(p.n_place):
        if p.places[i].side != grow:
            p.places[m] = p.places[i]
            m += 1
    p.n_place = m
    m = 0
    for i in range(p.n_amend):
        if p.amends[i].side != grow:
            p.amends[m] = p.amends[i]
            m += 1
    p.n_amend = m
    m = p.n_cancel                          # only the diff's own cancels are checked
    for i in range(n):
        if orders[i].side == grow:
            for k in range(m):
                if p.cancels[k].obj == orders[i].obj:
                    break
            else:
                _push(p.cancels, &p.n_cancel, grow, orders[i].obj, 0, 0)


cdef void _limits(Plan* p, const Ord* orders, int n, int64_t max_order_qty, int64_t max_position,
                  int64_t pos) noexcept nogil:
    """ExecutionSession._apply_limits_py: clip sizes, then keep the position if every order of a
    side filled within ``max_position`` (drop places worst first, then cancel orders worst first)."""
    cdef int i, j, m, k, side, oi, n_rest, n_pl, n_cancel0
    cdef int64_t rem, exposure, q
    cdef const Ord* o
    cdef Act x
    cdef int rest[2 * MAX_SIDE]
    cdef int pl[MAX_ACTS]
    cdef int64_t new_qty[2 * MAX_SIDE]
    cdef bint has_new[2 * MAX_SIDE]
    cdef bint removed[MAX_ACTS]
    # amends: clip to max_order_qty; a clipped amend that changes nothing is dropped (-5027)
    m = 0
    for i in range(p.n_amend):
        oi = _find_order(orders, n, p.amends[i].obj)
        o = &orders[oi]
        rem = p.amends[i].qty - o.filled
        if rem > max_order_qty:
            rem = max_order_qty
        if rem > 0:
            if p.amends[i].price == o.price and o.filled + rem == o.qty:
                continue
            p.amends[m] = p.amends[i]
            p.amends[m].qty = o.filled + rem
            m += 1
        else:
            _push(p.cancels, &p.n_cancel, p.amends[i].side, p.amends[i].obj, 0, 0)
    p.n_amend = m
    m = 0
    for i in range(p.n_place):
        q = p.places[i].qty if p.places[i].qty < max_order_qty else max_order_qty
        if q > 0:
            p.places[m] = p.places[i]
            p.places[m].qty = q
            m += 1
    p.n_place = m
    for side in range(SIDE_BUY, SIDE_SELL + 1):
        exposure = pos if side == SIDE_BUY else -pos
        # new quantities of this pass's amends (fixed for the whole side, as in Python)
        for i in range(n):
            has_new[i] = False
            for k in range(p.n_amend):
                if p.amends[k].obj == orders[i].obj:
                    has_new[i] = True
                    new_qty[i] = p.amends[k].qty
        n_rest = 0
        for i in range(n):
            if orders[i].side == side and not _cancelled(p, orders[i].obj):
                rest[n_rest] = i
                n_rest += 1
                exposure += (new_qty[i] if has_new[i] else orders[i].qty) - orders[i].filled
        # this side's places, best price first (stable)
        n_pl = 0
        for i in range(p.n_place):
            if p.places[i].side == side:
                j = n_pl - 1
                while j >= 0 and _worse(side, p.places[pl[j]].price) > _worse(side, p.places[i].price):
                    pl[j + 1] = pl[j]
                    j -= 1
                pl[j + 1] = i
                n_pl += 1
                exposure += p.places[i].qty
        for i in range(p.n_place):
            removed[i] = False
        while exposure > max_position and n_pl > 0:
            n_pl -= 1
            x = p.places[pl[n_pl]]              # the worst-priced new order first
            exposure -= x.qty
            for k in range(p.n_place):          # list.remove: the first equal place goes
                if (not removed[k] and p.places[k].qty == x.qty and p.places[k].side == x.side
                        and p.places[k].price == x.price):
                    removed[k] = True
                    break
        m = 0
        for i in range(p.n_place):
            if not removed[i]:
                p.places[m] = p.places[i]
                m += 1
        p.n_place = m
        # resting orders worst price first (stable for equal prices, like sorted(reverse=True))
        for i in range(1, n_rest):
            k = rest[i]
            j = i - 1
            while j >= 0 and _worse(side, orders[rest[j]].price) < _worse(side, orders[k].price):
                rest[j + 1] = rest[j]
                j -= 1
            rest[j + 1] = k
        for i in range(n_rest):
            if exposure <= max_position:
                break
            o = &orders[rest[i]]
            _push(p.cancels, &p.n_cancel, side, o.obj, 0, 0)
            m = 0
            for k in range(p.n_amend):
                if p.amends[k].obj != o.obj:
                    p.amends[m] = p.amends[k]
                    m += 1
            p.n_amend = m
            exposure -= (new_qty[rest[i]] if has_new[rest[i]] else o.qty) - o.filled


cdef Plan _plan_buf                         # one plan at a time (the executor is single-threaded)
cdef Ord _orders_buf[2 * MAX_SIDE]


def plan(row, dict books, dict positions, object flatten_ids, int mode, object control=None,
         long long px_tol=0, long long qty_tol=0, bint amend=True, double tol_bp=0.0, double tol_frac=0.0):
    """Actions for one TARGET_ROW (a numpy record) against its instrument's live orders.

    ``books``: WorkingOrders.books ((instrument, side) -> {client id: Order}, creation
    order); ``positions``: WorkingOrders.position (instrument -> lots: REDUCE_ONLY's growing
    side and the limits); ``flatten_ids``: orders that are never diffed; ``mode``: the risk
    mode; ``control``: the instrument's CONTROL_ROW (its effective ``max_order_qty`` and
    ``max_position`` limit the actions) or None for no limits. Raises TooManyOrders beyond
    the native capacity (the caller then uses the Python plan).
    """
    cdef list objs = []
    cdef int inst
    cdef int64_t md_seq
    plan_into(&_plan_buf, _orders_buf, objs, row, books, positions, flatten_ids, mode, control,
              px_tol, qty_tol, amend, tol_bp, tol_frac, &inst, &md_seq)
    return actions_of(&_plan_buf, objs, inst, md_seq)


cdef int plan_into(Plan* p, Ord* orders, list objs, object row, dict books, dict positions,
                   object flatten_ids, int mode, object control, int64_t px_tol, int64_t qty_tol,
                   bint amend, double tol_bp, double tol_frac, int* inst_out, int64_t* md_seq_out) except -1:
    """:func:`plan` into ``p`` (orders indexed into ``objs``, which receives the Order
    objects): the plan stays in C, for the fused order path (``mmshm._native.orderpath``)
    to frame without making Python objects first."""
    cdef Py_buffer view
    cdef const TargetRow* r
    cdef int nb, ns, n, i, n_tg
    cdef Lvl tg[MAX_LEVELS]
    cdef int64_t mid2 = 0, b, a
    cdef int inst
    cdef bint pull
    cdef bint limits = control is not None
    cdef int64_t max_order_qty = 0, max_position = 0, position
    if limits:
        PyObject_GetBuffer(control, &view, PyBUF_SIMPLE)
        try:
            if view.len != sizeof(ControlRow):
                raise TypeError(f"plan expects a CONTROL_ROW record ({sizeof(ControlRow)} bytes), got {view.len}")
            max_order_qty = (<const ControlRow*>view.buf).max_order_qty
            max_position = (<const ControlRow*>view.buf).max_position
        finally:
            PyBuffer_Release(&view)
    PyObject_GetBuffer(row, &view, PyBUF_SIMPLE)
    try:
        if view.len != sizeof(TargetRow):
            raise TypeError(f"plan expects a TARGET_ROW record ({sizeof(TargetRow)} bytes), got {view.len}")
        r = <const TargetRow*>view.buf
        inst = r.instrument
        inst_out[0] = inst
        md_seq_out[0] = <int64_t>r.md_seq
        pull = (r.flags & 1) != 0 or mode >= MODE_HALT      # HALT: cancel all, nothing else
        position = positions.get(inst, 0)
        p.n_cancel = p.n_amend = p.n_place = 0
        nb = _collect(books.get((inst, SIDE_BUY)), flatten_ids, objs, orders, SIDE_BUY)
        ns = _collect(books.get((inst, SIDE_SELL)), flatten_ids, objs, orders + nb, SIDE_SELL)
        n = nb + ns
        if pull:
            for i in range(n):
                if _working(orders[i].status):
                    _push(p.cancels, &p.n_cancel, orders[i].side, orders[i].obj, 0, 0)
        if mode < MODE_HALT:
            if not pull:                        # (the row's pull flag: its cancels, then mode and limits)
                if tol_frac != 0.0:
                    b = r.bid_px[0] if r.n_bids else 0
                    a = r.ask_px[0] if r.n_asks else 0
                    mid2 = a + b if (a and b) else 2 * (a or b)
                n_tg = _levels(r, SIDE_BUY, tg)
                _diff_side(p, SIDE_BUY, tg, n_tg, orders, nb, px_tol, qty_tol, amend, tol_bp, tol_frac, mid2)
                n_tg = _levels(r, SIDE_SELL, tg)
                _diff_side(p, SIDE_SELL, tg, n_tg, orders + nb, ns, px_tol, qty_tol, amend, tol_bp, tol_frac, mid2)
            if mode == MODE_REDUCE_ONLY:
                _reduce_only(p, orders, n, position)
            if limits:
                _limits(p, orders, n, max_order_qty, max_position, position)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef object actions_of(const Plan* p, list objs, int inst, int64_t md_seq):
    """The plan as :class:`~mmshm.execution.diff.Actions` (Python objects)."""
    cdef int i
    out = Actions()
    cl, al, pl = out.cancels, out.amends, out.places
    for i in range(p.n_cancel):
        cl.append(Cancel(objs[p.cancels[i].obj].client_id, inst, SIDES[p.cancels[i].side]))
    for i in range(p.n_amend):
        al.append(Amend(objs[p.amends[i].obj].client_id, inst, SIDES[p.amends[i].side],
                        p.amends[i].price, p.amends[i].qty, md_seq))
    for i in range(p.n_place):
        pl.append(Place(inst, SIDES[p.places[i].side], p.places[i].price, p.places[i].qty, md_seq))
    return out
