"""Synthetic market: deterministic, realistic-looking, and wire-consistent (Binance USD-M frames)."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace

import pytest

from mmshm.instruments import InstrumentTable
from mmshm.venues.synthetic import ASK, BID, CALM, VOLATILE, SyntheticConfig, SyntheticMarket

STEP = 50_000_000  # 50 ms


def run(market: SyntheticMarket, seconds: float) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(int(seconds * 1e9 / STEP)):
        out.extend(market.step(STEP))
    return out


def test_same_seed_gives_identical_frames_and_snapshots() -> None:
    a, b = SyntheticMarket("BTCUSDT", seed=42), SyntheticMarket("BTCUSDT", seed=42)
    fa, fb = run(a, 20), run(b, 20)
    assert len(fa) > 500
    assert fa == fb
    assert a.snapshot() == b.snapshot()
    c = SyntheticMarket("BTCUSDT", seed=43)
    assert run(c, 20) != fa


def test_frames_are_binance_shaped_and_update_ids_chain() -> None:
    m = SyntheticMarket("BTCUSDT", seed=7)
    snap = json.loads(m.snapshot())
    book = {"b": {p: q for p, q in snap["bids"]}, "a": {p: q for p, q in snap["asks"]}}
    last_u = snap["lastUpdateId"]
    kinds: dict[str, int] = defaultdict(int)
    tickers_checked = 0
    for raw in run(m, 30):
        msg = json.loads(raw)
        stream, data = msg["stream"], msg["data"]
        assert set(msg) == {"stream", "data"} and data["s"] == "BTCUSDT"
        kinds[stream] += 1
        if stream == "btcusdt@depth@0ms":
            assert data["e"] == "depthUpdate"
            assert data["pu"] == last_u and data["U"] > last_u and data["u"] >= data["U"]
            last_u = data["u"]
            for side in ("b", "a"):
                for p, q in data[side]:
                    if float(q) == 0:
                        book[side].pop(p, None)
                    else:
                        book[side][p] = q
        elif stream == "btcusdt@bookTicker":
            assert data["u"] == last_u  # a ticker always follows the diff that moved the top
            best_b = max(book["b"], key=float)
            best_a = min(book["a"], key=float)
            assert (data["b"], data["B"], data["a"], data["A"]) == (best_b, book["b"][best_b], best_a, book["a"][best_a])
            tickers_checked += 1
        elif stream == "btcusdt@trade":
            assert data["e"] == "trade" and float(data["q"]) > 0 and isinstance(data["m"], bool)
        elif stream == "btcusdt@aggTrade":
            assert data["e"] == "aggTrade" and data["l"] >= data["f"]
        else:  # pragma: no cover
            pytest.fail(f"unexpected stream {stream}")
    assert tickers_checked > 50 and kinds["btcusdt@trade"] > 50 and kinds["btcusdt@aggTrade"] > 50
    # The book rebuilt from snapshot + diffs equals the market's own exact book.
    cfg = m.config
    assert book["b"] == {cfg.price_str(p): cfg.qty_str(q) for p, q in m.book.bids.items()}
    assert book["a"] == {cfg.price_str(p): cfg.qty_str(q) for p, q in m.book.asks.items()}
    assert json.loads(m.snapshot())["lastUpdateId"] == last_u == m.last_update_id


def test_aggtrades_sum_the_trades_they_aggregate() -> None:
    m = SyntheticMarket("BTCUSDT", seed=3)
    trades, aggs = {}, []
    for raw in run(m, 20):
        d = json.loads(raw)["data"]
        if d["e"] == "trade":
            trades[d["t"]] = (d["p"], round(float(d["q"]) * 1000), d["m"])
        elif d["e"] == "aggTrade":
            aggs.append(d)
    assert aggs
    for a in aggs:
        parts = [trades[t] for t in range(a["f"], a["l"] + 1)]
        assert all(p == a["p"] and mk == a["m"] for p, _, mk in parts)
        assert sum(q for _, q, _ in parts) == round(float(a["q"]) * 1000)


def test_book_is_realistic_spread_depth_never_crossed() -> None:
    m = SyntheticMarket("BTCUSDT", seed=11)
    spreads = []
    depth_sum = [0] * 30
    samples = 0
    for _ in range(3000):  # 150 s
        m.step(STEP)
        bb, ba = m.book.best_bid, m.book.best_ask
        assert 0 < bb < ba
        spreads.append(ba - bb)
        bids = m.book.levels(BID, 30)
        asks = m.book.levels(ASK, 30)
        for levels, best, sign in ((bids, bb, -1), (asks, ba, 1)):
            for px, qty in levels:
                d = (px - best) * sign
                if d < 30:
                    depth_sum[d] += qty
        samples += 1
    one_tick = sum(1 for s in spreads if s == 1) / len(spreads)
    assert one_tick > 0.8, f"spread one tick only {one_tick:.2%} of the time"
    assert max(spreads) < 100
    near, far = sum(depth_sum[0:5]) / 5, sum(depth_sum[20:30]) / 10
    assert far > 1.5 * near, "quantity should grow with distance from the top"


def test_regimes_switch_and_volatile_moves_more() -> None:
    cfg = SyntheticConfig(regimes=(replace(CALM, mean_dwell_s=20.0), replace(VOLATILE, mean_dwell_s=10.0)))
    m = SyntheticMarket("BTCUSDT", seed=5, config=cfg)
    moves: dict[str, list[int]] = {"calm": [], "volatile": []}
    prev = m.book.mid_ticks2()
    for _ in range(600):  # 600 s in 1 s steps
        regime = m.regime
        m.step(1_000_000_000)
        mid = m.book.mid_ticks2()
        if m.regime == regime:
            moves[regime].append(abs(mid - prev))
        prev = mid
    assert m.regime_changes >= 4
    assert len(moves["calm"]) > 30 and len(moves["volatile"]) > 30
    calm = sum(moves["calm"]) / len(moves["calm"])
    vol = sum(moves["volatile"]) / len(moves["volatile"])
    assert vol > 2 * calm, (calm, vol)


def test_exchange_info_builds_the_instrument_table() -> None:
    m = SyntheticMarket("BTCUSDT", seed=1)
    table = InstrumentTable.from_binance_exchange_info(json.dumps(m.exchange_info()), ["BTCUSDT"])
    spec = table[0]
    assert (spec.tick, spec.lot) == ("0.1", "0.001")
    assert spec.price_to_ticks(m.config.price_str(m.book.best_bid)) == m.book.best_bid
    eth = SyntheticMarket("ETHUSDT", seed=1, tick_size="0.01", start_price="3000.00", base_asset="ETH")
    spec = InstrumentTable.from_binance_exchange_info(eth.exchange_info(), ["ETHUSDT"])[0]
    assert spec.tick == "0.01" and spec.price_to_ticks("3000.00") == eth.book.best_bid


def test_snapshot_limit_and_rejects_bad_config() -> None:
    m = SyntheticMarket("BTCUSDT", seed=1)
    snap = json.loads(m.snapshot(limit=5))
    assert len(snap["bids"]) == 5 and len(snap["asks"]) == 5
    assert float(snap["bids"][0][0]) < float(snap["asks"][0][0])
    with pytest.raises(ValueError):
        SyntheticConfig(start_price="60000.05")  # off the 0.10 grid
    with pytest.raises(ValueError):
        m.step(-1)
