"""The watchdog process against real child processes (sleeping idle strategy, short timeouts).

Children are AgentRunner processes in a chosen role and behaviour; the watchdog is
``python -m mmshm.procs.watchdog``. The tests read the verdicts table the watchdog writes
and the JSON lines it logs. The ``spawn``/``instance`` fixtures kill every child and remove
every segment even when a test fails.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from mmshm.agent.proctable import ProcessTable, VerdictTable
from mmshm.records import ProcState, Verdict
from mmshm.shm import SegmentNotFound
from tests.conftest import PYTHON

CHILD = r"""
import os, sys, time
import numpy as np
from mmshm.agent import AgentRunner, make_idle
from mmshm.agent.proctable import ProcessTable
from mmshm.records import MARKET_EVENT
from mmshm.shm import BroadcastWriter

instance, role, mode = os.environ["MMSHM_INSTANCE"], os.environ["ROLE"], os.environ["MODE"]
segment = os.environ.get("SEGMENT")

class Child:
    name = "child-" + mode
    def __init__(self):
        self.t0 = time.monotonic()
        self.next_pub = 0.0
        self.writer = None
        self.rec = np.zeros(1, dtype=MARKET_EVENT)
    def on_start(self):
        if segment:
            self.writer = BroadcastWriter.create(instance, segment, MARKET_EVENT, capacity=1024)
    def do_work(self):
        now = time.monotonic()
        if mode == "sigstop" and now - self.t0 > 0.3:
            os.kill(os.getpid(), 19)                   # SIGSTOP: alive, never heartbeats again
        if mode == "block" and now - self.t0 > 0.3:
            while True:                                 # stuck in do_work without heartbeats
                time.sleep(0.05)
        if mode == "publish" and now >= self.next_pub:
            self.next_pub = now + 0.01
            self.rec["md_seq"] += 1
            self.writer.publish(self.rec)
            return 1
        return 0
    def on_close(self):
        if self.writer is not None:
            self.writer.close()

sys.exit(AgentRunner([Child()], make_idle(), role=role, proc_table=ProcessTable.open(instance)).run())
"""


class Run:
    def __init__(self, spawn, instance: str, tmp_path: Path):
        self.spawn, self.instance, self.tmp = spawn, instance, tmp_path
        self.watchdog_log = tmp_path / "watchdog.jsonl"

    def child(self, role: str, mode: str, segment: str | None = None):
        env = {"ROLE": role, "MODE": mode}
        if segment:
            env["SEGMENT"] = segment
        log = open(self.tmp / f"child-{role}-{mode}.log", "wb")
        proc = self.spawn([PYTHON, "-c", CHILD], env=env, stdout=log, stderr=log)
        log.close()
        self.wait_row(proc.pid, ProcState.RUNNING)
        return proc

    def watchdog(self, *settings: str):
        args = [PYTHON, "-m", "mmshm.procs.watchdog", "--set", "watchdog.interval_s=0.05"]
        for s in settings:
            args += ["--set", s]
        log = open(self.watchdog_log, "wb")
        proc = self.spawn(args, stdout=log, stderr=log)
        log.close()
        return proc

    def procs(self) -> ProcessTable:
        return ProcessTable.attach(self.instance)

    def wait_row(self, pid: int, state: ProcState, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                table = self.procs()
            except SegmentNotFound:
                time.sleep(0.02)
                continue
            try:
                if any(int(r["pid"]) == pid and int(r["state"]) == state for r in table.read_all()):
                    return
            finally:
                table.close()
            time.sleep(0.02)
        raise AssertionError(f"pid {pid} never reached {state.name}; logs: {self.logs()}")

    def verdict(self, pid: int):
        try:
            table = VerdictTable.attach(self.instance)
        except SegmentNotFound:
            return None, None
        try:
            rows = table.read_all()
        finally:
            table.close()
        head = rows[0]
        for r in rows[1:]:
            if int(r["pid"]) == pid:
                return Verdict(int(r["verdict"])), head
        return None, head

    def wait_verdict(self, pid: int, wanted: Verdict, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last, head = self.verdict(pid)
            if last == wanted:
                return head
            time.sleep(0.02)
        raise AssertionError(f"pid {pid}: verdict {last} never became {wanted.name}; logs: {self.logs()}")

    def events(self) -> list[dict]:
        out = []
        for line in self.watchdog_log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_event(self, pred, timeout: float = 10.0) -> dict:
        """The first logged watchdog event matching ``pred`` (logs are written by a thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if pred(e):
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no matching watchdog event; logs: {self.logs()}")

    def logs(self) -> str:
        parts = []
        for path in sorted(self.tmp.glob("*.log")) + [self.watchdog_log]:
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text()[-3000:]}")
        return "\n".join(parts)


