"""The executor's native order path (mmshm._native.orderpath) against the Python it fuses.

- ``OrderPath.plan`` keeps the native plan in C: its ``actions()`` are ``execplan.plan``'s.
- ``keep_nearest`` (the requote budget's trim) equals ``ExecutionSession._trim_requotes``.
- ``frames`` debits the rate budget exactly as one ``RateBudget._acquire_py`` per request
  (same refusals, same state) and frames each admitted request as the Python encoder
  would (same JSON once unmasked, request ids in write order: cancels, amends, places);
  a request outside the C encoder's alphabet is framed by the Python encoder in its place.
- What it does not take (breaker not CLOSED, a budget or breaker method replaced, no
  native encoder) returns None and debits nothing.
"""
from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mmshm._native.orderpath import OrderPath
from mmshm.execution.breaker import CircuitBreaker, Failure
from mmshm.execution.ratelimit import RateBudget, RateLimited, cost_of
from mmshm.execution.session import ExecutionSession, SessionConfig
from mmshm.records import CONTROL_ROW, Mode
from mmshm.venues.binance_usdm.auth import Signer
from mmshm.venues.binance_usdm.trading import BinanceWsApi, Clock, InstrumentIndex

from test_execplan import SPEC, add_orders, levels_st, order_st, session, target

pytestmark = pytest.mark.timeout(120)

NOW = 1_700_000_000_000_000_000


class FixedClock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def plan_both(orders, bids, asks, pull, mode, limits, amend):
    s = session(SessionConfig(prefer_amend=amend, deadman=False))
    add_orders(s, orders)
    control = None
    if limits is not None:
        control = np.zeros(1, CONTROL_ROW)[0]
        control["max_order_qty"], control["max_position"] = limits
    row = target(bids, asks, pull, 77)
    path = OrderPath()
    n = path.plan(row, s.working.books, s.working.position, s._flatten_ids, int(mode), control,
                  0, 0, amend, 0.0, 0.0)
    return s, path, n, s.plan(row, mode, control)


def unmask(data: bytes) -> list[dict]:
    """The JSON of every RFC 6455 masked client frame in ``data``."""
    out, i = [], 0
    while i < len(data):
        n = data[i + 1] & 0x7F
        hdr = 2
        if n == 126:
            n, hdr = int.from_bytes(data[i + 2:i + 4], "big"), 4
        key = data[i + hdr:i + hdr + 4]
        body = bytes(b ^ key[k & 3] for k, b in enumerate(data[i + hdr + 4:i + hdr + 4 + n]))
        out.append(orjson.loads(body))
        i += hdr + 4 + n
    return out


def ws_api(budget: RateBudget, breaker: CircuitBreaker | None = None) -> BinanceWsApi:
    clock = Clock()
    clock._rt = lambda: NOW                   # (venue_ms from a fixed realtime)
    return BinanceWsApi("ws://127.0.0.1:9/ws-fapi/v1", Signer("mmshm-key", "mmshm-secret"),
                        InstrumentIndex([SPEC]), budget=budget, breaker=breaker or CircuitBreaker(),
                        clock=clock, recv_window_ms=5000)


def python_json(api: BinanceWsApi, method: int, rid: int, cid: str, side: int, price: int, qty: int,
                post_only: bool, reduce_only: bool) -> dict:
    frame = api._python_order_frame(method, rid, 0, cid, side, price, qty, post_only, reduce_only, NOW // 1_000_000)
    return unmask(frame)[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(order_st, max_size=10), bids=levels_st, asks=levels_st, pull=st.booleans(),
       mode=st.sampled_from(list(Mode)), limits=st.none() | st.tuples(st.integers(0, 15), st.integers(0, 40)),
       amend=st.booleans(), allowed=st.integers(-1, 12))
def test_plan_and_requote_trim_equal_the_python(orders, bids, asks, pull, mode, limits, amend, allowed):
    s, path, n, ref = plan_both(orders, bids, asks, pull, mode, limits, amend)
    acts = path.actions()
    assert (acts.cancels, acts.amends, acts.places) == (ref.cancels, ref.amends, ref.places)
    assert n == len(ref.cancels) + len(ref.amends) + len(ref.places)
    assert (path.n_cancel, path.n_amend, path.n_place) == (len(ref.cancels), len(ref.amends), len(ref.places))
    assert path.instrument == 0 and path.md_seq == 77
    path.keep_nearest(allowed)
    ExecutionSession._trim_requotes(ref, allowed)
    acts = path.actions()
    assert (acts.cancels, acts.amends, acts.places) == (ref.cancels, ref.amends, ref.places)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(order_st, max_size=8), bids=levels_st, asks=levels_st, amend=st.booleans(),
       orders_10s=st.integers(0, 8), weight_1m=st.integers(0, 8), post_only=st.booleans(),
       reduce_only=st.booleans())
