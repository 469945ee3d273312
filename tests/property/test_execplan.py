"""The native planner (mmshm._native.execplan) against the Python plan it replaces.

``ExecutionSession.plan`` runs in C; ``plan_py`` is the same plan in Python (diff, the
risk mode, the control row's limits). For any live orders (every live status, amends in
flight, partial fills, FLATTEN orders, equal prices), any target row (empty or zero
levels, the pull flag, unsorted levels), any mode, position, limits and tolerances, both
must give the same actions in the same order.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.orders import Order
from mmshm.execution.session import ExecutionSession, SessionConfig
from mmshm.instruments import InstrumentSpec
from mmshm.records import CONTROL_ROW, TARGET_ROW, Mode, OrderStatus as S, Side
from mmshm.venues.binance_usdm.trading import InstrumentIndex
from rows import target_row

pytestmark = pytest.mark.timeout(120)

LIVE = [S.PENDING_NEW, S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL]
SPEC = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_notional="100")

prices = st.integers(995, 1005)            # a narrow band: equal prices and ties are common
qtys = st.integers(1, 12)

order_st = st.fixed_dictionaries({
    "side": st.sampled_from([Side.BUY, Side.SELL]),
    "price": prices,
    "qty": qtys,
    "filled": st.integers(0, 12),
    "status": st.sampled_from(LIVE),
    "amend": st.none() | st.tuples(prices, qtys),
    "flatten": st.booleans(),
    "instrument": st.sampled_from([0, 0, 0, 1]),
})

levels_st = st.lists(st.tuples(st.integers(0, 1006), st.integers(0, 12)), max_size=5)


def session(cfg: SessionConfig) -> ExecutionSession:
    idx = InstrumentIndex([SPEC, InstrumentSpec.from_decimals("ETHUSDT", "binance-usdm", "0.01", "0.001")])
    return ExecutionSession(None, idx, ClientIdGenerator("pp"), lambda r: True, mode="observe", config=cfg)


def add_orders(s: ExecutionSession, specs: list[dict]) -> None:
    w = s.working
    for i, d in enumerate(specs):
        cid = f"c{i}"
        filled = min(d["filled"], d["qty"] - 1) if d["status"] != S.PENDING_NEW else 0
        o = Order(cid, i + 1, d["instrument"], d["side"], d["price"], d["qty"], status=d["status"],
                  filled_qty=max(0, filled), pending_amend=d["amend"] if d["status"] != S.PENDING_NEW else None)
        w.orders[cid] = o
        w.books.setdefault((o.instrument, int(o.side)), {})[cid] = o
        if d["flatten"]:
            s._flatten_ids.add(cid)


def target(bids, asks, pull: bool, md_seq: int) -> np.void:
    return target_row(bids, asks, flags=int(pull), md_seq=md_seq)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(order_st, max_size=10), bids=levels_st, asks=levels_st,
       pull=st.booleans(), mode=st.sampled_from(list(Mode)), position=st.integers(-30, 30),
       limits=st.none() | st.tuples(st.integers(0, 15), st.integers(0, 40)),
       px_tol=st.integers(0, 2), qty_tol=st.integers(0, 2), amend=st.booleans(),
       tol_bp=st.sampled_from([0.0, 5.0, 12.5]), tol_frac=st.sampled_from([0.0, 0.3]),
       md_seq=st.integers(0, 2**40))
def test_native_plan_equals_python_plan(orders, bids, asks, pull, mode, position, limits, px_tol, qty_tol,
                                        amend, tol_bp, tol_frac, md_seq):
    s = session(SessionConfig(px_tol=px_tol, qty_tol=qty_tol, prefer_amend=amend, tol_bp=tol_bp,
                              tol_frac=tol_frac, deadman=False))
    add_orders(s, orders)
    if position:
        s.working.position[0] = position
    control = None
    if limits is not None:
        control = np.zeros(1, CONTROL_ROW)[0]
        control["max_order_qty"], control["max_position"] = limits
    row = target(bids, asks, pull, md_seq)
    native = s.plan(row, mode, control)
    ref = s.plan_py(row, mode, control)
    assert native.cancels == ref.cancels
    assert native.amends == ref.amends
    assert native.places == ref.places
    assert s.counters["plan_fallbacks"] == 0


def test_bad_rows_are_refused_with_a_clear_error():
    s = session(SessionConfig(deadman=False))
    with pytest.raises(TypeError, match="TARGET_ROW"):
        s.plan(np.zeros(1, CONTROL_ROW)[0])
    with pytest.raises(TypeError, match="CONTROL_ROW"):
        s.plan(target([(1000, 1)], [], False, 1), Mode.NORMAL, np.zeros(1, TARGET_ROW)[0])


def test_more_orders_than_the_native_planner_holds_falls_back_to_python():
    s = session(SessionConfig(deadman=False))
    add_orders(s, [{"side": Side.BUY, "price": 900 + i, "qty": 1, "filled": 0, "status": S.NEW, "amend": None,
                    "flatten": False, "instrument": 0} for i in range(130)])
    acts = s.plan(target([(1000, 1)], [], False, 7))
    assert s.counters["plan_fallbacks"] == 1
    assert acts == s.plan_py(target([(1000, 1)], [], False, 7))
    assert not acts.amends and len(acts.cancels) == 129    # the order at 1000 already is the target
