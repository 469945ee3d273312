"""The status sampler reads real shared-memory tables (created here in-process) into the status line."""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from mmshm.agent.proctable import ProcessTable, VerdictTable
from mmshm.instruments import InstrumentSpec
from mmshm.records import CONTROL_ROW, FEE_SCALE, INSTRUMENT_ROW, TARGET_ROW, VERDICT_ROW, Mode
from mmshm.risk.params import TriggerCode
from mmshm.shm import SeqlockTable
from mmshm.supervisor.sampler import StatusSampler
from mmshm.supervisor.statusline import format_status_line


def test_empty_instance_is_all_na(instance):
    s = StatusSampler(instance).sample(0.0)
    assert format_status_line(s).startswith("PnL=n/a Pos=n/a Spread=n/a Fills=n/a Mode=n/a")


@pytest.fixture
def tables(instance):
    opened = []

    def table(name, dtype, rows):
        t = SeqlockTable.create(instance, name, dtype, rows)
        opened.append(t)
        return t

    yield table
    for t in opened:
        t.close()


def test_values_from_every_table(instance, tables):
    spec = InstrumentSpec.from_decimals("BTCUSDT", "sim", tick="0.1", lot="0.001")
    tables("instruments", INSTRUMENT_ROW, 2).write(0, spec.to_row(0))
    control = tables("control", CONTROL_ROW, 3)
    rows = np.zeros(2, dtype=CONTROL_ROW)
    rows[0]["mode"], rows[0]["flags"] = int(Mode.NORMAL), 1
    rows[1]["position"] = -5
    control.write_batch(0, rows)
    t = np.zeros(1, dtype=TARGET_ROW)
    t[0]["n_bids"] = t[0]["n_asks"] = 1
    t[0]["bid_px"][0], t[0]["ask_px"][0] = 999_800, 1_000_200       # 4 bp around 100 000.0
    tables("targets", TARGET_ROW, 1).write(0, t)

    procs = ProcessTable.open(instance)
    try:
        risk = procs.claim("risk", pid=1)              # rows written as these roles would
        risk.add("pnl_e8", 1234 * FEE_SCALE // 100)
        risk.add("drawdown_e6", 3_000)
        risk.add("margin_e6", 150_000)
        risk.flush(0)
        quoter = procs.claim("quoter", pid=2)
        quoter.add("imbalance_e6", 120_000)
        quoter.add("leadlag_bp_e6", 800_000)
        quoter.flush(0)
        ex = procs.claim("executor", pid=3)
        ex.add("fills", 40)
        ex.flush(0)
        sampler = StatusSampler(instance)
        first = sampler.sample(0.0)
        ex.add("fills", 7)
        ex.flush(0)
        s = sampler.sample(60.0)
    finally:
        procs.close()
    assert first.fills == 40 and first.fill_rate_per_min is None
    assert s.position == Decimal("-0.005") and s.base_asset == "BTC"
    line = format_status_line(s)
    assert line == ("PnL=$12.34 Pos=-0.005BTC Spread=4.0bps Fills=47 Mode=NORMAL+PAUSED FillRate=7.0/min "
                    "Signals: imb=+0.12 leadlag=+0.8bps Risk: dd=0.3% margin=15% kill=OK")


def test_halt_and_watchdog_kill(instance, tables):
    control = tables("control", CONTROL_ROW, 2)
    row = np.zeros(1, dtype=CONTROL_ROW)
    row[0]["mode"], row[0]["reason"] = int(Mode.HALT), int(TriggerCode.MANUAL)
    control.write(0, row)
    s = StatusSampler(instance).sample(0.0)
    assert s.mode == "HALT" and s.kill == "HALT:MANUAL"
    verdicts = VerdictTable.open_writer(instance, rows=2)
    try:
        v = np.zeros(1, dtype=VERDICT_ROW)
        v[0]["halt"], v[0]["reason"] = 1, b"feed dead"
        verdicts.write(0, v)
        assert StatusSampler(instance).sample(0.0).kill == "WATCHDOG:feed dead"
    finally:
        verdicts.close()


def test_pulled_targets_show_no_spread(instance, tables):
    t = np.zeros(1, dtype=TARGET_ROW)
    t[0]["flags"] = 1
    tables("targets", TARGET_ROW, 1).write(0, t)
    assert StatusSampler(instance).sample(0.0).spread_bp is None
