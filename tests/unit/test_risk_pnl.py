"""Positions, PnL and fees on hand-computed examples; dedup; margin; the Kelly max position."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mmshm.records import FEE_SCALE, ORDER_EVENT, OrderEventKind, Side
from mmshm.risk import InstrumentRisk, RiskEngine, RiskParams, SimClock
from mmshm.risk.limits import kelly_max_position, scaled
from mmshm.risk.pnl import InstrumentPosition

BUY, SELL = Side.BUY, Side.SELL
# BTCUSDT-like: tick 0.1 USDT, lot 0.001 BTC -> one tick on one lot = 0.0001 USDT = 10_000 FEE units
BTC = Fraction(10_000)


def test_round_trip_long_exact() -> None:
    p = InstrumentPosition(0, BTC)
    # buy 3 lots at 600000 ticks (60000.0 USDT), buy 1 at 600100, sell 2 at 600500, fee 5 units each
    p.apply(BUY, 600_000, 3, 5)
    p.apply(BUY, 600_100, 1, 5)
    assert p.position == 4 and p.avg_entry == Fraction(600_000 * 3 + 600_100, 4)   # 600025
    r = p.apply(SELL, 600_500, 2, 5)
    assert r == (600_500 - 600_025) * 2 * BTC == 9_500_000     # 0.095 USDT
    assert p.position == 2 and p.avg_entry == 600_025
    assert p.fees == 15 and p.net_realized() == 9_500_000 - 15
    p.mark = Fraction(600_000)
    assert p.unrealized() == (600_000 - 600_025) * 2 * BTC == -500_000


def test_flip_short_to_long_realizes_only_the_closed_part() -> None:
    p = InstrumentPosition(0, BTC)
    p.apply(SELL, 1000, 2, 0)
    r = p.apply(BUY, 990, 5, 0)           # closes 2 (+10 ticks each), opens 3 long at 990
    assert r == 10 * 2 * BTC
    assert p.position == 3 and p.avg_entry == 990


def test_rebates_are_negative_fees() -> None:
    p = InstrumentPosition(0, BTC)
    p.apply(BUY, 1000, 1, -20)
    assert p.fees == -20 and p.net_realized() == 20


def test_invalid_fill_is_refused() -> None:
    with pytest.raises(ValueError):
        InstrumentPosition(0, BTC).apply(BUY, 1000, 0, 0)


def _engine(**kw) -> tuple[RiskEngine, SimClock]:
    clock = SimClock()
    inst = InstrumentRisk(0, "BTCUSDT", BTC, leverage=5, maint_margin_rate=0.004, max_position=50, max_order_qty=5)
    return RiskEngine(RiskParams(**kw), [inst], clock), clock


def _fill_event(side, px, qty, fee, cid, tid) -> np.void:
    ev = np.zeros(1, ORDER_EVENT)[0]
    ev["kind"], ev["side"], ev["instrument"] = OrderEventKind.FILL, side, 0
    ev["fill_px"], ev["fill_qty"], ev["fee"], ev["client_id"], ev["trade_id"] = px, qty, fee, cid, tid
    return ev


def test_engine_dedups_fills_by_client_and_trade_id() -> None:
    eng, _ = _engine()
    assert eng.on_order_event(_fill_event(BUY, 600_000, 2, 10, 7, 100)) is not None
    assert eng.on_order_event(_fill_event(BUY, 600_000, 2, 10, 7, 100)) is None
    assert eng.on_order_event(_fill_event(BUY, 600_000, 1, 10, 7, 101)) is not None
    assert eng.positions[0].position == 3 and eng.positions.duplicates == 1
    assert eng.drops["fill_duplicate"] == 1


def test_engine_equity_margin_and_status() -> None:
    eng, _ = _engine(initial_equity=1_000 * FEE_SCALE)
    eng.on_book(0, 599_999, 600_001)              # mark 600000 = 60000 USDT
    eng.on_fill(0, BUY, 600_000, 10, 1_200_000, 1, 1)    # 0.01 BTC, fee 0.012 USDT
    eng.evaluate()
    # notional 600 USDT; initial margin 120 USDT; equity 1000 - 0.012
    assert eng.equity() == 1_000 * FEE_SCALE - 1_200_000
    assert eng.metrics.margin_utilisation == pytest.approx(120 / (1000 - 0.012))
    assert eng.metrics.maintenance_ratio == pytest.approx(600 * 0.004 / (1000 - 0.012))
    s = eng.snapshot()
    assert s["positions"] == {"BTCUSDT": 10} and s["pnl"] == pytest.approx(-0.012) and s["mode"] == "NORMAL"
    eng.on_book(0, 600_999, 601_001)             # +1000 ticks = +0.1 USDT per lot, x10 lots = 1 USDT
    eng.evaluate()
    assert eng.snapshot()["pnl"] == pytest.approx(1.0 - 0.012)


def test_daily_pnl_resets_at_utc_midnight() -> None:
    eng, clock = _engine(initial_equity=1_000 * FEE_SCALE)
    eng.on_book(0, 599_999, 600_001)
    eng.on_fill(0, BUY, 600_000, 1, 0, 1, 1)
    eng.on_book(0, 599_899, 599_901)
    eng.evaluate()
    assert eng.snapshot()["daily_pnl"] == pytest.approx(-0.01)
    clock.advance(86_400)
    eng.on_book(0, 599_899, 599_901)
    eng.evaluate()
    assert eng.snapshot()["daily_pnl"] == 0.0


def test_kelly_max_position_formula() -> None:
    inst = InstrumentRisk(0, "X", BTC, leverage=2, max_position=0, kelly_fraction=0.5)
    # equity 1000 USDT, price 60000 USDT per BTC = 60 USDT per lot -> 1000 / (2 * 60) * 0.5 = 4.17 -> 4
    assert kelly_max_position(1_000 * FEE_SCALE, inst, 600_000) == 4
    assert kelly_max_position(1_000 * FEE_SCALE, inst, None) == 0


def test_scaled_limits() -> None:
    assert scaled(10, 5_000) == 5 and scaled(1, 5_000) == 1 and scaled(0, 5_000) == 0 and scaled(7, 10_000) == 7


def test_control_rows_carry_effective_limits_and_position() -> None:
    eng, _ = _engine()
    eng.on_book(0, 599_999, 600_001)
    eng.on_fill(0, SELL, 600_000, 3, 0, 1, 1)
    eng.evaluate()
    rows = eng.control_rows()
    assert len(rows) == 2
    assert rows[1]["max_position"] == 50 and rows[1]["max_order_qty"] == 5 and rows[1]["position"] == -3
    assert rows[0]["limit_scale_bp"] == 10_000 and rows[0]["mode"] == 0


def test_reconcile_adopts_the_venue_position_without_pnl() -> None:
    eng, _ = _engine()
    eng.reconcile_position(0, -4, 600_000)
    eng.on_book(0, 599_999, 600_001)
    assert eng.positions[0].position == -4 and eng.positions.realized_net() == 0
    assert eng.positions.unrealized() == 0
    r = eng.on_fill(0, BUY, 599_000, 4, 0, 1, 1)       # buy back 1000 ticks lower: +0.4 USDT
    assert r.realized == 1000 * 4 * 10_000 and eng.positions[0].position == 0


def test_instrument_risk_from_instrument_row_is_exact() -> None:
    from mmshm.records import INSTRUMENT_ROW
    row = np.zeros(1, INSTRUMENT_ROW)[0]
    row["instrument"], row["symbol"] = 2, b"BTCUSDT"
    row["tick_mantissa"], row["price_exp"] = 1, -1
    row["lot_mantissa"], row["qty_exp"] = 1, -3
    ir = InstrumentRisk.from_instrument_row(row, leverage=3.0)
    assert ir.index == 2 and ir.symbol == "BTCUSDT" and ir.quote_per_tick_lot == BTC and ir.leverage == 3.0
