"""The matching core: queue position, partial fills, moves through, taking, GTX, STP, FOK."""
from __future__ import annotations

import pytest

from mmshm._native import matching as M
from mmshm._native.matching import MatchingCore

BUY, SELL = M.BUY, M.SELL
FILL, STPC = M.EV_FILL_KIND, M.EV_STP_CANCEL_KIND


def book(bids=((1000, 10),), asks=((1001, 10),)) -> MatchingCore:
    m = MatchingCore(64, 64)
    for px, q in bids:
        m.set_level(BUY, px, q)
    for px, q in asks:
        m.set_level(SELL, px, q)
    return m


def fills(m):
    return [(e[1], e[2], e[3], e[4]) for e in m.events() if e[0] == FILL]


def test_joins_behind_displayed_queue_and_trades_consume_it_first():
    m = book()
    assert m.submit(1, BUY, 1000, 4, acct=1) == M.RESTING
    assert m.order(1)[3] == 10                       # 10 lots ahead
    m.trade(1000, 6, SELL)
    assert fills(m) == [] and m.order(1)[3] == 4
    m.trade(1000, 6, SELL)                           # 4 ahead, then 2 for us
    assert fills(m) == [(1, 1000, 2, 1)]
    assert m.order(1)[2] == 2 and m.order(1)[3] == 0
    m.trade(1000, 5, SELL)
    assert fills(m) == [(1, 1000, 2, 1)]
    assert m.order(1) is None


def test_cancels_ahead_shrink_queue_adds_go_behind():
    m = book()
    m.submit(1, BUY, 1000, 4, acct=1)
    m.set_level(BUY, 1000, 30)                       # added behind us
    assert m.order(1)[3] == 10
    m.set_level(BUY, 1000, 3)                        # cancels: at most 3 can be ahead now
    assert m.order(1)[3] == 3


def test_two_own_orders_keep_time_priority():
    m = book()
    m.submit(1, BUY, 1000, 4, acct=1)
    m.submit(2, BUY, 1000, 4, acct=2)
    m.trade(1000, 16, SELL)                          # 10 ahead, 4 to #1, 2 to #2
    assert fills(m) == [(1, 1000, 4, 1), (2, 1000, 2, 1)]
    assert m.order(2)[2] == 2


def test_trade_through_price_fills_fully():
    m = book(bids=((1000, 10), (999, 5)))
    m.submit(1, BUY, 1000, 4, acct=1)
    m.trade(999, 1, SELL)
    assert fills(m) == [(1, 1000, 4, 1)]


def test_book_moving_through_order_fills_it_at_its_price():
    m = book()
    m.submit(1, SELL, 1001, 3, acct=1)
    m.set_level(BUY, 1002, 1)                        # a bid above our ask: we were lifted
    assert fills(m) == [(1, 1001, 3, 1)]
    assert m.order(1) is None


def test_aggressive_order_takes_book_then_rests():
    m = book(asks=((1001, 2), (1002, 3)))
    assert m.submit(1, BUY, 1002, 7, acct=1) == M.RESTING
    assert fills(m) == [(1, 1001, 2, 0), (1, 1002, 3, 0)]
    assert m.last_filled == 5
    assert m.order(1)[1:3] == (1002, 2)
    assert m.best(SELL) is None


def test_ioc_market_and_fok():
    m = book(asks=((1001, 2),))
    assert m.submit(1, BUY, 1001, 5, acct=1, tif=M.IOC) == M.EXPIRED
    assert fills(m) == [(1, 1001, 2, 0)]
    m = book(asks=((1001, 2),))
    assert m.submit(2, BUY, 1001, 5, acct=1, tif=M.FOK) == M.EXPIRED
    assert fills(m) == [] and m.best(SELL) == (1001, 2)
    assert m.submit(3, BUY, 0, 1, acct=1, market=True) == M.FILLED


