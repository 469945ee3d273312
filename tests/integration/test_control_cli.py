"""`mmshm halt|resume|pause` against running processes (a risk engine and an executor runner).

The risk and executor processes are the minimal wirings in ``control_roles.py`` (real
RiskEngine, runner and CommandAgent); the CLI is the real `mmshm` command.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from mmshm.records import Mode, ProcState
from mmshm.supervisor.commands import read_command
from mmshm.supervisor.control import read_control

HERE = Path(__file__).parent


def cli(instance: str, *argv: str, timeout: float = 20) -> tuple[int, dict | None, str]:
    p = subprocess.run([sys.executable, "-m", "mmshm", *argv, "--instance", instance, "--json"],
                       capture_output=True, text=True, timeout=timeout)
    first = p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
    return p.returncode, (orjson.loads(first) if first else None), p.stderr


def wait_for(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def row_state(instance: str, role: str) -> ProcState | None:
    from mmshm.supervisor.control import NotRunning, live_processes

    try:
        for p in live_processes(instance):
            if p.role == role:
                return p.state
    except NotRunning:
        return None
    return None


@pytest.mark.timeout(60)
def test_not_running_is_a_clear_error(instance):
    for cmd in (["halt"], ["resume"], ["pause"]):
        code, out, err = cli(instance, *cmd)
        assert code == 3
        assert "not running" in out["error"] and instance in out["error"]


@pytest.mark.timeout(90)
def test_halt_pause_resume_reach_risk_and_executor(instance, spawn, tmp_path):
    risk = spawn([sys.executable, str(HERE / "control_roles.py"), "risk", str(tmp_path)])
    ex = spawn([sys.executable, str(HERE / "control_roles.py"), "executor", str(tmp_path)])
    wait_for(lambda: row_state(instance, "risk") == ProcState.RUNNING, what="risk RUNNING")
    wait_for(lambda: row_state(instance, "executor") == ProcState.RUNNING, what="executor RUNNING")
    assert read_control(instance)[0] == Mode.NORMAL

    code, out, _ = cli(instance, "pause")
    assert code == 0 and out["confirmed"] and out["action"] == "pause"
    assert read_control(instance)[1] & 1
    code, out, _ = cli(instance, "pause")                 # idempotent: still paused
    assert code == 0 and read_control(instance)[1] & 1
    code, out, _ = cli(instance, "pause", "--off")
    assert code == 0 and out["action"] == "unpause" and not read_control(instance)[1] & 1
    code, out, _ = cli(instance, "pause", "--toggle")
    assert code == 0 and out["action"] == "pause" and read_control(instance)[1] & 1

    code, out, _ = cli(instance, "halt", "--reason", "operator test")
    assert code == 0 and out["confirmed"], out
    assert set(out["signalled"]) == {"risk", "executor"}
    assert read_control(instance)[0] == Mode.HALT
    assert read_command(instance).reason == "operator test"
    wait_for(lambda: row_state(instance, "executor") == ProcState.HALTED, what="executor HALTED")

    code, out, _ = cli(instance, "resume")
    assert code == 0 and out["confirmed"], out
    mode, flags = read_control(instance)
    assert mode != Mode.HALT and not flags & 1           # resume also lifts the pause
    wait_for(lambda: row_state(instance, "executor") == ProcState.RUNNING, what="executor latch cleared")

    # A second halt after resume works again (the runner's latch was cleared).
    code, out, _ = cli(instance, "halt")
    assert code == 0 and read_control(instance)[0] == Mode.HALT
    code, out, _ = cli(instance, "resume")
    assert code == 0

    risk.terminate()
    risk.wait(timeout=10)
    code, out, err = cli(instance, "pause", "--timeout", "0.3")
    assert code == 1 and not out["confirmed"] and "risk is not running" in out["detail"]
    code, out, _ = cli(instance, "halt", "--timeout", "0.3")
    assert code == 1 and out["signalled"] == {"executor": [ex.pid]} and "cancel-all" in out["detail"]
