from __future__ import annotations

import numpy as np

from mmshm.execution.diff import MAX_BATCH, TARGET_FLAG_PULL, Amend, diff, request_count
from mmshm.execution.orders import Order
from mmshm.records import TARGET_ROW, OrderStatus as S, Side


def row(bids=(), asks=(), flags=0, md_seq=9, inst=0):
    r = np.zeros(1, TARGET_ROW)[0]
    r["instrument"] = inst
    r["md_seq"] = md_seq
    r["flags"] = flags
    r["n_bids"], r["n_asks"] = len(bids), len(asks)
    for i, (p, q) in enumerate(bids):
        r["bid_px"][i], r["bid_qty"][i] = p, q
    for i, (p, q) in enumerate(asks):
        r["ask_px"][i], r["ask_qty"][i] = p, q
    return r


def order(cid, side, px, qty, status=S.NEW, filled=0, inst=0):
    return Order(cid, 0, inst, side, px, qty, status=status, filled_qty=filled)


def test_nothing_to_do_within_tolerance():
    w = [order("b", Side.BUY, 99, 10), order("s", Side.SELL, 101, 10)]
    assert not diff(row([(100, 11)], [(101, 10)]), w, px_tol=1, qty_tol=1)


def test_amend_instead_of_cancel_new():
    w = [order("b", Side.BUY, 95, 10, status=S.PARTIALLY_FILLED, filled=4)]
    a = diff(row([(100, 5)]), w)
    assert a.amends == [Amend("b", 0, Side.BUY, 100, 9, 9)] and not a.places and not a.cancels
    b = diff(row([(100, 5)]), w, amend=False)
    assert len(b.places) == 1 and len(b.cancels) == 1
    assert request_count(a, batched=False) < request_count(b, batched=False)


def test_pending_orders_are_not_amended_and_pending_cancel_ignored():
    w = [order("p", Side.BUY, 95, 10, status=S.PENDING_NEW),
         order("c", Side.BUY, 100, 5, status=S.PENDING_CANCEL)]
    a = diff(row([(100, 5)]), w)
    assert [c.client_id for c in a.cancels] == ["p"] and len(a.places) == 1 and not a.amends


def test_pull_cancels_everything():
    w = [order("b", Side.BUY, 95, 10), order("s", Side.SELL, 105, 10), order("x", Side.SELL, 1, 1, inst=1)]
    a = diff(row([(100, 5)], [(101, 5)], flags=TARGET_FLAG_PULL), w)
    assert {c.client_id for c in a.cancels} == {"b", "s"} and not a.places


def test_batches_respect_venue_limits():
    a = diff(row([(100 - i, 1) for i in range(5)], [(200 + i, 1) for i in range(5)]), [])
    assert len(a.places) == 10
    batches = a.batches()
    assert [k for k, _ in batches] == ["place", "place"]
    assert all(len(items) <= MAX_BATCH for _, items in batches)
