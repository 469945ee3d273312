"""AgentRunner in one process: lifecycle order, heartbeat into the process table, flags."""
from __future__ import annotations

import os

import pytest

from mmshm.agent.base import CompositeAgent, FunctionAgent
from mmshm.agent.idle import NoOpIdle
from mmshm.agent.proctable import ProcessTable
from mmshm.agent.runner import AgentRunner
from mmshm.agent.sdnotify import SdNotifier
from mmshm.records import ProcState


class Scripted:
    """An agent that does `work[i]` on cycle i and asks the runner to stop at the end."""

    name = "scripted"

    def __init__(self, work, events, on_cycle=None):
        self.work = list(work)
        self.events = events
        self.on_cycle = on_cycle
        self.runner = None
        self.i = 0

    def bind_runner(self, runner):
        self.runner = runner
        self.events.append("bind")

    def on_start(self):
        self.events.append("start")

    def do_work(self):
        if self.on_cycle:
            self.on_cycle(self.i, self.runner)
        if self.i >= len(self.work):
            self.runner.request_stop()
            return 0
        w = self.work[self.i]
        self.i += 1
        return w

    def on_close(self):
        self.events.append("close")


def make_runner(agent, events, table=None, **kw):
    return AgentRunner(agent, NoOpIdle(), role="tester", proc_table=table, notifier=SdNotifier({}),
                       install_signals=False, on_stop=lambda: events.append("stop_hook"), **kw)


def test_lifecycle_order_and_counts():
    events: list = []
    agent = Scripted([1, 0, 2, 0, 0], events)
    runner = make_runner(agent, events)
    assert runner.run() == 0
    assert events == ["bind", "start", "stop_hook", "close"]
    assert runner.work_count == 3
    assert runner.idle_cycles == 4  # three idle cycles plus the one that asked to stop
    assert runner.exit_reason == "stop requested"


def test_heartbeat_state_and_counters_in_process_table(instance):
    events: list = []
    table = ProcessTable.open(instance)
    seen = {}

    def on_cycle(i, runner):
        runner.counters[2] += 1
        if i == 3:
            row = table.read(runner.slot.row)
            seen.update(state=int(row["state"]), hb=int(row["heartbeat_count"]),
                        work=int(row["work_count"]), pid=int(row["pid"]), role=bytes(row["role"]))

    agent = Scripted([5, 5, 5, 0, 0], events, on_cycle)
    runner = make_runner(agent, events, table)
    try:
        assert runner.run() == 0
        assert seen["state"] == ProcState.RUNNING
        assert seen["work"] == 15 and seen["hb"] >= 4
        row = table.read(runner.slot.row)
        assert int(row["state"]) == ProcState.STOPPED
        assert int(row["counters"][2]) == 6
        assert table.claims()[runner.slot.row] == 0  # claim released
    finally:
        table.close()


def test_pause_halt_reload_flags_act_between_cycles(instance):
    events: list = []
    table = ProcessTable.open(instance)
    states = []

    def on_cycle(i, runner):
        states.append(ProcState(int(table.read(runner.slot.row)["state"])))
        if i == 0:
            runner.flags.toggle_pause()
        elif i == 1:
            runner.flags.toggle_pause()
        elif i == 2:
            runner.flags.request_halt()
        elif i == 3:
            runner.flags.request_reload()

    agent = Scripted([0, 0, 0, 0, 0], events, on_cycle)
    runner = make_runner(agent, events, table,
                         on_pause=lambda p: events.append(("pause", p)),
                         on_halt=lambda: events.append("halt"),
                         on_reload=lambda: events.append("reload"))
    try:
        assert runner.run() == 0
    finally:
        table.close()
    assert events == ["bind", "start", ("pause", True), ("pause", False), "halt", "reload", "stop_hook", "close"]
    assert states[:5] == [ProcState.RUNNING, ProcState.PAUSED, ProcState.RUNNING, ProcState.HALTED, ProcState.HALTED]


