"""Invariants of the matching core under random operation sequences (hypothesis)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mmshm._native import matching as M
from mmshm._native.matching import MatchingCore

PX = st.integers(990, 1010)
QTY = st.integers(1, 20)
ops = st.lists(st.one_of(
    st.tuples(st.just("level"), st.sampled_from([M.BUY, M.SELL]), PX, st.integers(0, 30)),
    st.tuples(st.just("trade"), st.sampled_from([M.BUY, M.SELL]), PX, QTY),
    st.tuples(st.just("submit"), st.sampled_from([M.BUY, M.SELL]), PX, QTY, st.integers(1, 2),
              st.sampled_from([M.GTC, M.IOC, M.FOK, M.GTX]), st.integers(0, 3)),
    st.tuples(st.just("cancel"), st.integers(1, 40)),
), max_size=80)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_core_invariants(seq):
    m = MatchingCore(64, 64)
    submitted: dict[int, int] = {}
    filled: dict[int, int] = {}
    removed: dict[int, int] = {}     # canceled / STP-expired remainder
    next_id = 1
    for op in seq:
        if op[0] == "level":
            m.set_level(op[1], op[2], op[3])
        elif op[0] == "trade":
            _, aggr, px, q = op
            m.trade(px, q, aggr)
            at_px = sum(e[3] for e in m.events() if e[0] == M.EV_FILL_KIND and e[2] == px)
            assert at_px <= q
        elif op[0] == "submit":
            _, side, px, q, acct, tif, stp = op
            oid = next_id
            next_id += 1
            res = m.submit(oid, side, px, q, acct, tif, stp)
            submitted[oid] = q
            if res == M.GTX_REJECT or (tif == M.FOK and res == M.EXPIRED):
                assert not any(e[1] == oid for e in m.events())
        else:
            rem = m.cancel(op[1])
            if rem > 0:
                removed[op[1]] = removed.get(op[1], 0) + rem
        for kind, oid, px, q, maker, counter, match in m.events():
            assert q > 0
            if kind == M.EV_FILL_KIND:
                filled[oid] = filled.get(oid, 0) + q
            else:
                removed[oid] = removed.get(oid, 0) + q
        # book arrays sorted, positive
        bids, asks = m.levels(M.BUY), m.levels(M.SELL)
        assert all(a[0] > b[0] for a, b in zip(bids, bids[1:])) and all(q > 0 for _, q in bids)
        assert all(a[0] < b[0] for a, b in zip(asks, asks[1:])) and all(q > 0 for _, q in asks)
        # no resting own order is crossed by the displayed book; ahead within the level
        for oid in m.order_ids():
            side, px, rem, ahead, _ = m.order(oid)
            assert 0 < rem and 0 <= ahead <= m.level_qty(side, px)
            if side == M.BUY and asks:
                assert px < asks[0][0]
            if side == M.SELL and bids:
                assert px > bids[0][0]
    # conservation: every order's quantity is filled, resting, removed or expired, never more
    resting = {oid: m.order(oid)[2] for oid in m.order_ids()}
    for oid, q in submitted.items():
        assert filled.get(oid, 0) + resting.get(oid, 0) + removed.get(oid, 0) <= q
