"""The executor process's idle loop woken by row changes: by its doorbell (idle.bells, the
default: the rig rings it after each target and control write, as the quoter and risk do)
or by its row watcher (mmshm/execution/watcher.py, bells off).

The timed pass and the housekeeping tick are pushed out to 60 s, so passes happen when a
wake-up comes (plus the early idle backoff); new targets and a HALT must still be acted
on, and the wake-up path must have run. The wake-up itself is tested in-process in
tests/unit/test_execution_watcher.py. No timing is asserted.
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from executor_harness import wait_for  # noqa: E402

from mmshm.records import Mode  # noqa: E402

SLOW_TIMED_PASS = ("--set", "idle.max_park_ns=60000000000", "--set", "idle.hot_max_park_ns=50000",
                   "--set", "executor.tick_interval_ms=60000")   # a tick also counts as work


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bells", ["true", "false"])
def test_target_and_halt_changes_wake_the_idle_loop(rig, bells):
    rig.start_executor(*SLOW_TIMED_PASS, "--set", f"idle.bells={bells}")
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))])
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid placed after a target-row wake", [rig.executor])
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))], asks=[(rig.ticks("50020.0"), rig.lots("0.020"))])
    wait_for(lambda: len(rig.open_orders()) == 2, 10, "ask added after a second wake", [rig.executor])
    rig.set_control(Mode.HALT)
    wait_for(lambda: rig.open_orders() == [], 10, "cancel-all after a control-row wake", [rig.executor])
    rig.executor.send_signal(signal.SIGTERM)
    assert rig.executor.wait(timeout=15) == 0
    log = rig.log_path.read_text()
    summary = json.loads(next(line for line in log.splitlines() if '"executor summary"' in line))
    if bells == "true":
        assert "sleeping on the doorbell" in log and "row watcher started" not in log
        # target rows went out from the doorbell's reader callback (the fast path; a pass
        # still spinning after the previous work may read a row first); the HALT, a mode
        # change, was left to the pass (which cancelled all above)
        assert summary["rung_submits"] >= 1
    else:
        assert "row watcher started" in log and "sleeping on the doorbell" not in log
        assert summary["rung_submits"] == 0