def test_skip_work_when_paused():
    events: list = []
    calls = []
    runner_box = {}

    def work():
        calls.append(1)
        if len(calls) == 2:
            runner_box["r"].flags.toggle_pause()
            runner_box["r"].request_stop()
        return 1

    runner = make_runner(FunctionAgent("w", work), events, skip_work_when_paused=True)
    runner_box["r"] = runner
    runner.flags.toggle_pause()
    runner.flags.toggle_pause()
    assert runner.run() == 0
    assert len(calls) == 2


def test_agent_error_still_runs_stop_hook_and_close():
    events: list = []

    def boom():
        raise RuntimeError("venue exploded")

    agent = FunctionAgent("boom", boom, on_start=lambda: events.append("start"),
                          on_close=lambda: events.append("close"))
    runner = make_runner(agent, events)
    assert runner.run() == 1
    assert events == ["start", "stop_hook", "close"]
    assert "venue exploded" in runner.exit_reason


def test_composite_closes_started_agents_in_reverse_when_start_fails():
    events: list = []

    def failing_start():
        raise OSError("no route")

    a = FunctionAgent("a", lambda: 0, on_start=lambda: events.append("start a"), on_close=lambda: events.append("close a"))
    b = FunctionAgent("b", lambda: 0, on_start=lambda: events.append("start b"), on_close=lambda: events.append("close b"))
    c = FunctionAgent("c", lambda: 0, on_start=failing_start, on_close=lambda: events.append("close c"))
    runner = make_runner(CompositeAgent([a, b, c]), events)
    assert runner.run() == 1
    assert events == ["start a", "start b", "close b", "close a", "stop_hook"]


def test_composite_sums_work():
    comp = CompositeAgent([FunctionAgent("a", lambda: 2), FunctionAgent("b", lambda: 3)])
    assert comp.do_work() == 5 and comp.name == "a+b"
    with pytest.raises(ValueError):
        CompositeAgent([])


def test_failing_reload_keeps_running_and_keepalive_heartbeats_from_a_hook(instance):
    events: list = []
    table = ProcessTable.open(instance)
    beats = []

    def bad_reload():
        raise ValueError("invalid config")

    def on_cycle(i, runner):
        if i == 0:
            runner.flags.request_reload()

    agent = Scripted([0, 0, 0], events, on_cycle)
    runner = AgentRunner(agent, NoOpIdle(), role="tester", proc_table=table, notifier=SdNotifier({}),
                         install_signals=False, on_reload=bad_reload)

    def on_stop():
        before = int(table.read(runner.slot.row)["heartbeat_count"])
        runner.keepalive()
        beats.append((before, int(table.read(runner.slot.row)["heartbeat_count"]),
                      int(table.read(runner.slot.row)["state"])))

    runner.on_stop = on_stop
    try:
        assert runner.run() == 0
    finally:
        table.close()
    assert runner.reload_errors == 1
    (before, after, state), = beats
    assert after == before + 1 and state == ProcState.STOPPING


def test_one_row_per_process(instance):
    table = ProcessTable.open(instance)
    try:
        slot = table.claim("feed")
        assert table.claim("feed").row == slot.row  # idempotent for the same role
        with pytest.raises(ValueError, match="one agent runner"):
            table.claim("quoter")
        slot.release()
        assert table.claim("quoter").row == slot.row  # a stopped row may be reused
    finally:
        table.close()


def test_restart_reuses_the_dead_predecessors_row(instance, spawn):
    from tests.conftest import PYTHON

    table = ProcessTable.open(instance)
    try:
        other = table.claim("recorder", pid=os.getpid())  # occupy row 0 with a live pid
        dead = spawn([PYTHON, "-c", "pass"])
        dead.wait(timeout=30)
        old = table.claim("feed", pid=dead.pid)
        old.set_state(ProcState.RUNNING)
        assert old.row != other.row
        new = table.claim("feed", pid=dead.pid + 100000)  # a fresh "feed" process
        assert new.row == old.row
        assert int(table.read(new.row)["pid"]) == dead.pid + 100000
    finally:
        table.close()
