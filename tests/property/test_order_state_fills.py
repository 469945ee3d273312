"""Property: random, duplicated and reordered venue reports never count a fill twice, and
the position always equals the sum of distinct fills (and of the FILL records)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from mmshm.execution.orders import TERMINAL, VenueEvent, WorkingOrders, position_from_fills
from mmshm.records import OrderEventKind as K, OrderStatus as S, Side

KINDS = [K.ACK, K.FILL, K.CANCELED, K.EXPIRED, K.CANCEL_REJECT, K.REJECT, K.AMENDED,
         K.CANCEL_SENT, K.AMEND_SENT]

step = st.tuples(st.integers(0, 2), st.sampled_from(KINDS), st.integers(1, 6), st.integers(1, 8))


@settings(max_examples=400, deadline=None)
@given(st.lists(step, max_size=60), st.lists(st.sampled_from([Side.BUY, Side.SELL]), min_size=3, max_size=3))
def test_fills_never_double_counted(steps, sides):
    t = [0]

    def mono():
        t[0] += 1
        return t[0]

    w = WorkingOrders(mono=mono, realtime=lambda: 0)
    recs = []
    for i, sd in enumerate(sides):
        recs.append(w.new_sent(client_id=f"o{i}", cid_num=i + 1, instrument=0, side=sd, price=100, qty=10))
    distinct: dict[tuple[int, int], int] = {}
    for oi, kind, q, tid in steps:
        cid = f"o{oi}"
        o = w.get(cid)
        before = (o.status, o.filled_qty)
        if kind == K.CANCEL_SENT:
            out = w.cancel_sent(cid)
        elif kind == K.AMEND_SENT:
            out = w.amend_sent(cid, 101, max(o.qty, o.filled_qty + 1))
        else:
            out = w.apply(VenueEvent(kind, cid, venue_order_id=oi + 1, price=100, qty=o.qty,
                                     fill_px=100, fill_qty=q, trade_id=oi * 100 + tid, fee=1))
        recs += out.records
        if out.illegal or out.duplicate:
            assert (o.status, o.filled_qty) == before       # never silently applied
        if kind == K.FILL and out.records:
            key = (oi, tid)
            assert key not in distinct
            distinct[key] = q if sides[oi] == Side.BUY else -q
        if before[0] in TERMINAL:
            assert o.status == before[0] or (before[0] == S.FILLED)
        assert 0 <= o.filled_qty <= o.qty
    expected = sum(distinct.values())
    assert w.position.get(0, 0) == expected
    assert position_from_fills(recs).get(0, 0) == expected
    assert w.fees.get(0, 0) == len(distinct)
