"""Each trigger of the issue's table fires AT its threshold and not below (simulated time)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mmshm.records import FEE_SCALE, ORDER_EVENT, MdStatus, Mode, OrderEventKind, Side
from mmshm.risk import (FLAG_ALERT, FLAG_PAUSED, FLAG_PULL, InstrumentRisk, RiskEngine, RiskParams,
                        SimClock, TriggerCode, TriggerSpec)
from mmshm.risk.params import Action

BUY, SELL = Side.BUY, Side.SELL
UNIT = Fraction(FEE_SCALE)     # one tick on one lot = 1 quote unit: prices read as money
EQ = 10_000 * FEE_SCALE


def make(leverage: float = 5.0, max_position: int = 1_000, **kw) -> tuple[RiskEngine, SimClock]:
    clock = SimClock()
    inst = InstrumentRisk(0, "X", UNIT, leverage=leverage, max_position=max_position, max_order_qty=10)
    eng = RiskEngine(RiskParams(initial_equity=EQ, **kw), [inst], clock)
    return eng, clock


def mark(eng: RiskEngine, px: int) -> None:
    eng.on_book(0, px - 1, px + 1, MdStatus.LIVE)


def reject(eng: RiskEngine, code: int) -> None:
    ev = np.zeros(1, ORDER_EVENT)[0]
    ev["kind"], ev["reason"] = OrderEventKind.REJECT, code
    eng.on_order_event(ev)


def ack(eng: RiskEngine) -> None:
    ev = np.zeros(1, ORDER_EVENT)[0]
    ev["kind"] = OrderEventKind.ACK
    eng.on_order_event(ev)


@pytest.mark.parametrize("loss,fires", [(50, True), (49, False), (60, True)])
def test_daily_loss_half_percent_halts(loss: int, fires: bool) -> None:
    eng, _ = make()
    mark(eng, 1000)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 1)
    mark(eng, 1000 - loss)               # unrealized -loss on 10_000 equity
    eng.evaluate()
    assert (eng.mode == Mode.HALT) is fires
    assert ("daily_loss" in [b.name for b in eng.breaches]) is fires


@pytest.mark.parametrize("drop,fires", [(240, True), (239, False)])
def test_drawdown_two_percent_halts(drop: int, fires: bool) -> None:
    eng, clock = make()
    mark(eng, 1000)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 1)
    mark(eng, 3000)                      # equity 12_000: the high-water mark
    eng.evaluate()
    clock.advance(86_400)                # a new UTC day: daily loss counts from 12_000 ...
    mark(eng, 3000)
    eng.evaluate()
    eng.p = RiskParams(initial_equity=EQ, daily_loss=TriggerSpec(0.005, Action.HALT, enabled=False))
    mark(eng, 3000 - drop)               # 2% of 12_000 = 240
    eng.evaluate()
    assert eng.metrics.drawdown == pytest.approx(drop / 12_000)
    assert (eng.mode == Mode.HALT) is fires
    assert (eng.reason == TriggerCode.DRAWDOWN) is fires


@pytest.mark.parametrize("lots,fires", [(20, True), (19, False)])
def test_position_runaway_twice_max_halts(lots: int, fires: bool) -> None:
    eng, _ = make(max_position=10)
    mark(eng, 100)
    eng.on_fill(0, SELL, 100, lots, 0, 1, 1)
    eng.evaluate()
    assert (eng.mode == Mode.HALT) is fires
    assert (eng.halts.reason == TriggerCode.POSITION_RUNAWAY) is fires


@pytest.mark.parametrize("age,fires", [(10.0, True), (9.999, False)])
def test_stale_market_data_ten_seconds_pulls(age: float, fires: bool) -> None:
    eng, clock = make()
    mark(eng, 100)
    clock.advance(age)
    eng.on_book(0, 99, 101, MdStatus.STALE)      # updates that are not LIVE do not refresh
    eng.evaluate()
    rows = eng.control_rows()
    assert bool(rows[1]["flags"] & FLAG_PULL) is fires
    assert bool(rows[1]["reason"] == TriggerCode.STALE_MD) is fires
    assert eng.mode == Mode.NORMAL               # pulling is not a halt


@pytest.mark.parametrize("severity,fires", [(1.5, True), (1.4999, False), (3.0, True)])
def test_cascade_severity_pulls(severity: float, fires: bool) -> None:
    eng, _ = make()
    mark(eng, 100)
    eng.on_signals(0, cascade=severity, imbalance=0.1)
    eng.evaluate()
    assert bool(eng.control_rows()[1]["flags"] & FLAG_PULL) is fires
    eng.on_signals(0, cascade=0.0)
    eng.evaluate()
    assert not eng.control_rows()[1]["flags"] & FLAG_PULL      # level trigger: clears with the value


@pytest.mark.parametrize("n,fires", [(2, True), (1, False)])
def test_rate_limit_errors_in_a_row_halt(n: int, fires: bool) -> None:
    eng, _ = make()
    mark(eng, 100)
    for _ in range(n):
        reject(eng, -1003)
    eng.evaluate()
    assert (eng.mode == Mode.HALT) is fires


def test_rate_limit_streak_is_broken_by_a_success() -> None:
    eng, _ = make()
    mark(eng, 100)
    reject(eng, -1015)
    ack(eng)
    reject(eng, -1015)
    eng.evaluate()
    assert eng.mode == Mode.NORMAL


@pytest.mark.parametrize("n,fires", [(5, True), (4, False)])
def test_losing_fills_in_a_row_pause_four_hours(n: int, fires: bool) -> None:
    eng, clock = make()
    mark(eng, 1000)
    tid = 0
    for _ in range(n):                   # open at 1000, close at 999: a losing closing fill
        tid += 1
        eng.on_fill(0, BUY, 1000, 1, 0, 1, tid)
        tid += 1
        eng.on_fill(0, SELL, 999, 1, 0, 1, tid)
    fired = eng.evaluate()
    assert bool(eng.control_rows()[0]["flags"] & FLAG_PAUSED) is fires
    assert (["losing_fills"] == [b.name for b in fired]) is fires
    if fires:
        clock.advance(4 * 3600 - 1)
        eng.evaluate()
        assert eng.control_rows()[0]["flags"] & FLAG_PAUSED
        clock.advance(1)
        mark(eng, 1000)
        eng.evaluate()
        assert not eng.control_rows()[0]["flags"] & FLAG_PAUSED


def test_a_winning_close_breaks_the_losing_streak() -> None:
    eng, _ = make()
    mark(eng, 1000)
    for i in range(4):
        eng.on_fill(0, BUY, 1000, 1, 0, 1, 2 * i)
        eng.on_fill(0, SELL, 999, 1, 0, 1, 2 * i + 1)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 100)
    eng.on_fill(0, SELL, 1001, 1, 0, 1, 101)
    eng.on_fill(0, BUY, 1000, 1, 0, 1, 102)
    eng.on_fill(0, SELL, 999, 1, 0, 1, 103)
    eng.evaluate()
    assert eng.counters.losing_streak == 1 and not eng.control_rows()[0]["flags"] & FLAG_PAUSED


@pytest.mark.parametrize("n,fires", [(11, True), (10, False)])
def test_error_burst_more_than_ten_per_hour_halts(n: int, fires: bool) -> None:
    eng, clock = make()
    for _ in range(n):
        eng.on_error("test")
        clock.advance(60)
    mark(eng, 100)
    eng.evaluate()
    assert (eng.mode == Mode.HALT) is fires


def test_error_burst_window_slides() -> None:
    eng, clock = make()
    for _ in range(11):
        reject(eng, -2010)               # a real reject (not rate-limit, not benign)
        clock.advance(400)               # 11 errors over 73 minutes: never 11 within an hour
    mark(eng, 100)
    eng.evaluate()
    assert eng.mode == Mode.NORMAL
    reject(eng, -5022)                   # post-only would cross: benign, not counted
    assert eng.counters.errors_total == 11


@pytest.mark.parametrize("lots,mode,flag", [
    (59, Mode.NORMAL, 0), (60, Mode.NORMAL, FLAG_ALERT), (79, Mode.NORMAL, FLAG_ALERT),
    (80, Mode.REDUCE_ONLY, FLAG_ALERT), (89, Mode.REDUCE_ONLY, FLAG_ALERT), (90, Mode.HALT, FLAG_ALERT),
])
def test_margin_utilisation_alert_reduce_halt(lots: int, mode: Mode, flag: int) -> None:
    eng, _ = make(leverage=1.0, max_position=100_000)
    mark(eng, 100)
    eng.on_fill(0, BUY, 100, lots, 0, 1, 1)   # notional = 100·lots of 10_000 equity, leverage 1
    eng.evaluate()
    assert eng.metrics.margin_utilisation == lots / 100
    assert eng.mode == mode
    assert eng.control_rows()[0]["flags"] & FLAG_ALERT == flag
