"""Hyperliquid adapter: exact fixed point, snapshot book, events; the sample capture replays."""
from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from mmshm.records import MdKind, MdStatus, Side
from mmshm.venues import venue_id
from mmshm.venues.capture import CaptureReader
from mmshm.venues.hyperliquid.constants import instrument_spec, price_exp_for
from mmshm.venues.hyperliquid.marketdata import HyperliquidMarketData
from mmshm.venues.hyperliquid.parsing import subscription_messages

SPEC = instrument_spec("BTC")


def book_msg(bids, asks, t=1737918843542, coin="BTC") -> bytes:
    lv = lambda side: [{"px": p, "sz": s, "n": 1} for p, s in side]  # noqa: E731
    return json.dumps({"channel": "l2Book", "data": {"coin": coin, "levels": [lv(bids), lv(asks)], "time": t}}).encode()


def test_btc_grid_is_tick_1_lot_1e5_and_rules_documented() -> None:
    assert (SPEC.tick, SPEC.lot) == ("1", "0.00001")
    assert SPEC.price_to_ticks("105055.0") == 105055 and SPEC.qty_to_lots("3.03622") == 303622
    assert price_exp_for(5, 105_000) == 0      # integers always allowed above 10^4
    assert price_exp_for(5, 5_000) == -1       # 5 significant figures, at most 6-5 decimals
    assert price_exp_for(2, 150.0) == -2       # SOL-like
    assert price_exp_for(0, 0.5) == -5         # 5 sig figs of 0.5xxxx
    assert json.loads(subscription_messages("BTC")[0]) == {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}}
    assert json.loads(subscription_messages("BTC")[1])["subscription"]["type"] == "trades"


def test_sample_capture_replays(hyperliquid_capture) -> None:
    md = HyperliquidMarketData(SPEC, instrument=3)
    events = []
    tops_checked = 0
    for ns, raw in CaptureReader(hyperliquid_capture):
        ev = md.handle(raw, ns)
        events.extend(ev)
        msg = json.loads(raw)
        if msg["channel"] == "l2Book":
            bids, asks = msg["data"]["levels"]
            expect = (int(Decimal(bids[0]["px"])), int(Decimal(bids[0]["sz"]) * 100000),
                      int(Decimal(asks[0]["px"])), int(Decimal(asks[0]["sz"]) * 100000))
            assert md.best() == expect
            assert md.book.n_bids == len(bids) and md.book.n_asks == len(asks)
            tops_checked += 1
    assert md.messages == {"l2Book": 46, "trades": 9}
    assert md.snapshots == 46 and tops_checked == 46 and not md.drops
    kinds = [int(e["kind"]) for e in events]
    assert kinds[0] == MdKind.STATUS and int(events[0]["status"]) == MdStatus.LIVE
    trades = [e for e in events if e["kind"] == MdKind.TRADE]
    assert len(trades) == md.trades == len({int(t["trade_id"]) for t in trades}) > 9
    first = trades[0]
    assert (int(first["trade_px"]), int(first["trade_qty"]), int(first["side"])) == (105056, 219, Side.BUY)
    assert all(int(e["venue"]) == venue_id("hyperliquid") and int(e["instrument"]) == 3 for e in events)
    seqs = [int(e["md_seq"]) for e in events]
    assert seqs == list(range(1, len(events) + 1))
    tops = [e for e in events if e["kind"] == MdKind.BOOK_TOP]
    assert tops and all(int(e["bid_px"]) < int(e["ask_px"]) for e in tops)
    assert all(int(e["local_ts"]) > int(e["venue_ts"]) - 10**9 for e in tops)
    row = md.book_row()[0]
    assert int(row["bid_px"][0]) == md.best()[0] and int(row["status"]) == MdStatus.LIVE


