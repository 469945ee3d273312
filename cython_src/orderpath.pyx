# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The executor's order path in C: one target change -> plan -> requote trim -> rate budget
-> every request's frame in one buffer, with no Python object made before the socket write.

Why: "target change seen -> request on the socket" is the executor's latency (issue 4: p50
<= 30 us). Its C parts were fast alone (plan ~3 us, a frame ~2 us) but the path between
them made Python objects for every step (Actions, Amend/Place dataclasses, the batch and
its slots, the budget's Cost and memoryview, bound methods, per-request calls) and, with
caches cold after the event loop's turn, each of those cost as much again. Here the plan
stays in C structs (``mmshm._native.execplan.plan_into``), the shared budget is debited in
C under one flock for the whole change (``mmshm._native.ratebudget.debit``, the same rule),
and each request is framed straight into one buffer (``WsOrderEncoder.frame_into``). The
Python objects (actions, registration in the state machine, the answers' futures) are made
AFTER the write, from :meth:`OrderPath.actions` and :meth:`OrderPath.outcomes`.

It only takes the common case; anything else returns None from :meth:`OrderPath.frames` and
the session uses the general path (``WsOrderBatch``), so behaviour stays exactly one:
a breaker that is not CLOSED (half-open lets one probe through: the breaker's own code
decides), a budget or breaker whose methods are not the library's (tests replace them),
and no native encoder. A request the encoder cannot frame (text outside its alphabet) is
framed by the Python encoder in its place in the same buffer, as in ``WsOrderBatch``.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cimport numpy as cnp

from atomics cimport mm_realtime_ns
from mmshm._native.execplan cimport Act, MAX_ACTS, MAX_SIDE, Ord, Plan, SIDE_SELL, actions_of, plan_into
from mmshm._native.ratebudget cimport debit, lock_budget, unlock_budget
from mmshm._native.wsorder cimport CANCEL, FRAME_MAX, MODIFY, Out, PLACE, WsOrderEncoder

import time

from mmshm.execution.breaker import BreakerState, CircuitBreaker
from mmshm.execution.ratelimit import COSTS, RateBudget, _FlockGuard, _WORD_OFFSETS

cnp.import_array()

cdef enum:
    MAX_REQS = 3 * MAX_ACTS
    N_WORDS = 24            # RATE_STATE is 192 bytes of int64 words

cdef int W_VERSION, W_INTERVAL, W_LIMIT, W_USED, W_WINDOW, W_BLOCKED, W_REFUSED, W_MARGIN
W_VERSION, W_INTERVAL, W_LIMIT, W_USED, W_WINDOW, W_BLOCKED, W_REFUSED, W_MARGIN = _WORD_OFFSETS
# request costs per method (PLACE, MODIFY, CANCEL), from the one table of documented costs
cdef int64_t COST_W[3]
cdef int64_t COST_O[3]
for _m, _name in ((PLACE, "order.place"), (MODIFY, "order.modify"), (CANCEL, "order.cancel")):
    COST_W[_m] = COSTS[_name].weight
    COST_O[_m] = COSTS[_name].orders

cdef object _ACQUIRE = RateBudget.acquire
cdef object _ALLOW = CircuitBreaker.allow
cdef object _CLOSED = BreakerState.CLOSED
cdef object _TIME_NS = time.time_ns


cdef struct Req:
    int method              # PLACE, MODIFY, CANCEL
    int act                 # index in the plan's array of that kind
    int64_t rid             # > 0: framed (the request id in the frame)
    int64_t wait_ns         # > 0: refused by the rate budget (ns until it would fit)


cdef inline bint _library_method(object obj, str name, object func):
    """``obj.name`` is the library's ``func`` (not replaced on the class or the instance)."""
    return getattr(getattr(obj, name), "__func__", None) is func


cdef class OrderPath:
    """One target change at a time (the executor is single-threaded): :meth:`plan`, then
    optionally :meth:`keep_nearest`, then :meth:`frames` (or :meth:`actions` for the
    general path); after the write :meth:`actions` and :meth:`outcomes`."""
    cdef Plan p
    cdef Ord orders[2 * MAX_SIDE]
    cdef list objs
    cdef int inst
    cdef int64_t seq
    cdef Req reqs[MAX_REQS]
    cdef int n_reqs
    cdef char *buf
    cdef int cap

    def __cinit__(self) -> None:
        self.cap = 8 * FRAME_MAX
        self.buf = <char *>malloc(self.cap)
        if self.buf is NULL:
            raise MemoryError()
        self.objs = []

    def __dealloc__(self) -> None:
        free(self.buf)

    @property
    def n_cancel(self) -> int:
        return self.p.n_cancel

    @property
    def n_amend(self) -> int:
        return self.p.n_amend

    @property
    def n_place(self) -> int:
        return self.p.n_place

    @property
    def instrument(self) -> int:
        return self.inst

    @property
    def md_seq(self) -> int:
        return self.seq

    def plan(self, row, dict books, dict positions, object flatten_ids, int mode, object control,
             long long px_tol, long long qty_tol, bint amend, double tol_bp, double tol_frac) -> int:
        """:func:`mmshm._native.execplan.plan` kept in C; returns how many actions.
        Raises TooManyOrders beyond the native capacity (the caller plans in Python)."""
        self.objs = []
        self.n_reqs = 0
        plan_into(&self.p, self.orders, self.objs, row, books, positions, flatten_ids, mode, control,
                  px_tol, qty_tol, amend, tol_bp, tol_frac, &self.inst, &self.seq)
        return self.p.n_cancel + self.p.n_amend + self.p.n_place

    def keep_nearest(self, int allowed) -> None:
        """Keep only ``allowed`` of the places and amends: those nearest the touch (ranked
        within each side by distance from that side's best target; ties in plan order,
        amends before places), as ``ExecutionSession._trim_requotes`` does to Actions."""
        cdef int na = self.p.n_amend, n = self.p.n_amend + self.p.n_place
        cdef int i, j, k, m, x
        cdef int64_t key[MAX_ACTS * 2]
        cdef int64_t best[3]
        cdef bint has_best[3]
        cdef int order[MAX_ACTS * 2]
        cdef bint keep[MAX_ACTS * 2]
        cdef Act *a
        if allowed >= n:
            return
        if allowed < 0:
            allowed = 0
        has_best[0] = has_best[1] = has_best[2] = False
        for i in range(n):
            a = &self.p.amends[i] if i < na else &self.p.places[i - na]
            key[i] = a.price if a.side == SIDE_SELL else -a.price
            if not has_best[a.side] or key[i] < best[a.side]:
                best[a.side] = key[i]
                has_best[a.side] = True
        for i in range(n):                  # rank: distance from the side's best (stable)
            a = &self.p.amends[i] if i < na else &self.p.places[i - na]
            key[i] -= best[a.side]
            x = i
            j = i - 1
            while j >= 0 and key[order[j]] > key[x]:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = x
        for i in range(n):
            keep[i] = False
        for k in range(allowed):
            keep[order[k]] = True
        m = 0
        for i in range(na):
            if keep[i]:
                self.p.amends[m] = self.p.amends[i]
                m += 1
        self.p.n_amend = m
        m = 0
        for i in range(self.p.n_place):
            if keep[na + i]:
                self.p.places[m] = self.p.places[i]
                m += 1
        self.p.n_place = m

    def actions(self):
        """The plan as :class:`~mmshm.execution.diff.Actions` (cancels, amends, places)."""
        return actions_of(&self.p, self.objs, self.inst, self.seq)

    def outcomes(self) -> list:
        """After :meth:`frames`, per request in write order (cancels, amends, places): its
        request id (> 0), or minus the ns the rate budget said to wait (it was refused)."""
        cdef int k
        return [self.reqs[k].rid if self.reqs[k].rid else -self.reqs[k].wait_ns for k in range(self.n_reqs)]

    def frames(self, api, list place_ids, bint post_only, bint reduce_only):
        """Debit the rate budget for every request of the plan (one lock hold), then frame
        every admitted one into one buffer: the bytes to write, or None when this change
        must take the general path (see the module doc; nothing was debited then).

        ``api``: the WebSocket API session (``BinanceWsApi``: its encoder, budget, breaker,
        request ids and clock); ``place_ids``: the client id of each planned place.
        """
        cdef object enc_obj = api.encoder
        cdef object budget = api.budget
        cdef object breaker = api.breaker
        cdef WsOrderEncoder enc
        cdef cnp.ndarray words
        cdef int64_t *w
        cdef int fd = -1, k, m, err, cidn
        cdef int64_t now, rid, price, qty, ts
        cdef Py_ssize_t n_text
        cdef const char *cidp
        cdef object clock, lock, cid, fb, ids
        cdef Act *a
        cdef Out out
        if type(enc_obj) is not WsOrderEncoder:
            return None
        if not (breaker.state is _CLOSED and _library_method(breaker, "allow", _ALLOW)):
            return None                     # (CLOSED: allow() is True and changes nothing)
        if not _library_method(budget, "acquire", _ACQUIRE):
            return None
        if len(place_ids) != self.p.n_place:
            raise ValueError(f"{len(place_ids)} client ids for {self.p.n_place} places")
        words = budget.words
        if (words is None or cnp.PyArray_TYPE(words) != cnp.NPY_INT64 or not cnp.PyArray_ISCARRAY(words)
                or cnp.PyArray_SIZE(words) < N_WORDS):
            raise TypeError("the rate budget's words are not one RATE_STATE record")
        w = <int64_t *>cnp.PyArray_DATA(words)
        enc = <WsOrderEncoder>enc_obj
        # the requests, in write order: cancels, then amends, then places
        self.n_reqs = 0
        self._add_reqs(CANCEL, self.p.n_cancel)
        self._add_reqs(MODIFY, self.p.n_amend)
        self._add_reqs(PLACE, self.p.n_place)
        # --- the budget: every request debited in turn under one hold of the shared lock
        lock = budget._lock
        if type(lock) is _FlockGuard and lock.depth == 0:
            fd = lock.fd
        clock = budget._clock
        if fd >= 0:
            lock_budget(fd)
        try:
            now = mm_realtime_ns() if clock is _TIME_NS else clock()   # read under the lock
            for k in range(self.n_reqs):
                m = self.reqs[k].method
                self.reqs[k].wait_ns = debit(w, COST_W[m], COST_O[m], now, W_VERSION, W_INTERVAL, W_LIMIT,
                                             W_USED, W_WINDOW, W_BLOCKED, W_REFUSED, W_MARGIN)
        finally:
            if fd >= 0:
                unlock_budget(fd)
        # --- the frames, one after the other in one buffer
        ts = api.clock.venue_ms()
        ids = api._ids
        out.p, out.n, out.cap, out.overflow = self.buf, 0, self.cap, False
        for k in range(self.n_reqs):
            if self.reqs[k].wait_ns:
                continue
            m = self.reqs[k].method
            if m == CANCEL:
                a = &self.p.cancels[self.reqs[k].act]
                cid = self.objs[a.obj].client_id
            elif m == MODIFY:
                a = &self.p.amends[self.reqs[k].act]
                cid = self.objs[a.obj].client_id
            else:
                a = &self.p.places[self.reqs[k].act]
                cid = place_ids[self.reqs[k].act]
            rid = next(ids)
            self.reqs[k].rid = rid
            if out.cap - out.n < FRAME_MAX:
                self._grow(&out, FRAME_MAX)
            cidp = PyUnicode_AsUTF8AndSize(cid, &n_text)
            price = 0 if m == CANCEL else a.price
            qty = 0 if m == CANCEL else a.qty
            cidn = <int>n_text if n_text < 4096 else 4096      # (longer than any id: refused)
            err = enc.frame_into(&out, m, rid, self.inst, cidp, cidn,
                                 0 if m == CANCEL else a.side, price, qty,
                                 post_only and m == PLACE, reduce_only and m == PLACE, ts)
            if err:                         # outside the C encoder's alphabet: Python frames it
                fb = api._python_order_frame(m, rid, self.inst, cid, a.side, price, qty,
                                             post_only and m == PLACE, reduce_only and m == PLACE, ts)
                if not PyBytes_Check(fb):
                    raise TypeError("the Python encoder returned no bytes")
                if out.cap - out.n < PyBytes_GET_SIZE(fb):
                    self._grow(&out, <int>PyBytes_GET_SIZE(fb))
                memcpy(out.p + out.n, PyBytes_AS_STRING(fb), PyBytes_GET_SIZE(fb))
                out.n += <int>PyBytes_GET_SIZE(fb)
        return PyBytes_FromStringAndSize(out.p, out.n)

    cdef void _add_reqs(self, int method, int count) noexcept:
        cdef int i
        for i in range(count):
            self.reqs[self.n_reqs].method = method
            self.reqs[self.n_reqs].act = i
            self.reqs[self.n_reqs].rid = 0
            self.reqs[self.n_reqs].wait_ns = 0
            self.n_reqs += 1

    cdef int _grow(self, Out *out, int need) except -1:
        cdef int cap = self.cap
        cdef char *nb
        while cap - out.n < need:
            cap *= 2
        nb = <char *>realloc(self.buf, cap)
        if nb is NULL:
            raise MemoryError()
        self.buf, self.cap = nb, cap
        out.p, out.cap = nb, cap
        return 0
