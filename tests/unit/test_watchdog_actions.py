"""The Watchdog's actions on real shared-memory tables, in one process.

Rows are written for a real sleeping child (so its pid is alive) with a chosen heartbeat;
the kill function is injected, so nothing is actually killed here (the integration tests
do that with real processes).
"""
from __future__ import annotations

import logging
import os
import signal
import time

import numpy as np
import pytest

from mmshm.agent.proctable import ProcessTable, VerdictTable, read_halt
from mmshm.monitor.policy import WatchdogPolicy
from mmshm.monitor.watchdog import Watchdog
from mmshm.records import MARKET_EVENT, ProcState, Verdict
from mmshm.shm import BroadcastReader, BroadcastWriter
from tests.conftest import PYTHON


class Kills:
    def __init__(self):
        self.calls = []

    def __call__(self, pid, sig):
        self.calls.append((pid, sig))


@pytest.fixture
def sleeper(spawn):
    proc = spawn([PYTHON, "-c", "import time; time.sleep(60)"])
    yield proc


def stale(slot, seconds):
    slot.set_state(ProcState.RUNNING)
    slot.flush(time.monotonic_ns() - int(seconds * 1e9))


def verdict_of(instance, pid):
    table = VerdictTable.attach(instance)
    try:
        rows = table.read_all()
    finally:
        table.close()
    for r in rows[1:]:
        if int(r["pid"]) == pid:
            return Verdict(int(r["verdict"])), bytes(r["reason"]).rstrip(b"\0").decode()
    return None, ""


@pytest.mark.timeout(30)
def test_hung_critical_process_is_killed_and_halt_latched(instance, sleeper):
    procs = ProcessTable.open(instance)
    kills = Kills()
    wd = Watchdog(instance, WatchdogPolicy(critical_roles=frozenset({"feed"}), heartbeat_timeout_s=0.5), kill=kills)
    try:
        slot = procs.claim("feed", pid=sleeper.pid)
        slot.set_state(ProcState.RUNNING)
        wd.check()
        assert verdict_of(instance, sleeper.pid)[0] == Verdict.OK
        assert read_halt(instance) == (False, "")

        stale(slot, 2.0)
        wd.check()
        assert kills.calls == [(sleeper.pid, signal.SIGKILL)]
        v, reason = verdict_of(instance, sleeper.pid)
        assert v == Verdict.KILLED and reason.startswith("SIGKILL: heartbeat")
        halted, why = read_halt(instance)
        assert halted and "feed" in why and "KILLED" in why

        # Healthy again: HALT stays latched until asked to clear ...
        slot.flush(time.monotonic_ns())
        wd.check()
        assert read_halt(instance)[0]
        # ... and a restarted watchdog keeps it.
        wd.close()
        wd = Watchdog(instance, WatchdogPolicy(critical_roles=frozenset({"feed"})), kill=kills)
        wd.check()
        assert read_halt(instance)[0]
        wd.request_halt_clear()
        wd.check()
        assert read_halt(instance) == (False, "")
    finally:
        wd.close()
        procs.close()


@pytest.mark.timeout(30)
def test_halt_clear_refused_while_critical_still_failing(instance, sleeper):
    procs = ProcessTable.open(instance)
    wd = Watchdog(instance, WatchdogPolicy(critical_roles=frozenset({"risk"}), kill_hung=False,
                                           heartbeat_timeout_s=0.5), kill=Kills())
    try:
        slot = procs.claim("risk", pid=sleeper.pid)
        slot.set_state(ProcState.RUNNING)
        stale(slot, 5)
        wd.check()
        assert verdict_of(instance, sleeper.pid)[0] == Verdict.HUNG
        wd.request_halt_clear()
        wd.check()
        assert read_halt(instance)[0]
    finally:
        wd.close()
        procs.close()


@pytest.mark.timeout(30)
def test_never_kills_pid_1_or_itself(instance):
    procs = ProcessTable.open(instance)
    kills = Kills()
    wd = Watchdog(instance, WatchdogPolicy(heartbeat_timeout_s=0.5, critical_roles=frozenset()), kill=kills)
    try:
        init = procs.claim("recorder", pid=1)
        stale(init, 5)
        me = procs.claim("watchdog")
        stale(me, 5)
        wd.check()
        assert kills.calls == []
        assert verdict_of(instance, 1)[0] == Verdict.HUNG
        assert verdict_of(instance, os.getpid())[0] == Verdict.OK
    finally:
        wd.close()
        procs.close()


@pytest.mark.timeout(30)
def test_gone_before_kill_is_dead_and_counters_count(instance, sleeper):
    procs = ProcessTable.open(instance)

    def already_gone(pid, sig):
        raise ProcessLookupError(pid)

    wd = Watchdog(instance, WatchdogPolicy(heartbeat_timeout_s=0.5, critical_roles=frozenset()), kill=already_gone)
    try:
        stale(procs.claim("exporter", pid=sleeper.pid), 5)
        wd.check()
        assert verdict_of(instance, sleeper.pid)[0] == Verdict.DEAD
        assert wd.counters[0] == 1 and wd.counters[1] >= 1  # checks, verdict changes
    finally:
        wd.close()
        procs.close()


@pytest.mark.timeout(30)
def test_reader_gaps_are_counted_and_logged(instance, caplog):
    writer = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=64)
    reader = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="quoter")
    wd = Watchdog(instance, WatchdogPolicy())
    rec = np.zeros(1, dtype=MARKET_EVENT)
    try:
        wd.check()
        for _ in range(200):  # laps the reader
            writer.publish(rec)
        while reader.poll() is not None:
            pass
        assert reader.gaps >= 1
        with caplog.at_level(logging.WARNING, logger="mmshm.watchdog"):
            wd.check()
        gaps = [r for r in caplog.records if getattr(r, "event", None) == "gaps"]
        assert gaps and gaps[0].reader == "quoter" and gaps[0].new_gaps >= 1
        md = next(s for s in wd.last_snapshot.segments if s.name == "md")
        assert md.readers[0].gaps == reader.gaps and md.readers[0].lost > 0
    finally:
        wd.close()
        reader.close()
        writer.close()


@pytest.mark.timeout(30)
def test_polite_kill_signal_escalates_to_sigkill(instance, sleeper):
    procs = ProcessTable.open(instance)
    kills = Kills()
    policy = WatchdogPolicy(heartbeat_timeout_s=0.5, critical_roles=frozenset(), kill_signal=int(signal.SIGTERM),
                            kill_escalate_s=1.0)
    wd = Watchdog(instance, policy, kill=kills)
    try:
        stale(procs.claim("recorder", pid=sleeper.pid), 5)
        wd.check()
        wd.check()  # not re-sent within kill_escalate_s
        assert kills.calls == [(sleeper.pid, signal.SIGTERM)]
        v, reason = verdict_of(instance, sleeper.pid)
        assert v == Verdict.KILLED and reason.startswith("SIGTERM")
        time.sleep(1.05)
        wd.check()
        assert kills.calls == [(sleeper.pid, signal.SIGTERM), (sleeper.pid, signal.SIGKILL)]
        wd.check()
        assert len(kills.calls) == 2  # SIGKILL is never repeated
    finally:
        wd.close()
        procs.close()
