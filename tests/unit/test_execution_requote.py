"""Requote discipline: per-level price tolerance (bp + distance) and the per-instrument
place/amend budget of the session (cancels never wait)."""
from __future__ import annotations

import asyncio

from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.diff import diff, level_tolerance, row_mid2
from mmshm.execution.orders import Order
from mmshm.execution.session import ExecutionSession, SessionConfig
from mmshm.instruments import InstrumentSpec
from mmshm.records import OrderStatus as S, Side
from mmshm.venues.binance_usdm.trading import ExchangeEnv, InstrumentIndex
from rows import target_row

MID = 600_000          # 60000.0 at tick 0.1: 1 bp = 60 ticks


def row(bids=(), asks=(), flags=0, inst=0):
    return target_row(bids, asks, flags=flags, md_seq=7, instrument=inst)


def order(cid, side, px, qty=1):
    return Order(cid, 0, 0, side, px, qty, status=S.NEW)


def test_level_tolerance_scales_with_price_and_distance():
    assert level_tolerance(MID, 0, px_tol=3) == 3
    assert level_tolerance(MID, 0, tol_bp=0.25) == 15                       # 0.25 bp of 60000
    # 4 bp from the mid with 25 %: 1 bp = 60 ticks, more than the bp floor
    assert level_tolerance(MID - 240, 2 * MID, tol_bp=0.25, tol_frac=0.25) == 60
    assert level_tolerance(MID - 60, 2 * MID, tol_bp=0.25, tol_frac=0.25) == 15
    assert row_mid2(row([(MID - 60, 1)], [(MID + 60, 1)])) == 2 * MID
    assert row_mid2(row([(MID - 60, 1)])) == 2 * (MID - 60) and row_mid2(row()) == 0


def test_small_moves_leave_orders_alone_far_levels_tolerate_more():
    bids = [(MID - 60, 1), (MID - 240, 1)]
    asks = [(MID + 60, 1), (MID + 240, 1)]
    w = [order("b0", Side.BUY, MID - 60 + 10), order("b1", Side.BUY, MID - 240 - 50),
         order("a0", Side.SELL, MID + 60 - 14), order("a1", Side.SELL, MID + 240 + 59)]
    assert not diff(row(bids, asks), w, tol_bp=0.25, tol_frac=0.25)
    assert len(diff(row(bids, asks), w).amends) == 4                       # no tolerance: all chase
    # level 0 moved 20 ticks (> its 15-tick tolerance): only it is amended
    w[0] = order("b0", Side.BUY, MID - 60 - 20)
    a = diff(row(bids, asks), w, tol_bp=0.25, tol_frac=0.25)
    assert [x.client_id for x in a.amends] == ["b0"] and not a.places and not a.cancels


def _session(rate, burst):
    spec = InstrumentSpec.from_decimals("BTCUSDT", "sim", "0.1", "0.001")
    s = ExecutionSession(None, InstrumentIndex([spec]), ClientIdGenerator("mm"), lambda rec: True,
                         mode=ExchangeEnv.OBSERVE, config=SessionConfig(requote_rate=rate, requote_burst=burst))
    return s


def test_requote_budget_keeps_levels_nearest_the_touch_and_refills():
    s = _session(rate=2.0, burst=4)
    r = row([(MID - 60 * k, 1) for k in (1, 2, 3)], [(MID + 60 * k, 1) for k in (1, 2, 3)])
    acts = asyncio.run(s.on_targets(r, seen_mono=1_000_000_000))
    prices = sorted(p.price for p in acts.places)
    assert prices == [MID - 120, MID - 60, MID + 60, MID + 120]          # the two best of each side
    assert s.counters["requote_deferred"] == 2
    assert not asyncio.run(s.on_targets(r, seen_mono=1_100_000_000))    # 0.1 s x 2/s: no whole token
    assert len(asyncio.run(s.on_targets(r, seen_mono=2_000_000_000)).places) == 2   # 1 s later: 2 tokens


def test_pull_is_never_budgeted():
    s = _session(rate=0.001, burst=1)
    acts = asyncio.run(s.on_targets(row(flags=1), seen_mono=1))
    assert s.counters["requote_deferred"] == 0
    assert not acts.places and not acts.amends


def test_cancel_all_waits_for_a_breaker_that_reopens_soon():
    """A breaker opened by a reject burst just before a halt: cancel-all waits its short
    reopen time instead of failing (and the caller retrying a second later)."""
    from mmshm.execution.breaker import CircuitBreaker, Failure
    from mmshm.execution.cancel_all import cancel_all

    class Venue:
        def __init__(self):
            self.breaker = CircuitBreaker(failure_threshold=1, base_ns=40_000_000, cap_ns=40_000_000)
            self.open = ["a", "b"]

        async def open_orders(self, sym):
            self.breaker.check()
            self.breaker.record_success()
            return [type("O", (), {"client_id": c, "venue_order_id": 0, "symbol": sym})() for c in self.open]

        async def cancel_all_open(self, sym):
            self.breaker.check()
            self.open = []

        async def cancel(self, sym, cid, vid):
            self.breaker.check()

    v = Venue()
    v.breaker.record_failure(Failure.TIMEOUT)
    assert v.breaker.retry_in_ns() > 0
    rep = asyncio.run(cancel_all(v, ["BTCUSDT"], deadline_s=2.0))
    assert rep.ok and rep.canceled == 2 and rep.method == "bulk"
