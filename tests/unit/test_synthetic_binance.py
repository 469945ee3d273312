"""The synthetic market goes through the real Binance USD-M parser and book sync unchanged."""
from __future__ import annotations

import json

from mmshm.instruments import InstrumentTable
from mmshm.records import MdKind, MdStatus
from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook
from mmshm.venues.synthetic import SyntheticMarket

STEP = 20_000_000


def test_synthetic_frames_sync_through_the_binance_book() -> None:
    m = SyntheticMarket("BTCUSDT", seed=21)
    spec = InstrumentTable.from_binance_exchange_info(m.exchange_info(), ["BTCUSDT"])[0]
    requested: list[int] = []
    book = BinanceUsdmBook(spec, 0, request_snapshot=lambda: requested.append(1))
    book.start(1)
    kinds: dict[int, int] = {}
    trades_sent = 0
    t = 10
    # Subscribe first, buffer, then take the snapshot (Binance's procedure).
    for raw in [f for _ in range(25) for f in m.step(STEP)]:
        book.on_frame(raw, t)
        t += 1
    assert requested and not book.in_sync
    book.on_snapshot(m.snapshot(), t)
    for _ in range(1500):  # 30 s
        for raw in m.step(STEP):
            # @trade and @aggTrade both become TRADE events (a feed subscribes to one of them).
            trades_sent += raw.startswith((b'{"stream":"btcusdt@trade"', b'{"stream":"btcusdt@aggTrade"'))
            n = book.on_frame(raw, t)
            t += 1
            for ev in book.events[:n]:
                kinds[int(ev["kind"])] = kinds.get(int(ev["kind"]), 0) + 1
        # After each step the parsed book equals the market's own exact book at the top.
        assert book.in_sync
        assert book.book.best() == (m.book.best_bid, m.book.bids[m.book.best_bid],
                                    m.book.best_ask, m.book.asks[m.book.best_ask])
    counters = book.all_counters()
    assert book.in_sync and book.status == MdStatus.LIVE
    assert book.last_update_id == m.last_update_id
    assert not {k: v for k, v in counters.items() if k.startswith("drop_") and v}, counters
    assert counters.get("gaps", 0) == 0 and counters.get("resyncs", 0) == 0
    assert kinds.get(MdKind.TRADE, 0) == trades_sent > 100
    assert kinds.get(MdKind.BOOK_TOP, 0) > 100
    bids, _ = book.book.side_levels(1)
    assert list(bids) == sorted(m.book.bids, reverse=True)[: len(bids)]
    assert json.loads(m.snapshot(5))["lastUpdateId"] == book.last_update_id