def test_bad_input_is_counted_and_dropped_never_raised() -> None:
    md = HyperliquidMarketData(SPEC)
    good = book_msg([("100.0", "1.0")], [("101.0", "2.0")])
    assert len(md.handle(good, 1)) == 2   # STATUS LIVE + BOOK_TOP
    cases = {
        "json": b"{not json",
        "schema": b'{"nochannel":1}',
        "offgrid": book_msg([("100.5", "1.0")], [("101.0", "2.0")]),
        "negative": book_msg([("-100.0", "1.0")], [("101.0", "2.0")]),
        "number": book_msg([("NaN", "1.0")], [("101.0", "2.0")]),
        "overflow": book_msg([("1" + "0" * 30, "1.0")], [("101.0", "2.0")]),
        "coin": book_msg([("100.0", "1.0")], [("101.0", "2.0")], coin="ETH"),
        "order": book_msg([("100.0", "1.0"), ("100.0", "1.0")], [("101.0", "2.0")]),
        "unknown_channel": b'{"channel":"candle","data":{}}',
    }
    for reason, raw in cases.items():
        assert len(md.handle(raw, 2)) == 0, reason
        assert md.drops[reason] == 1, (reason, dict(md.drops))
    assert md.best() == (100, 100000, 101, 200000)  # untouched by the rejects
    assert len(md.handle(b'{"channel":"pong"}', 3)) == 0 and not md.drops["unknown_channel"] > 1
    bad_trade = json.dumps({"channel": "trades", "data": [{"coin": "BTC", "px": "100.0", "sz": "0.1", "side": "X",
                                                           "tid": 1, "time": 1}]}).encode()
    assert len(md.handle(bad_trade, 4)) == 0 and md.drops["schema"] == 2


def test_crossed_snapshot_is_stale_then_live_again_and_duplicates_dropped() -> None:
    md = HyperliquidMarketData(SPEC)
    md.handle(book_msg([("100.0", "1.0")], [("101.0", "2.0")], t=1), 1)
    ev = md.handle(book_msg([("102.0", "1.0")], [("101.0", "2.0")], t=2), 2)
    assert [(int(e["kind"]), int(e["status"])) for e in ev] == [(MdKind.STATUS, MdStatus.STALE)]
    ev = md.handle(book_msg([("100.0", "1.0")], [("101.0", "3.0")], t=3), 3)
    assert [int(e["kind"]) for e in ev] == [MdKind.STATUS, MdKind.BOOK_TOP] and int(ev[1]["ask_qty"]) == 300000
    # Same top again: no event. Older snapshot: dropped.
    assert len(md.handle(book_msg([("100.0", "1.0")], [("101.0", "3.0")], t=4), 4)) == 0
    assert len(md.handle(book_msg([("99.0", "1.0")], [("101.0", "3.0")], t=1), 5)) == 0
    assert md.drops["stale_snapshot"] == 1
    tr = json.dumps({"channel": "trades", "data": [{"coin": "BTC", "px": "101.0", "sz": "0.5", "side": "A",
                                                    "tid": 77, "time": 5}]}).encode()
    ev = md.handle(tr, 6)
    assert len(ev) == 1 and int(ev[0]["side"]) == Side.SELL and int(ev[0]["trade_qty"]) == 50000
    assert int(ev[0]["venue_ts"]) == 5_000_000
    assert len(md.handle(tr, 7)) == 0 and md.duplicate_trades == 1
    ev = md.mark_stale(8)
    assert int(ev[0]["status"]) == MdStatus.STALE and len(md.mark_stale(9)) == 0
    ev = md.disconnected(10)
    assert int(ev[0]["status"]) == MdStatus.DISCONNECTED
    assert isinstance(ev, np.ndarray)


def test_book_keeps_a_bounded_number_of_levels() -> None:
    md = HyperliquidMarketData(SPEC, levels=3)
    bids = [(f"{100 - i}.0", "1.0") for i in range(5)]
    asks = [(f"{101 + i}.0", "1.0") for i in range(5)]
    md.handle(book_msg(bids, asks), 1)
    assert md.book.n_bids == 3 and md.book.truncated == 4
    assert list(md.book.side(1)[0]) == [100, 99, 98]


def test_rejects_a_non_hyperliquid_spec() -> None:
    from mmshm.instruments import InstrumentSpec

    with pytest.raises(ValueError):
        HyperliquidMarketData(InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001"))