@pytest.fixture
def run(spawn, instance, tmp_path) -> Run:
    return Run(spawn, instance, tmp_path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["sigstop", "block"])
def test_watchdog_kills_a_process_that_stops_heartbeating(run, mode):
    child = run.child("recorder", mode)
    wd = run.watchdog("watchdog.role_timeouts.recorder=0.5", "watchdog.kill_signal=SIGKILL")
    run.wait_verdict(child.pid, Verdict.KILLED)
    assert child.wait(timeout=10) == -signal.SIGKILL
    kill = run.wait_event(lambda e: e.get("event") == "kill")
    assert kill["proc_pid"] == child.pid and kill["signal"] == "SIGKILL" and kill["proc_role"] == "recorder"
    change = run.wait_event(lambda e: e.get("event") == "verdict" and e.get("proc_pid") == child.pid
                            and e["verdict"] == "KILLED")
    assert "heartbeat" in change["reason"] and change["previous"] in (None, "OK", "HUNG")
    _, head = run.verdict(child.pid)
    assert int(head["halt"]) == 0  # recorder is not critical
    assert wd.poll() is None


@pytest.mark.timeout(60)
def test_dead_pid_reported_and_critical_death_raises_halt(run):
    recorder = run.child("recorder", "idle")
    feed = run.child("feed", "idle")
    run.watchdog('watchdog.critical_roles=["feed"]')
    run.wait_verdict(feed.pid, Verdict.OK)
    run.wait_verdict(recorder.pid, Verdict.OK)

    os.kill(recorder.pid, signal.SIGKILL)
    recorder.wait(timeout=10)
    head = run.wait_verdict(recorder.pid, Verdict.DEAD)
    assert int(head["halt"]) == 0

    os.kill(feed.pid, signal.SIGKILL)
    feed.wait(timeout=10)
    head = run.wait_verdict(feed.pid, Verdict.DEAD)
    deadline = time.monotonic() + 10
    while int(head["halt"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
        _, head = run.verdict(feed.pid)
    assert int(head["halt"]) == 1
    assert b"feed" in bytes(head["reason"]) and b"DEAD" in bytes(head["reason"])
    assert "feed" in run.wait_event(lambda e: e.get("event") == "halt")["reason"]


@pytest.mark.timeout(60)
def test_idle_writer_reported_while_a_publishing_one_is_ok(run):
    still = run.child("feed", "idle", segment="md")
    busy = run.child("feed", "publish", segment="md2")
    run.watchdog("watchdog.idle_limits.feed=0.3", 'watchdog.critical_roles=["risk"]')
    run.wait_verdict(still.pid, Verdict.IDLE)
    run.wait_verdict(busy.pid, Verdict.OK)  # (a heavily loaded box may starve it for a moment)
    change = run.wait_event(lambda e: e.get("event") == "verdict" and e.get("proc_pid") == still.pid
                            and e["verdict"] == "IDLE")
    assert "md still" in change["reason"]
    assert still.poll() is None  # idle is reported, not killed


@pytest.mark.timeout(60)
def test_watchdog_stops_gracefully_and_heartbeats_in_its_row(run):
    wd = run.watchdog()
    run.wait_row(wd.pid, ProcState.RUNNING)
    table = run.procs()
    try:
        row = next(r for r in table.read_all() if int(r["pid"]) == wd.pid)
        first = int(row["heartbeat_count"])
        time.sleep(0.3)
        row = next(r for r in table.read_all() if int(r["pid"]) == wd.pid)
        assert int(row["heartbeat_count"]) > first
        assert int(row["counters"][0]) > 0  # checks
    finally:
        table.close()
    os.kill(wd.pid, signal.SIGTERM)
    assert wd.wait(timeout=10) == 0
    run.wait_row(wd.pid, ProcState.STOPPED)
