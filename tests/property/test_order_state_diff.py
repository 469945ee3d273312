"""Property: applying diff actions yields working orders within tolerance of the targets,
and amending never needs more requests than cancel + new."""
from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings, strategies as st

from mmshm.execution.diff import diff
from mmshm.execution.orders import Order
from mmshm.records import TARGET_LEVELS, TARGET_ROW, OrderStatus as S, Side

levels = st.lists(st.tuples(st.integers(1, 60), st.integers(1, 20)), max_size=TARGET_LEVELS,
                  unique_by=lambda t: t[0])
works = st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 60), st.integers(1, 20),
                           st.integers(0, 5), st.sampled_from([S.NEW, S.PARTIALLY_FILLED, S.PENDING_NEW])),
                 max_size=8)


def mkrow(bids, asks, pull):
    r = np.zeros(1, TARGET_ROW)[0]
    r["n_bids"], r["n_asks"], r["flags"] = len(bids), len(asks), int(pull)
    for i, (p, q) in enumerate(bids):
        r["bid_px"][i], r["bid_qty"][i] = p, q
    for i, (p, q) in enumerate(asks):
        r["ask_px"][i], r["ask_qty"][i] = p, q
    return r


def apply(working, acts):
    book = {o.client_id: (o.side, o.price, o.remaining) for o in working
            if o.status in (S.NEW, S.PARTIALLY_FILLED, S.PENDING_NEW)}
    for c in acts.cancels:
        del book[c.client_id]
    for a in acts.amends:
        o = next(o for o in working if o.client_id == a.client_id)
        book[a.client_id] = (a.side, a.price, a.qty - o.filled_qty)
    for i, p in enumerate(acts.places):
        book[f"new{i}"] = (p.side, p.price, p.qty)
    return book


@settings(max_examples=300, deadline=None)
@given(levels, levels, works, st.integers(0, 2), st.integers(0, 2), st.booleans(), st.booleans())
def test_actions_reach_targets(bids, asks, wk, px_tol, qty_tol, pull, use_amend):
    working = [Order(f"o{i}", i, 0, sd, px, q + f, status=stt, filled_qty=f if stt != S.PENDING_NEW else 0)
               for i, (sd, px, q, f, stt) in enumerate(wk)]
    r = mkrow(bids, asks, pull)
    acts = diff(r, working, px_tol, qty_tol, amend=use_amend)
    book = apply(working, acts)
    for side, tg in ((Side.BUY, [] if pull else bids), (Side.SELL, [] if pull else asks)):
        have = sorted((p, q) for s, p, q in book.values() if s == side)
        assert len(have) == len(tg)
        # a perfect matching within tolerance exists (sizes <= 5: try every assignment)
        assert any(all(abs(h[0] - t[0]) <= px_tol and abs(h[1] - t[1]) <= qty_tol
                       for h, t in zip(perm, tg)) for perm in itertools.permutations(have)), (side, tg, have)
    if use_amend:
        plain = diff(r, working, px_tol, qty_tol, amend=False)
        assert acts.n_orders <= plain.n_orders
        assert len(acts.places) + len(acts.cancels) + 2 * len(acts.amends) == plain.n_orders


@settings(max_examples=200, deadline=None)
@given(levels, levels, works, st.integers(-30, 30), st.integers(0, 10), st.integers(0, 40))
def test_limits_bound_worst_case_position(bids, asks, wk, pos, max_oq, max_pos):
    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import CONTROL_ROW, Mode
    from mmshm.venues.binance_usdm.trading import InstrumentIndex

    idx = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")])
    s = ExecutionSession(None, idx, ClientIdGenerator(epoch=5), lambda r: True, mode="observe")
    for i, (sd, px, q, f, stt) in enumerate(wk):
        s.working.new_sent(client_id=f"o{i}", cid_num=i + 1, instrument=0, side=sd, price=px, qty=q + 5)
    s.working.position[0] = pos
    ctl = np.zeros(1, CONTROL_ROW)[0]
    ctl["max_order_qty"], ctl["max_position"], ctl["limit_scale_bp"] = max_oq, max_pos, 10_000
    acts = s.plan(mkrow(bids, asks, False), Mode.NORMAL, ctl)
    book = apply(s.working.live_orders(0), acts)
    assert all(p.qty <= max_oq for p in acts.places)
    for side, sign in ((Side.BUY, 1), (Side.SELL, -1)):
        exposure = sign * pos + sum(q for sd, _, q in book.values() if sd == side)
        assert exposure <= max(max_pos, sign * pos), (side, exposure)
