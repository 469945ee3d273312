"""Fair value, volatility, models, signals, rounding and the arrival fit, on hand-made numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mmshm.records import Side
from mmshm.strategy import fairvalue, models, rounding
from mmshm.strategy.intensity import ArrivalFitter
from mmshm.strategy.params import QuoterParams
from mmshm.strategy.signals import CascadeDetector, LeadLag, imbalance
from mmshm.strategy.volatility import EwmaVolatility

S = 1_000_000_000


def test_mid_and_microprice() -> None:
    assert fairvalue.mid(100, 102) == 101.0
    # heavy bid (9) vs light ask (1): microprice leans to the ask
    assert fairvalue.microprice(100, 9, 102, 1) == pytest.approx((100 * 1 + 102 * 9) / 10)
    assert fairvalue.microprice(100, 0, 102, 0) == 101.0


def test_volatility_of_constant_one_second_returns_is_that_return_in_bp() -> None:
    v = EwmaVolatility(half_life_s=30.0, prior_bp=7.0, warmup_s=5.0)
    assert v.sigma_bp == 7.0
    px = 100_000.0
    for i in range(100):
        v.update(px * (1.0001 if i % 2 else 1.0), i * S)   # |log return| = ln(1.0001) each second
    assert v.warm
    assert v.sigma_bp == pytest.approx(math.log(1.0001) * 1e4, rel=1e-9)


def test_volatility_returns_prior_until_warm() -> None:
    v = EwmaVolatility(30.0, 3.0, 5.0)
    v.update(100.0, 0)
    v.update(101.0, 1 * S)
    assert not v.warm and v.sigma_bp == 3.0


def test_avellaneda_stoikov_matches_the_formula() -> None:
    q, sigma, gamma, k, T = 2.0, 3.0, 0.1, 0.5, 60.0
    res, half = models.avellaneda_stoikov(q, sigma, gamma, k, T)
    assert res == pytest.approx(-q * gamma * sigma ** 2 * T)
    assert 2 * half == pytest.approx(gamma * sigma ** 2 * T + 2 / gamma * math.log(1 + gamma / k))


def test_glft_matches_gueant_closed_form() -> None:
    q, sigma, gamma, a, k, d = -1.5, 2.0, 0.05, 2.0, 0.4, 1.0
    res, half = models.glft(q, sigma, gamma, a, k, d)
    c1 = math.log(1 + gamma * d / k) / (gamma * d)
    c2 = math.sqrt(gamma * sigma ** 2 / (2 * a * d * k) * (1 + gamma * d / k) ** (k / (gamma * d) + 1))
    delta_bid = c1 + (2 * q + d) / 2 * c2
    delta_ask = c1 - (2 * q - d) / 2 * c2
    assert half - res == pytest.approx(delta_bid)     # bid = fv - (half - res)
    assert half + res == pytest.approx(delta_ask)     # ask = fv + (half + res)


def test_imbalance_top_n() -> None:
    assert imbalance([3, 1, 100], [1, 1, 0], 3, 3, 2) == pytest.approx((4 - 2) / 6)
    assert imbalance([0], [0], 1, 1, 5) == 0.0
    assert imbalance([5], [0], 1, 0, 5) == 1.0


def test_rounding_bids_down_asks_up_and_post_only() -> None:
    assert rounding.round_bid(100.9) == 100
    assert rounding.round_ask(100.1) == 101
    assert rounding.round_bid(100.0) == 100 and rounding.round_ask(100.0) == 100
    assert rounding.round_bid(float("nan")) == 0 and rounding.round_ask(float("inf")) == 0
    assert rounding.post_only_bid(105, best_ask=103) == 102
    assert rounding.post_only_ask(99, best_bid=101) == 102


def test_min_lots_from_min_notional() -> None:
    # price 1000 ticks, each tick·lot worth 10 units: 10_000 per lot; min notional 25_000 -> 3 lots
    assert rounding.min_lots(1000, 1, 25_000, 10.0) == 3
    assert rounding.min_lots(1000, 5, 25_000, 10.0) == 5
    assert rounding.pad_up(3, 0.1) == 4


def test_leadlag_points_where_the_leader_went() -> None:
    ll = LeadLag(half_life_s=30.0, max_age_ms=1000.0, max_bp=10.0)
    ll.on_reference(20_000, 20_002, 0)
    assert ll.update(100_000.0, 0) == 0.0          # first observation sets the basis
    ll.on_reference(20_010, 20_012, S // 10)       # leader up ~5 bp, we have not moved
    assert ll.update(100_000.0, S // 10) == pytest.approx(math.log(20_011 / 20_001) * 1e4, rel=1e-6)
    assert ll.update(100_000.0, 3 * S) == 0.0       # reference too old


def test_cascade_severity_rises_on_a_one_sided_sweep() -> None:
    slow = EwmaVolatility(30.0, 1.0, 5.0)
    c = CascadeDetector(2.0, 30.0, 5.0, 5.0, 3.0)
    t = 0
    for i in range(60):                  # a quiet minute: balanced flow at the touch
        t = i * S
        c.on_trade(Side.BUY if i % 2 else Side.SELL, 100_001 if i % 2 else 100_000, 1, 100_000, 100_001, t)
    quiet = c.evaluate(t, slow)
    assert quiet < 0.5
    for j in range(40):                  # a sweep: heavy selling through the bid
        t += S // 20
        bid = 100_000 - 10 * j
        c.on_trade(Side.SELL, bid - 20, 10, bid, bid + 1, t)
    assert c.evaluate(t, slow) > 1.5
    assert c.c_through > 0 and c.c_flow > 0


def test_arrival_fit_recovers_a_and_k() -> None:
    rng = np.random.default_rng(7)
    a_true, k_true = 2.0, 0.8
    fit = ArrivalFitter(bucket_bp=0.5, buckets=20, half_life_s=1e6, min_count=5)
    t = 0
    n = 4000
    for _ in range(n):                   # trades at distance ~ Exp(k) with total rate A
        t += int(rng.exponential(1.0 / a_true) * S)
        fit.add_trade(float(rng.exponential(1.0 / k_true)), t)
    a, k = fit.fit(t)
    assert k == pytest.approx(k_true, rel=0.15)
    assert a == pytest.approx(a_true, rel=0.25)


def test_arrival_fit_refuses_thin_windows() -> None:
    fit = ArrivalFitter()
    assert fit.fit(0) is None
    fit.add_trade(0.1, 1)
    fit.add_trade(-1.0, 2)
    assert fit.fit(S) is None and fit.dropped == 1


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="levels"):
        QuoterParams(levels=9)
    with pytest.raises(ValueError, match="gamma"):
        QuoterParams(gamma=0.0)
    with pytest.raises(ValueError, match="min_half_spread_bp"):
        QuoterParams(min_half_spread_bp=0.0)
    assert QuoterParams(level_sizes=(2, 3, 4)).inventory_unit == 2


def test_instrument_spec_from_instrument_row() -> None:
    from mmshm.records import INSTRUMENT_ROW
    from mmshm.strategy import InstrumentSpec
    row = np.zeros(1, INSTRUMENT_ROW)[0]
    row["tick_mantissa"], row["price_exp"] = 1, -1          # 0.1
    row["lot_mantissa"], row["qty_exp"] = 1, -3             # 0.001
    row["min_qty"], row["max_qty"], row["min_notional"] = 1, 1000, 5 * 10**8
    spec = InstrumentSpec.from_instrument_row(row)
    assert spec.quote_per_tick_lot == pytest.approx(10_000.0)
    assert (spec.min_qty, spec.max_qty, spec.min_notional) == (1, 1000, 5 * 10**8)


def test_status_line_parts() -> None:
    from mmshm.records import TARGET_ROW
    from mmshm.strategy.status import format_signals, quoted_spread_bp
    assert format_signals({"imbalance": 0.123, "leadlag_bp": 0.8, "cascade": 0.1, "sigma_bp": 2.0}) == \
        "Signals: imb=+0.12 leadlag=+0.8bps cascade=0.10 vol=2.0bps/s^0.5"
    t = np.zeros(1, TARGET_ROW)[0]
    assert quoted_spread_bp(t) is None
    t["n_bids"] = t["n_asks"] = 1
    t["bid_px"][0], t["ask_px"][0] = 9_998, 10_002
    assert quoted_spread_bp(t) == pytest.approx(4.0)
