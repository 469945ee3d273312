"""The executor PROCESS (procs/executor.py) against the simulated venue process.

The test plays feed (instruments), quoter (targets), risk (control) and the orders ring's
required readers (tests/e2e/executor_harness.py). Real sockets, real processes.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from executor_harness import Rig, wait_for  # noqa: E402

from mmshm.records import Mode, OrderEventKind as K  # noqa: E402


@pytest.fixture
def rig(spawn, instance, tmp_path):
    r = Rig(spawn, instance, tmp_path)
    r.depth()
    yield r
    r.close()


@pytest.mark.timeout(60)
def test_starts_quotes_and_cancels_all_on_sigterm(rig):
    rig.start_executor()
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))], asks=[(rig.ticks("50020.0"), rig.lots("0.020"))])
    wait_for(lambda: len(rig.open_orders()) == 2, 10, "two resting orders", [rig.executor])
    c = wait_for(lambda: (c := rig.counters())["acks"] == 2 and c, 10, "acks counted", [rig.executor])
    assert c["orders_sent"] == 2 and c["ring_full"] == 0 and c["rejects"] == 0
    rig.executor.send_signal(signal.SIGTERM)
    assert rig.executor.wait(timeout=15) == 0
    assert rig.open_orders() == []
    kinds = [int(e["kind"]) for e in rig.ring_events()]
    assert kinds.count(K.NEW_SENT) == 2 and kinds.count(K.CANCELED) == 2


@pytest.mark.timeout(60)
def test_no_control_means_no_orders_then_halt_cancels(rig):
    rig.set_control(Mode.NORMAL, beat=False)        # risk stops refreshing: control goes stale
    rig.start_executor()
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))])
    wait_for(lambda: rig.counters().get("mode") == Mode.HALT, 10, "HALT on stale control", [rig.executor])
    assert rig.open_orders() == [] and rig.counters()["orders_sent"] == 0
    rig.set_control(Mode.NORMAL, beat=True)
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "order once control is fresh", [rig.executor])
    rig.set_control(Mode.HALT)
    wait_for(lambda: rig.open_orders() == [], 10, "cancel-all on HALT", [rig.executor])
    assert rig.counters()["cancel_all"] >= 2           # start-up + HALT