def test_frames_debit_like_the_budget_and_frame_like_the_python_encoder(orders, bids, asks, amend, orders_10s,
                                                                        weight_1m, post_only, reduce_only):
    s, path, n, _ = plan_both(orders, bids, asks, False, Mode.NORMAL, None, amend)
    limits = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": orders_10s},
              {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_1m}]
    budget = RateBudget(margin=0.0, clock=FixedClock(NOW), rate_limits=limits)
    ref_budget = RateBudget(budget.s.reshape(1).copy(), margin=0.0, clock=FixedClock(NOW))
    api = ws_api(budget)
    acts = path.actions()
    cids = [f"pl{k}" for k in range(path.n_place)]
    data = path.frames(api, cids, post_only, reduce_only)
    outcomes = path.outcomes()
    # the reference: one Python debit per request, in write order
    reqs = ([(2, "order.cancel", c.client_id, 0, 0, 0) for c in acts.cancels]
            + [(1, "order.modify", a.client_id, int(a.side), a.price, a.qty) for a in acts.amends]
            + [(0, "order.place", cid, int(p.side), p.price, p.qty) for cid, p in zip(cids, acts.places)])
    assert len(outcomes) == len(reqs)
    expected, rid = [], 0
    for (method, name, cid, side, price, qty), got in zip(reqs, outcomes):
        try:
            ref_budget._acquire_py(cost_of(name))
        except RateLimited as exc:
            assert got == -exc.retry_after_ns
            continue
        rid += 1
        assert got == rid                              # ids in write order, only for what is sent
        place = method == 0
        expected.append(python_json(api, method, rid, cid, side, price, qty, post_only and place,
                                    reduce_only and place))
    assert np.array_equal(budget.words, ref_budget.words)
    assert unmask(data) == expected


def test_a_request_outside_the_c_alphabet_is_framed_in_python_in_its_place():
    s, path, n, _ = plan_both([], [(1000, 1), (999, 1)], [], False, Mode.NORMAL, None, True)
    api = ws_api(RateBudget(margin=0.0, clock=FixedClock(NOW)))
    data = path.frames(api, ["ok1", "not ok#2"], True, False)
    got = unmask(data)
    assert [g["params"]["newClientOrderId"] for g in got] == ["ok1", "not ok#2"]
    assert api.counters["python_frames"] == 1
    assert got[1] == python_json(api, 0, 2, "not ok#2", 1, path.actions().places[1].price, 1, True, False)


def test_what_the_native_path_does_not_take_returns_none_and_debits_nothing():
    def fresh():
        s, path, n, _ = plan_both([], [(1000, 1)], [], False, Mode.NORMAL, None, True)
        return path, RateBudget(margin=0.0, clock=FixedClock(NOW))

    path, budget = fresh()
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.record_failure(Failure.SERVER)            # open: its own code decides (half-open probe)
    words = budget.words.copy()
    assert path.frames(ws_api(budget, breaker), ["c"], True, False) is None
    assert np.array_equal(words, budget.words)
    path, budget = fresh()
    budget.acquire = lambda cost: None                # a replaced budget method is called by the batch
    assert path.frames(ws_api(budget), ["c"], True, False) is None
    path, budget = fresh()
    api = ws_api(budget)
    api.encoder = None
    assert path.frames(api, ["c"], True, False) is None
    with pytest.raises(ValueError, match="client ids"):
        fresh()[0].frames(ws_api(RateBudget()), [], True, False)


def test_frames_reuse_one_growing_buffer_for_many_requests():
    s, path, n, _ = plan_both([], [(1000 - k, 1) for k in range(5)], [(1010 + k, 1) for k in range(5)],
                              False, Mode.NORMAL, None, True)
    api = ws_api(RateBudget(margin=0.0, clock=FixedClock(NOW), rate_limits=[]))
    ids = itertools.count(1)
    for _ in range(3):
        data = path.frames(api, [f"c{next(ids)}" for _ in range(path.n_place)], True, False)
        assert len(unmask(data)) == 10
