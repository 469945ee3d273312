"""The Cython L2 book: levels, bounds, analytics, events and the BOOK_ROW."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mmshm._native.book import ASK, BID, CROSSED, LOCKED, TOP_CHANGED, L2Book
from mmshm.records import BOOK_DEPTH, BOOK_ROW, MARKET_EVENT, MdKind


def make(levels_b, levels_a, cap=100) -> L2Book:
    b = L2Book(cap)
    b.load_snapshot([p for p, _ in levels_b], [q for _, q in levels_b],
                    [p for p, _ in levels_a], [q for _, q in levels_a])
    return b


def test_sorted_best_first_and_removal():
    b = make([(100, 5), (102, 1), (101, 2)], [(105, 3), (103, 4), (104, 1)])
    assert b.best() == (102, 1, 103, 4)
    px, qty = b.side_levels(BID)
    assert list(px) == [102, 101, 100] and list(qty) == [1, 2, 5]
    px, qty = b.side_levels(ASK)
    assert list(px) == [103, 104, 105]
    assert b.set_level(BID, 102, 0) == 0
    assert b.best_bid_px == 101
    assert b.set_level(BID, 999, 0) == 2 and b.missing_removes == 1     # absent: counted no-op
    assert b.set_level(ASK, 103, 7) == 0 and b.best_ask_qty == 7
    assert b.spread_ticks() == 2
    assert (b.n_bids, b.n_asks) == (2, 3)


def test_snapshot_ignores_zero_levels_and_replaces():
    b = make([(100, 5)], [(101, 1)])
    b.load_snapshot([90, 91], [0, 3], [95], [2])
    assert b.best() == (91, 3, 95, 2) and b.n_bids == 1


def test_bounded_side_keeps_the_best():
    b = L2Book(3)
    for px in (10, 11, 12):
        b.set_level(BID, px, 1)
    assert b.set_level(BID, 9, 1) == 1                    # worse than all kept: refused
    assert b.set_level(BID, 13, 1) == 1                   # better: evicts 10
    assert list(b.side_levels(BID)[0]) == [13, 12, 11]
    assert b.levels_dropped == 2
    for px in (20, 21, 22):
        b.set_level(ASK, px, 1)
    assert b.set_level(ASK, 23, 1) == 1
    assert b.set_level(ASK, 19, 5) == 1
    assert list(b.side_levels(ASK)[0]) == [19, 20, 21]


def test_flags_locked_crossed_and_top_changed():
    b = make([(100, 1)], [(102, 1)])
    ev = np.zeros(2, MARKET_EVENT)
    b.bind_events(ev)
    assert b.apply_diff([101], [1], [], []) & TOP_CHANGED
    b.emit(0, MdKind.BOOK_TOP, 1, 0, 1, 2, 5, 6, 7)
    assert not b.top_changed()
    assert b.apply_diff([90], [1], [], []) == 0              # deep change: top unchanged
    assert b.apply_diff([102], [1], [], []) == TOP_CHANGED | LOCKED
    assert b.state() == 1
    assert b.apply_diff([103], [1], [], []) == TOP_CHANGED | CROSSED
    assert b.state() == 2 and b.spread_ticks() == -1


def test_analytics():
    b = make([(100, 2), (99, 4)], [(101, 1), (102, 3)])
    assert b.vwap(BID, 1) == 101.0                          # buying walks the asks
    assert b.vwap(BID, 4) == pytest.approx((101 * 1 + 102 * 3) / 4)
    assert math.isnan(b.vwap(BID, 5))                       # not deep enough
    assert b.vwap(2, 3) == pytest.approx((100 * 2 + 99 * 1) / 3)
    assert math.isnan(b.vwap(BID, 0))
    assert b.imbalance(1) == pytest.approx((2 - 1) / 3)
    assert b.imbalance(2) == pytest.approx((6 - 4) / 10)
    assert b.microprice() == pytest.approx((100 * 1 + 101 * 2) / 3)
    e = L2Book(4)
    assert math.isnan(e.microprice()) and math.isnan(e.imbalance(1)) and e.spread_ticks() is None
    assert e.best() == (0, 0, 0, 0) and e.state() == 0


def test_top_into_and_row():
    b = make([(100 - i, i + 1) for i in range(30)], [(101 + i, i + 1) for i in range(5)])
    bp_, bq, ap, aq = (np.zeros(3, np.int64) for _ in range(4))
    assert b.top_into(bp_, bq, ap, aq) == (3, 3)
    assert list(bp_) == [100, 99, 98] and list(aq) == [1, 2, 3]
    row = np.zeros(1, BOOK_ROW)
    b.bind_row(row)
    b.write_row(7, 2, 11, 12, 13, 14)
    r = row[0]
    assert (r["instrument"], r["status"], r["md_seq"], r["update_id"], r["venue_ts"], r["local_ts"]) == (7, 2, 11, 12, 13, 14)
    assert r["n_bids"] == BOOK_DEPTH and r["n_asks"] == 5
    assert list(r["bid_px"][:3]) == [100, 99, 98] and r["bid_px"][BOOK_DEPTH - 1] == 81
    assert list(r["ask_px"][:6]) == [101, 102, 103, 104, 105, 0]
    assert r["publish_mono"] > 0


def test_emit_event_fields():
    b = make([(100, 2)], [(101, 1)])
    ev = np.zeros(1, MARKET_EVENT)
    b.bind_events(ev)
    b.emit(0, MdKind.STATUS, 9, 3, 1, 3, 77, 88, 99)
    e = ev[0]
    assert (e["md_seq"], e["kind"], e["instrument"], e["venue"], e["status"], e["update_id"]) == (9, 3, 3, 1, 3, 77)
    assert (e["venue_ts"], e["local_ts"], e["bid_px"], e["bid_qty"], e["ask_px"], e["ask_qty"]) == (88, 99, 100, 2, 101, 1)
    assert b.top_changed()          # a STATUS event does not count as publishing the top
    with pytest.raises(IndexError):
        b.emit(1, MdKind.STATUS, 1, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        b.emit(0, MdKind.TRADE, 1, 0, 0, 0, 0, 0, 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        L2Book(0)
    b = L2Book(4)
    with pytest.raises(ValueError):
        b.set_level(3, 1, 1)
    with pytest.raises(ValueError):
        b.set_level(BID, 0, 1)
    with pytest.raises(ValueError):
        b.apply_diff([1, 2], [1], [], [])
    with pytest.raises(TypeError):
        b.bind_row(np.zeros(1, MARKET_EVENT))
    with pytest.raises(TypeError):
        b.bind_input(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(RuntimeError):
        b.write_row(0, 0, 0, 0, 0, 0)
    arrs = [np.zeros(4, np.int64) for _ in range(4)]
    b.bind_input(*arrs)
    with pytest.raises(IndexError):
        b.apply_bound(5, 0)
