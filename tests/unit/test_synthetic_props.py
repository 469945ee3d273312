"""Property tests: for any seed, step pattern and grid, the synthetic market's wire output
is a consistent Binance stream and its book never crosses."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmshm.venues.synthetic import SyntheticMarket


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.integers(0, 400_000_000), min_size=1, max_size=40),
       grid=st.sampled_from([("0.10", "0.001", 2, 3, "60000.00"), ("0.01", "0.001", 2, 3, "3000.00"),
                             ("0.5", "1", 1, 0, "150.0")]))
def test_stream_is_consistent_for_any_seed_and_steps(seed, steps, grid) -> None:
    tick, lot, pd, qd, start = grid
    m = SyntheticMarket("XYZUSDT", seed=seed, tick_size=tick, lot_size=lot, min_qty=lot,
                        price_decimals=pd, qty_decimals=qd, start_price=start, base_asset="XYZ")
    snap = json.loads(m.snapshot())
    book = {"b": dict(map(tuple, snap["bids"])), "a": dict(map(tuple, snap["asks"]))}
    last_u = snap["lastUpdateId"]
    tick_units = round(float(tick) * 10**pd)
    for dt in steps:
        for raw in m.step(dt):
            d = json.loads(raw)["data"]
            if d["e"] == "depthUpdate":
                assert d["pu"] == last_u < d["U"] <= d["u"]
                last_u = d["u"]
                for side in ("b", "a"):
                    for p, q in d[side]:
                        assert round(float(p) * 10**pd) % tick_units == 0, p
                        if float(q) == 0:
                            book[side].pop(p, None)
                        else:
                            book[side][p] = q
            elif d["e"] == "bookTicker":
                assert d["u"] == last_u and float(d["b"]) < float(d["a"])
        assert 0 < m.book.best_bid < m.book.best_ask
    assert max(map(float, book["b"])) < min(map(float, book["a"]))
    assert book["b"] == {m.config.price_str(p): m.config.qty_str(q) for p, q in m.book.bids.items()}
    assert book["a"] == {m.config.price_str(p): m.config.qty_str(q) for p, q in m.book.asks.items()}
