"""Re-entry after a halt, halts within an hour, the third halt, manual commands, post-mortems."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from mmshm.records import FEE_SCALE, MdStatus, Mode, Side
from mmshm.risk import InstrumentRisk, RiskEngine, RiskParams, SimClock, TriggerCode
from mmshm.risk.clock import DAY_NS, NS, next_utc_midnight

UNIT = Fraction(FEE_SCALE)
# 2023-11-14 22:13:20 UTC: leaves ~1.8 h to midnight (tests cross it on purpose)
START = 1_700_000_000 * NS


def make(tmp_path: Path | None = None, start: int = START) -> tuple[RiskEngine, SimClock]:
    clock = SimClock(realtime_ns=start)
    inst = InstrumentRisk(0, "X", UNIT, leverage=5, max_position=10, max_order_qty=4)
    eng = RiskEngine(RiskParams(initial_equity=10_000 * FEE_SCALE, postmortem_dir=tmp_path), [inst], clock)
    eng.on_book(0, 99, 101, MdStatus.LIVE)
    eng.evaluate()
    return eng, clock


def live(eng: RiskEngine) -> None:
    eng.on_book(0, 99, 101, MdStatus.LIVE)


def trip(eng: RiskEngine) -> None:
    """A halt from a counter trigger (rate limit): it resets itself once fired."""
    eng.counters.on_rate_limited(eng.clock.monotonic_ns())
    eng.counters.on_rate_limited(eng.clock.monotonic_ns())
    live(eng)
    fired = eng.evaluate()
    assert [b.name for b in fired] == ["rate_limit"]


def step(eng: RiskEngine, clock: SimClock, seconds: float) -> None:
    clock.advance(seconds)
    live(eng)
    eng.evaluate()


def test_reentry_after_five_minutes_at_half_limits() -> None:
    eng, clock = make()
    trip(eng)
    assert eng.mode == Mode.HALT and eng.control_rows()[1]["mode"] == Mode.HALT
    assert eng.snapshot()["kill"] == "HALT:RATE_LIMIT"
    step(eng, clock, 299)
    assert eng.mode == Mode.HALT
    step(eng, clock, 1)
    assert eng.mode == Mode.NORMAL
    rows = eng.control_rows()
    assert rows[0]["limit_scale_bp"] == 5_000
    assert rows[1]["max_position"] == 5 and rows[1]["max_order_qty"] == 2
    step(eng, clock, 3600)                 # an hour without a halt: full limits again
    rows = eng.control_rows()
    assert rows[0]["limit_scale_bp"] == 10_000 and rows[1]["max_position"] == 10


def test_halt_within_an_hour_of_reentry_stays_halted_until_next_utc_day() -> None:
    start = START - 6 * 3600 * NS              # 16:13 UTC: two halts fit before midnight
    eng, clock = make(start=start)
    trip(eng)
    step(eng, clock, 300)
    assert eng.mode == Mode.NORMAL
    step(eng, clock, 1800)                     # 30 min after re-entry
    trip(eng)
    midnight = next_utc_midnight(clock.realtime_ns())
    assert eng.halts.resume_at_ns == midnight
    step(eng, clock, 3600)
    assert eng.mode == Mode.HALT
    step(eng, clock, (midnight - clock.realtime_ns()) / NS - 1)
    assert eng.mode == Mode.HALT
    step(eng, clock, 1)
    assert eng.mode == Mode.NORMAL and eng.halts.halts_today == 0 and eng.halts.scale_bp == 5_000


def test_third_halt_of_the_day_needs_a_manual_resume() -> None:
    start = (START // DAY_NS) * DAY_NS + 60 * NS   # 00:01 UTC: a whole day ahead
    eng, clock = make(start=start)
    for _ in range(2):
        trip(eng)
        step(eng, clock, 300)
        assert eng.mode == Mode.NORMAL
        step(eng, clock, 2 * 3600)             # more than an hour after re-entry
    trip(eng)
    assert eng.halts.halts_today == 3 and eng.halts.manual_required
    step(eng, clock, 86_400 * 2)               # not even a new day releases it
    assert eng.mode == Mode.HALT
    eng.resume()
    assert eng.mode == Mode.NORMAL and eng.control_rows()[0]["limit_scale_bp"] == 5_000


def test_manual_halt_pause_flatten() -> None:
    eng, clock = make()
    assert eng.halt()                          # mmshm halt
    assert not eng.halt()                      # already halted: not a second halt
    step(eng, clock, 3600)
    assert eng.mode == Mode.HALT
    eng.resume()
    assert eng.mode == Mode.NORMAL
    eng.pause(True)
    eng.evaluate()
    assert eng.control_rows()[1]["flags"] & 1
    eng.pause(False)
    eng.flatten()
    eng.evaluate()
    assert eng.mode == Mode.FLATTEN
    eng.resume()
    assert eng.mode == Mode.NORMAL


def test_every_halt_writes_a_postmortem(tmp_path: Path) -> None:
    eng, clock = make(tmp_path)
    eng.on_signals(0, imbalance=0.25, cascade=0.3, leadlag_bp=1.5)
    for i in range(12):
        eng.on_fill(0, Side.BUY if i % 2 == 0 else Side.SELL, 100, 1, 3, 9, i)
    eng.on_fill(0, Side.BUY, 100, 25, 0, 9, 100)     # position 25 > 2 x 10: runaway
    live(eng)
    eng.evaluate()
    assert eng.mode == Mode.HALT and len(eng.postmortems) == 1
    doc = json.loads(eng.postmortems[0].read_text())
    assert doc["trigger"] == "position_runaway" and doc["value"] == 2.5 and doc["threshold"] == 2.0
    assert doc["mode"] == "HALT" and doc["mode_before"] == "NORMAL"
    assert doc["positions"]["X"]["position"] == 25
    assert "unrealized_pnl" in doc and len(doc["last_fills"]) == 10 and doc["last_fills"][-1]["qty"] == 25
    assert doc["signals"]["X"]["imbalance"] == 0.25 and doc["market"]["X"]["bid"] == 99
    assert doc["time"].startswith("2023-11-14T22:13:20")
    assert eng.postmortems[0].name.startswith("halt-") and eng.postmortems[0].suffix == ".json"


def test_postmortem_failure_does_not_stop_the_halt(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    eng, _ = make(blocker / "sub")             # a directory that cannot be created
    assert eng.halt(TriggerCode.INVARIANT, manual=False)
    assert eng.mode == Mode.HALT and eng.drops["postmortem_write_failed"] == 1


def test_params_validation() -> None:
    with pytest.raises(ValueError):
        RiskParams(reentry_scale_bp=0)
    with pytest.raises(ValueError):
        RiskEngine(RiskParams(), [])


def test_status_line_part() -> None:
    from mmshm.risk.status import format_risk
    eng, _ = make()
    assert format_risk(eng.snapshot()) == "Risk: dd=0.0% margin=0% kill=OK"
