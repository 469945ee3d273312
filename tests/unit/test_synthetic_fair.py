"""The synthetic market's latent fair value: the mid follows it with a BTC-like volatility
(so quotes a bp or two away get reached), and it can be switched off."""
from __future__ import annotations

import math

from mmshm.venues.synthetic import SyntheticMarket
from mmshm.venues.synthetic.config import SyntheticConfig


def _mids(m: SyntheticMarket, seconds: int) -> list[tuple[float, float]]:
    out = []
    for _ in range(seconds):
        m.step(1_000_000_000)
        out.append((m.book.mid_ticks2() / 2, m.fair_ticks))
    return out


def test_mid_tracks_the_fair_value_with_btc_like_volatility():
    m = SyntheticMarket("BTCUSDT", seed=2)
    pts = _mids(m, 180)
    rets = [(b[0] - a[0]) / a[0] * 1e4 for a, b in zip(pts, pts[1:])]
    sigma = math.sqrt(sum(r * r for r in rets) / len(rets))
    assert 0.3 < sigma < 4.0, sigma                           # bp per sqrt(s): BTC is ~0.5-2
    near = sum(1 for mid, fair in pts if abs(mid - fair) / fair * 1e4 < 1.0) / len(pts)
    assert near > 0.9, near                                   # makers keep the book at the fair value
    assert m.reprices > 100
    assert m.book.best_bid < m.book.best_ask


def test_fair_value_off_keeps_the_book_dynamics_only():
    m = SyntheticMarket("BTCUSDT", seed=2, config=SyntheticConfig(fair_vol_bp=0.0))
    _mids(m, 30)
    assert m.reprices == 0
