"""`mmshm status` over a live instance: a runner child, a lapped reader, watchdog verdicts."""
from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from mmshm.agent.proctable import ProcessTable
from mmshm.cli import main as cli_main
from mmshm.monitor.policy import WatchdogPolicy
from mmshm.monitor.watchdog import Watchdog
from mmshm.records import MARKET_EVENT, ProcState
from mmshm.shm import BroadcastReader, BroadcastWriter
from tests.conftest import PYTHON

CHILD = r"""
import os, sys
from mmshm.agent import FunctionAgent, run_agents
sys.exit(run_agents("quoter", [FunctionAgent("q", lambda: 0)]))
"""


def wait_running(instance, pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            table = ProcessTable.attach(instance)
        except Exception:
            time.sleep(0.02)
            continue
        try:
            if any(int(r["pid"]) == pid and int(r["state"]) == ProcState.RUNNING for r in table.read_all()):
                return
        finally:
            table.close()
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} never RUNNING")


@pytest.mark.timeout(60)
def test_status_json_and_table(spawn, instance, capsys):
    child = spawn([PYTHON, "-c", CHILD])
    wait_running(instance, child.pid)
    writer = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=64)
    reader = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="quoter")
    wd = Watchdog(instance, WatchdogPolicy(critical_roles=frozenset({"quoter"})))
    try:
        rec = np.zeros(1, dtype=MARKET_EVENT)
        for _ in range(200):
            writer.publish(rec)
        reader.poll()  # lapped: one gap
        for _ in range(10):
            writer.publish(rec)
        wd.check()

        assert cli_main(["status", "--instance", instance, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["instance"] == instance and data["halt"] is False
        quoter = next(p for p in data["processes"] if p["pid"] == child.pid)
        assert quoter["role"] == "quoter" and quoter["state"] == "RUNNING" and quoter["alive"]
        assert 0 <= quoter["heartbeat_age_s"] < 5
        verdict = next(v for v in data["verdicts"] if v["pid"] == child.pid)
        assert verdict["verdict"] == "OK" and verdict["critical"] and quoter["verdict"] == "OK"
        assert cli_main(["status", "--instance", instance, "--json", "--check"]) == 0
        capsys.readouterr()
        md = next(s for s in data["segments"] if s["name"] == "md")
        assert md["kind"] == "BROADCAST" and md["creator_pid"] == os.getpid() and md["cursor"] == 211
        r = md["readers"][0]
        assert r["name"] == "quoter" and r["gaps"] >= 1 and r["lag"] == md["cursor"] - r["cursor"] > 0
        assert {s["name"] for s in data["segments"]} >= {"md", "procs", "verdicts"}

        # the child dies: status shows it and the HALT the watchdog raises
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        wd.check()
        assert cli_main(["status", "--instance", instance]) == 0
        out = capsys.readouterr().out
        assert "HALT" in out and "quoter" in out and "DEAD" in out and "md" in out
        assert cli_main(["status", "--instance", instance, "--check"]) == 1
        err = capsys.readouterr().err
        assert "HALT: quoter" in err and f"quoter pid {child.pid} DEAD" in err
    finally:
        wd.close()
        reader.close()
        writer.close()


def test_status_of_an_empty_instance(instance, capsys):
    assert cli_main(["status", "--instance", instance]) == 0
    assert "no segments" in capsys.readouterr().out
    assert cli_main(["status", "--instance", instance, "--watch", "0"]) == 2


@pytest.mark.timeout(60)
def test_watchdog_once_prints_verdicts(spawn, instance):
    child = spawn([PYTHON, "-c", CHILD])
    wait_running(instance, child.pid)
    once = spawn([PYTHON, "-m", "mmshm.procs.watchdog", "--once"])
    out, err = once.communicate(timeout=30)
    assert once.returncode == 0, err.decode()
    lines = [line for line in out.decode().splitlines() if line.startswith("[")]
    verdicts = json.loads(lines[-1])
    mine = next(v for v in verdicts if v["pid"] == child.pid)
    assert mine["role"] == "quoter" and mine["verdict"] == "OK"
