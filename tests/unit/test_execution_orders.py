"""Order state machine: the transition table and every real-world odd case."""
from __future__ import annotations

import numpy as np
import pytest

from mmshm.execution.orders import (ActionKind, FLAG_MAKER, TRANSITIONS, IllegalTransition, VenueEvent,
                                    WorkingOrders, position_from_fills)
from mmshm.records import ORDER_EVENT, OrderEventKind as K, OrderStatus as S, Side


class Clock:
    def __init__(self) -> None:
        self.t = 1_000

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def w():
    c = Clock()
    wo = WorkingOrders(pending_timeout_ns=100, mono=c, realtime=lambda: 42)
    wo.clock = c
    return wo


def new(w, cid="a", side=Side.BUY, px=100, qty=10, md_seq=7):
    rec = w.new_sent(client_id=cid, cid_num=hash(cid) & 0xFFFF, instrument=0, side=side, price=px,
                     qty=qty, md_seq=md_seq, sent_mono=5)
    return rec


def ev(kind, cid="a", **kw):
    return VenueEvent(kind=kind, client_id=cid, **kw)


def fill(cid="a", q=1, tid=1, px=100, fee=3, **kw):
    return VenueEvent(K.FILL, cid, venue_order_id=9, fill_px=px, fill_qty=q, trade_id=tid, fee=fee, **kw)


def test_new_ack_fill_records(w):
    rec = new(w)
    assert rec.dtype == ORDER_EVENT and rec["kind"] == K.NEW_SENT and rec["status"] == S.PENDING_NEW
    assert rec["md_seq"] == 7 and rec["sent_mono"] == 5 and rec["price"] == 100
    r = w.apply(ev(K.ACK, venue_order_id=9, venue_ts=77)).records
    assert r[0]["status"] == S.NEW and r[0]["venue_order_id"] == 9 and r[0]["venue_ts"] == 77
    r = w.apply(fill(q=4, maker=True)).records[0]
    assert r["status"] == S.PARTIALLY_FILLED and r["fill_qty"] == 4 and r["filled_qty"] == 4
    assert r["flags"] & FLAG_MAKER and r["fee"] == 3 and r["trade_id"] == 1
    r = w.apply(fill(q=6, tid=2)).records[0]
    assert r["status"] == S.FILLED
    assert w.position[0] == 10 and w.fees[0] == 6
    assert w.live_orders() == []


