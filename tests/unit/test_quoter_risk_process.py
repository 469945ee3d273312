"""Pieces of the quoter and risk process wiring that need no second process: segment
waiting, instrument selection, fixed-point counters, the signals table, the venue
position report, the watchdog hold and the persisted halt state."""
from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from mmshm.instruments import InstrumentSpec
from mmshm.records import FEE_SCALE, ORDER_EVENT, Mode, OrderEventKind, Side
from mmshm.risk import InstrumentRisk, RiskEngine, RiskParams, SimClock
from mmshm.risk import state as risk_state
from mmshm.risk.params import TriggerCode
from mmshm.shm import SegmentNotFound
from mmshm.strategy.process import (SegmentWaitTimeout, SignalsTable, _fixed, find_reference, select_instruments,
                                    signals_dict, wait_attach)


def _engine(clock=None, **kw) -> RiskEngine:
    return RiskEngine(RiskParams(**kw), [InstrumentRisk(0, "BTCUSDT", Fraction(FEE_SCALE // 10_000),
                                                        max_position=100)], clock or SimClock())


def test_wait_attach_retries_then_times_out() -> None:
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise SegmentNotFound("not yet")
        return "seg"

    assert wait_attach(flaky, "x", timeout_s=5, sleep=lambda s: None) == "seg" and len(calls) == 3

    def never():
        raise SegmentNotFound("/mmshm-i-md")

    with pytest.raises(SegmentWaitTimeout, match="md did not appear"):
        wait_attach(never, "md", timeout_s=0.05, poll_s=0.01)


def test_select_instruments_prefers_the_configured_venue() -> None:
    specs = [InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001"),
             InstrumentSpec.from_decimals("BTCUSDT", "sim", "0.1", "0.001"),
             InstrumentSpec.from_decimals("ETHUSDT", "binance-usdm", "0.01", "0.001")]
    assert select_instruments(specs, ["BTCUSDT"], "sim") == [1]
    assert select_instruments(specs, ["ETHUSDT", "BTCUSDT"], "sim") == [2, 1]
    assert select_instruments(specs, ["BTCUSDT"], "hyperliquid") == [0]    # by symbol alone
    with pytest.raises(KeyError, match="SOLUSDT"):
        select_instruments(specs, ["SOLUSDT"], "sim")
    assert find_reference(specs, "binance-usdm:BTCUSDT") == 0
    with pytest.raises(KeyError):
        find_reference(specs, "hyperliquid:BTC")


def test_fixed_point() -> None:
    assert _fixed(0.123456789, 1e6) == 123457 and _fixed(-1.5, 1e6) == -1_500_000
    assert _fixed(math.nan, 1e6) == 0 and _fixed(math.inf, 1e6) == 0
    assert _fixed(1e300, 1e6) == (1 << 63) - 1


def test_signals_table_round_trip(instance) -> None:
    t = SignalsTable.create(instance, 2)
    r = SignalsTable.attach(instance)
    try:
        assert r.read(1) is None
        t.write(1, {"fair_value": 600_001.5, "sigma_bp": 1.2, "imbalance": -0.25, "leadlag_bp": 0.8,
                    "cascade": 0.4, "reason": 7}, md_seq=42, spread_bp=None, now_mono=123)
        row = r.read(1)
        d = signals_dict(row)
        assert int(row["md_seq"]) == 42 and int(row["updated_mono"]) == 123 and d["reason"] == 7
        assert d["fair_value"] == 600_001.5 and d["imbalance"] == -0.25 and math.isnan(d["spread_bp"])
    finally:
        r.close()
        t.close(unlink=True)


def test_position_report_from_reconcile_event() -> None:
    eng = _engine()
    ev = np.zeros(1, ORDER_EVENT)[0]
    ev["kind"], ev["side"], ev["qty"], ev["price"], ev["client_id"] = OrderEventKind.RECONCILE, Side.SELL, 7, 600_000, 0
    eng.on_order_event(ev)
    assert eng.positions[0].position == -7 and eng.positions[0].avg_entry == 600_000
    ev["side"], ev["qty"] = Side.NONE, 0
    eng.on_order_event(ev)
    assert eng.positions[0].position == 0
    ev["client_id"], ev["side"], ev["qty"] = 99, Side.BUY, 5          # an order's RECONCILE: no position change
    eng.on_order_event(ev)
    assert eng.positions[0].position == 0
    eng.on_position_report(0, Side.BUY, 3, 0)                          # long without an entry price: dropped
    eng.on_position_report(5, Side.BUY, 3, 1)
    assert eng.drops == {"position_invalid": 1, "position_unknown_instrument": 1}


def test_watchdog_hold_keeps_halt_past_reentry() -> None:
    clock = SimClock()
    eng = _engine(clock, reentry_wait_s=0.0)
    assert eng.halt(TriggerCode.WATCHDOG, manual=False)
    eng.hold_halt("quoter DEAD")
    clock.advance(1)
    eng.evaluate()                       # re-entry is due, the hold keeps HALT
    assert eng.mode == Mode.HALT and eng.reason == TriggerCode.WATCHDOG and not eng.halts.halted
    eng.hold_halt("")
    eng.evaluate()
    assert eng.mode == Mode.NORMAL


def test_halt_state_survives_a_restart(tmp_path) -> None:
    clock = SimClock()
    eng = _engine(clock)
    eng.halt()                           # manual
    eng.pause(True)
    path = tmp_path / "i" / "risk-state.json"
    risk_state.save(path, risk_state.snapshot(eng))
    fresh = _engine(clock)
    assert risk_state.restore(fresh, path)
    assert fresh.mode == Mode.HALT and fresh.halts.manual_required and fresh.halts.halts_today == 1
    assert fresh.manual_pause and fresh.control_rows()[0]["flags"] & 1
    fresh.resume()
    assert fresh.mode == Mode.NORMAL
    # absent, corrupt, foreign or incomplete files are ignored
    assert not risk_state.restore(_engine(clock), tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    for text in ("{", json.dumps({"version": 99}), json.dumps({"version": 1, "halted": True})):
        bad.write_text(text)
        e = _engine(clock)
        assert not risk_state.restore(e, bad) and e.mode == Mode.NORMAL