def test_gtx_crossing_is_refused_without_change():
    m = book()
    assert m.submit(1, BUY, 1001, 1, acct=1, tif=M.GTX) == M.GTX_REJECT
    assert m.events() == [] and m.order(1) is None and m.best(SELL) == (1001, 10)
    assert m.submit(2, BUY, 1000, 1, acct=1, tif=M.GTX) == M.RESTING
    m.submit(3, SELL, 1000, 1, acct=2, tif=M.GTX)   # would hit own bid of another account
    assert m.order(3) is None


def test_own_orders_cross_between_accounts():
    m = book(bids=(), asks=())
    m.submit(1, SELL, 1005, 3, acct=1)
    assert m.submit(2, BUY, 1005, 2, acct=2) == M.FILLED
    ev = fills(m)
    assert ev == [(1, 1005, 2, 1), (2, 1005, 2, 0)]
    assert len({e[6] for e in m.events()}) == 1     # one match id for both sides


@pytest.mark.parametrize("mode,result,maker_left,stp_cancel", [
    ("EXPIRE_TAKER", M.STP_EXPIRED, 3, False),
    ("EXPIRE_MAKER", M.RESTING, None, True),
    ("EXPIRE_BOTH", M.STP_EXPIRED, None, True),
])
def test_self_trade_prevention(mode, result, maker_left, stp_cancel):
    m = book(bids=(), asks=())
    m.submit(1, SELL, 1005, 3, acct=1)
    assert m.submit(2, BUY, 1005, 2, acct=1, stp=M.STP_MODES[mode]) == result
    assert fills(m) == []
    assert (m.order(1)[2] if m.order(1) else None) == maker_left
    assert any(e[0] == STPC and e[1] == 1 for e in m.events()) == stp_cancel


def test_stp_none_trades_with_self():
    m = book(bids=(), asks=())
    m.submit(1, SELL, 1005, 3, acct=1)
    assert m.submit(2, BUY, 1005, 3, acct=1, stp=M.STP_MODES["NONE"]) == M.FILLED


def test_cancel_and_errors():
    m = book()
    m.submit(1, BUY, 1000, 4, acct=1)
    assert m.cancel(1) == 4 and m.cancel(1) == -1
    with pytest.raises(ValueError):
        m.submit(2, 3, 1000, 1, acct=1)
    with pytest.raises(ValueError):
        m.submit(2, BUY, 1000, 0, acct=1)
    assert m.submit(3, BUY, 999, 1, acct=1) == M.RESTING
    assert m.submit(3, BUY, 999, 1, acct=1) == M.DUPLICATE


def test_capacity_refuses_resting_orders():
    m = MatchingCore(2, 8)
    assert m.submit(1, BUY, 10, 1, acct=1) == M.RESTING
    assert m.submit(2, BUY, 10, 1, acct=1) == M.RESTING
    assert m.submit(3, BUY, 10, 1, acct=1) == M.FULL


def test_levels_sorted_and_bounded():
    m = MatchingCore(4, 3)
    for px in (5, 3, 4, 2):
        m.set_level(BUY, px, px)
    assert m.levels(BUY) == [(5, 5), (4, 4), (3, 3)]   # the worst level fell off
    m.set_level(BUY, 4, 0)
    assert m.levels(BUY) == [(5, 5), (3, 3)]


def test_taker_respects_fifo_between_displayed_and_own_orders():
    m = book(bids=(), asks=((1001, 3),))
    m.submit(1, SELL, 1001, 2, acct=1)              # behind 3 displayed
    m.set_level(SELL, 1001, 10)                      # 7 more queue behind us
    assert m.submit(2, BUY, 1001, 6, acct=2) == M.FILLED
    assert [(e[1], e[3], e[4]) for e in m.events() if e[0] == FILL] == [
        (2, 3, 0), (1, 2, 1), (2, 2, 0), (2, 1, 0)]
    assert m.best(SELL) == (1001, 6)


def test_taker_at_front_own_order_goes_first():
    m = book(bids=(), asks=())
    m.submit(1, SELL, 1001, 2, acct=1)              # first at an empty level
    m.set_level(SELL, 1001, 5)
    m.submit(2, BUY, 1001, 3, acct=2)
    assert [(e[1], e[3]) for e in m.events() if e[0] == FILL] == [(1, 2), (2, 2), (2, 1)]