def test_fill_after_cancel_request(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    w.cancel_sent("a")
    assert w.get("a").status == S.PENDING_CANCEL
    w.apply(fill(q=3))
    assert w.get("a").status == S.PENDING_CANCEL and w.position[0] == 3
    w.apply(ev(K.CANCELED))
    assert w.get("a").status == S.CANCELED and w.position[0] == 3


def test_fill_completes_during_pending_cancel_then_cancel_reject(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    w.cancel_sent("a")
    w.apply(fill(q=10))
    assert w.get("a").status == S.FILLED
    out = w.apply(ev(K.CANCEL_REJECT, reason=-2011))
    assert out.illegal is None and w.get("a").status == S.FILLED


def test_cancel_reject_restores_previous_state(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    w.apply(fill(q=2))
    w.cancel_sent("a")
    w.apply(ev(K.CANCEL_REJECT, reason=-2011))
    assert w.get("a").status == S.PARTIALLY_FILLED


def test_ack_after_fill(w):
    new(w)
    w.apply(fill(q=10))
    assert w.get("a").status == S.FILLED
    out = w.apply(ev(K.ACK, venue_order_id=9))
    assert out.illegal is None and w.get("a").status == S.FILLED


def test_partial_fill_before_ack_then_ack(w):
    new(w)
    w.apply(fill(q=4))
    assert w.get("a").status == S.PARTIALLY_FILLED
    out = w.apply(ev(K.ACK, venue_order_id=9))
    assert out.duplicate and w.get("a").status == S.PARTIALLY_FILLED


def test_fill_reported_after_cancel_confirmation(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    w.cancel_sent("a")
    w.apply(ev(K.CANCELED))
    out = w.apply(fill(q=2))
    assert out.records and w.get("a").status == S.CANCELED
    assert w.position[0] == 2 and w.counters["late_fill"] == 1


def test_duplicate_fill_counted_once(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    w.apply(fill(q=2, tid=5))
    out = w.apply(fill(q=2, tid=5))
    assert out.duplicate and not out.records
    assert w.position[0] == 2 and w.counters["duplicate_fill"] == 1


def test_overfill_is_illegal_and_not_applied(w):
    new(w)
    w.apply(fill(q=10, tid=1))
    out = w.apply(fill(q=1, tid=2))
    assert out.illegal and w.position[0] == 10 and w.counters["illegal"] == 1
    with pytest.raises(IllegalTransition):
        w.apply_strict(fill(q=1, tid=3))


def test_illegal_transitions_reported_never_applied(w):
    new(w)
    w.apply(ev(K.REJECT, reason=-5022))
    assert w.get("a").status == S.REJECTED
    out = w.apply(ev(K.ACK, venue_order_id=9))
    assert out.illegal and "ACK in REJECTED" in out.illegal
    assert w.get("a").status == S.REJECTED and w.counters["illegal"] == 1
    out = w.apply(ev(K.AMENDED, price=1))
    assert out.illegal and w.get("a").price == 100


def test_canceled_then_ack_late_and_dup_cancel(w):
    new(w)
    w.cancel_sent("a")          # cancel before the ack
    w.apply(ev(K.CANCELED, venue_order_id=9))
    assert w.apply(ev(K.ACK, venue_order_id=9)).illegal is None
    assert w.apply(ev(K.CANCELED)).duplicate


def test_new_rejected_while_cancel_pending(w):
    new(w)
    w.cancel_sent("a")
    w.apply(ev(K.REJECT, reason=-5022))
    assert w.get("a").status == S.REJECTED


def test_post_only_expired(w):
    new(w)
    r = w.apply(ev(K.EXPIRED, venue_order_id=9)).records[0]
    assert r["status"] == S.EXPIRED and w.live_orders() == []


def test_amend_flow_and_amend_reject(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    rec = w.amend_sent("a", 101, 12).records[0]
    assert rec["kind"] == K.AMEND_SENT and rec["price"] == 101
    assert w.get("a").pending_amend == (101, 12)
    w.apply(ev(K.AMENDED, price=101, qty=12))
    o = w.get("a")
    assert (o.price, o.qty, o.pending_amend) == (101, 12, None)
    w.amend_sent("a", 102, 12)
    w.apply(ev(K.REJECT, reason=-5022))
    o = w.get("a")
    assert (o.price, o.status, o.pending_amend) == (101, S.NEW, None)


def test_unknown_order_counted(w):
    out = w.apply(ev(K.ACK, cid="zzz"))
    assert out.unknown and w.counters["unknown_order"] == 1


def test_timeouts_query_then_cancel_all(w):
    new(w)
    w.clock.t += 101
    acts = w.check_timeouts()
    assert [a.kind for a in acts] == [ActionKind.QUERY]
    w.mark_queried("a")
    assert w.check_timeouts() == []
    w.clock.t += 101
    acts = w.check_timeouts()
    assert [a.kind for a in acts] == [ActionKind.CANCEL_ALL] and acts[0].instrument == 0
    w.apply(ev(K.ACK, venue_order_id=9))
    assert w.check_timeouts() == []


def test_pending_cancel_timeout(w):
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    w.clock.t += 1000
    assert w.check_timeouts() == []
    w.cancel_sent("a")
    w.clock.t += 101
    assert [a.kind for a in w.check_timeouts()] == [ActionKind.QUERY]


def test_cancels_of_a_lost_place_do_not_restart_its_pending_clock(w):
    """A place whose frame was lost: every target row cancels it again, each cancel is
    refused (-2011 unknown order) and restores PENDING_NEW. The place's pending clock must
    keep running, or the timeout query that settles the order would never come."""
    new(w)
    for _ in range(5):
        w.clock.t += 30
        w.cancel_sent("a")
        w.apply(ev(K.CANCEL_REJECT, reason=-2011))
        assert w.get("a").status == S.PENDING_NEW and w.get("a").unacknowledged
    assert [a.kind for a in w.check_timeouts()] == [ActionKind.QUERY]
    assert w.get("a").placed_mono == 5          # the grace before "final" counts from the place


def test_unplanned_changes_are_counted_per_instrument(w):
    """What the executor's planner did not do itself moves ``unplanned``: an order that
    ended, an amend or a cancel the venue refused (the unchanged target is then due again)."""
    new(w)
    w.apply(ev(K.ACK, venue_order_id=9))
    assert w.unplanned.get(0, 0) == 0
    w.amend_sent("a", 101, 10)
    w.apply(ev(K.REJECT, reason=-5022))
    assert w.unplanned[0] == 1
    w.cancel_sent("a")
    w.apply(ev(K.CANCEL_REJECT, reason=-1003))
    assert w.unplanned[0] == 2
    w.apply(ev(K.EXPIRED))
    assert w.unplanned[0] == 3 and w.live_orders() == []


def test_force_status_from_query(w):
    new(w)
    r = w.force_status("a", S.CANCELED, filled_qty=0, venue_order_id=9).records[0]
    assert r["kind"] == K.RECONCILE and r["status"] == S.CANCELED
    assert w.force_status("a", S.NEW).illegal  # terminal never comes back


def test_every_table_entry_is_exercisable(w):
    # smoke: every (status, kind) in the table is a real status/kind pair
    for (st, kind) in TRANSITIONS:
        assert isinstance(st, S) and isinstance(kind, K)


def test_position_from_fills_matches(w):
    recs = [new(w, "a", Side.BUY), new(w, "b", Side.SELL)]
    recs += w.apply(fill("a", q=3, tid=1)).records
    recs += w.apply(VenueEvent(K.FILL, "b", fill_px=1, fill_qty=5, trade_id=2)).records
    assert position_from_fills(recs) == {0: -2} == w.position
