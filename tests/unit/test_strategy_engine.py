"""QuoteEngine on the recorded Binance BTCUSDT capture: real book tops and trades through
the native quoter (GLFT, fitted A/k, lead-lag, cascade), every target checked."""
from __future__ import annotations

import gzip
import math
from decimal import Decimal

import numpy as np
import orjson
import pytest

from mmshm.records import BOOK_ROW, CONTROL_ROW, MARKET_EVENT, TARGET_ROW, MdKind, MdStatus, Side
from mmshm.shm import SeqlockTable
from mmshm.strategy import TARGET_FLAG_PULL, InstrumentSpec, Model, PullReason, QuoterParams
from mmshm.strategy.engine import QuoteEngine, Quoting

TICK, LOT = Decimal("0.1"), Decimal("0.001")


def _events(path, limit: int):
    """(local ns, MARKET_EVENT) from bookTicker and trade lines of the capture."""
    ev = np.zeros(1, MARKET_EVENT)[0]
    with gzip.open(path, "rt") as f:
        for n, line in enumerate(f):
            if n >= limit:
                break
            ts, raw = line.split(" ", 1)
            msg = orjson.loads(raw)
            d = msg.get("data") if isinstance(msg, dict) else None
            if not d:
                continue
            ev["publish_mono"] = int(ts)
            if d.get("e") == "bookTicker":
                ev["kind"] = MdKind.BOOK_TOP
                ev["bid_px"], ev["bid_qty"] = int(Decimal(d["b"]) / TICK), int(Decimal(d["B"]) / LOT)
                ev["ask_px"], ev["ask_qty"] = int(Decimal(d["a"]) / TICK), int(Decimal(d["A"]) / LOT)
            elif d.get("e") == "trade":
                ev["kind"] = MdKind.TRADE
                ev["side"] = Side.SELL if d["m"] else Side.BUY
                ev["trade_px"], ev["trade_qty"] = int(Decimal(d["p"]) / TICK), int(Decimal(d["q"]) / LOT)
            else:
                continue
            yield int(ts), ev


@pytest.mark.timeout(60)
def test_real_capture_through_the_engine(binance_capture, instance) -> None:
    params = QuoterParams(model=Model.GLFT, gamma=0.05, levels=3, level_sizes=(2, 2, 4),
                          leadlag_weight=0.5, max_book_age_ms=0.0)
    spec = InstrumentSpec(min_qty=1, min_notional=5 * 10**8, quote_per_tick_lot=10_000.0)  # 5 USDT min
    # instrument 1 is the reference: the same feed shifted, standing in for a leading venue
    engine = QuoteEngine([Quoting(0, params, spec, reference=1,
                                  fitter={"bucket_bp": 0.25, "min_count": 2.0})], fit_interval_s=5.0)
    books = SeqlockTable.create(instance, "book", BOOK_ROW, 2)
    control = SeqlockTable.create(instance, "control", CONTROL_ROW, 3)
    targets = SeqlockTable.create(instance, "targets", TARGET_ROW, 2)
    try:
        ctrl = np.zeros(3, CONTROL_ROW)
        ctrl[1]["max_position"], ctrl[1]["max_order_qty"] = 50, 10
        for i in range(3):
            control.write(i, ctrl[i:i + 1])
        row = np.zeros(1, BOOK_ROW)
        r0 = row[0]
        r0["status"], r0["n_bids"], r0["n_asks"] = MdStatus.LIVE, 1, 1
        quoted = pulled = seq = 0
        fits = {}
        for ts, ev in _events(binance_capture, 25_000):
            if ev["kind"] == MdKind.BOOK_TOP:
                ref = ev.copy()
                ref["instrument"] = 1
                engine.on_market_event(ref)
                seq += 1
                r0["bid_px"][0], r0["bid_qty"][0] = ev["bid_px"], ev["bid_qty"]
                r0["ask_px"][0], r0["ask_qty"][0] = ev["ask_px"], ev["ask_qty"]
                r0["md_seq"], r0["publish_mono"] = seq, ts
                books.write(0, row)
                ev["instrument"] = 0
            if engine.on_market_event(ev) == 0:
                r = engine.requote(0, books, control, targets, position=(seq % 41) - 20, now_ns=ts)
                t = targets.read(0)
                assert t["md_seq"] == seq
                if r == PullReason.NONE:
                    quoted += 1
                    nb, na = int(t["n_bids"]), int(t["n_asks"])
                    if nb and na:
                        assert t["bid_px"][0] < t["ask_px"][0]
                    assert nb == 0 or t["bid_px"][0] < ev["ask_px"]
                    assert na == 0 or t["ask_px"][0] > ev["bid_px"]
                else:
                    pulled += 1
                    assert t["flags"] & TARGET_FLAG_PULL
            fits.update(engine.maybe_fit(ts))
        sig = engine.signals()[0]
        assert quoted > 10_000 and pulled < quoted
        assert 0.05 < sig["sigma_bp"] < 50            # BTC: a few bp per sqrt(second)
        assert -1.0 <= sig["imbalance"] <= 1.0 and math.isfinite(sig["cascade"])
        assert fits and all(a > 0 and k > 0 for a, k in fits.values())
        assert sig["arrival_k"] == fits[0][1]
    finally:
        for t in (books, control, targets):
            t.unlink()
            t.close()


def test_engine_validates_its_instruments() -> None:
    p, s = QuoterParams(), InstrumentSpec()
    with pytest.raises(ValueError):
        QuoteEngine([])
    with pytest.raises(ValueError):
        QuoteEngine([Quoting(0, p, s), Quoting(0, p, s)])
    with pytest.raises(ValueError):
        QuoteEngine([Quoting(0, p, s, reference=0)])
