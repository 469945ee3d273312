"""Pinning: an allowed CPU is pinned and verified; a disallowed one is a clear error.

Each test pins a forked child, never the pytest worker itself.
"""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from mmshm.agent.pinning import PinningError, allowed_cpus, format_cpus, pin_current_process


def _in_child(target, *args):
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def run():
        try:
            q.put(("ok", target(*args)))
        except Exception as exc:  # report to the parent
            q.put(("err", (type(exc).__name__, str(exc), getattr(exc, "cpu", None), getattr(exc, "allowed", None))))

    p = ctx.Process(target=run)
    p.start()
    try:
        return q.get(timeout=20)
    finally:
        p.join(10)


def _pin_and_read(cpu):
    got = pin_current_process(cpu)
    return set(got), os.sched_getaffinity(0)


@pytest.mark.timeout(30)
def test_pin_allowed_cpu_is_verified():
    cpu = max(allowed_cpus())
    kind, value = _in_child(_pin_and_read, cpu)
    assert kind == "ok", value
    assert value == ({cpu}, {cpu})


@pytest.mark.timeout(30)
def test_pin_disallowed_cpu_names_cpu_and_allowed_set():
    allowed = allowed_cpus()
    bad = max(allowed) + 1000
    kind, (name, message, cpu, allowed_reported) = _in_child(pin_current_process, bad)
    assert kind == "err" and name == "PinningError"
    assert cpu == bad and allowed_reported == allowed
    assert f"CPU {bad}" in message and format_cpus(allowed) in message


@pytest.mark.timeout(30)
def test_pin_outside_a_narrowed_set_fails():
    allowed = sorted(allowed_cpus())
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")

    def narrowed():
        os.sched_setaffinity(0, {allowed[0]})
        return pin_current_process(allowed[1])

    kind, (name, message, cpu, allowed_reported) = _in_child(narrowed)
    assert name == "PinningError" and cpu == allowed[1]
    assert allowed_reported == frozenset({allowed[0]})


@pytest.mark.parametrize("bad", [-1, "0", 1.0, True])
def test_bad_cpu_values(bad):
    with pytest.raises(PinningError, match="integer"):
        pin_current_process(bad)


def test_format_cpus():
    assert format_cpus({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpus(set()) == "none"


def _runner_pinned(cpu):
    from mmshm.agent.base import FunctionAgent
    from mmshm.agent.idle import NoOpIdle
    from mmshm.agent.runner import AgentRunner
    from mmshm.agent.sdnotify import SdNotifier

    seen = {}

    def work():
        seen["affinity"] = os.sched_getaffinity(0)
        runner.request_stop()
        return 0

    runner = AgentRunner(FunctionAgent("pin", work), NoOpIdle(), role="tester", cpu=cpu,
                         notifier=SdNotifier({}), install_signals=False)
    code = runner.run()
    return code, seen.get("affinity"), runner.exit_reason


@pytest.mark.timeout(30)
def test_runner_pins_before_work_and_fails_cleanly_on_a_bad_cpu():
    cpu = min(allowed_cpus())
    kind, (code, affinity, _) = _in_child(_runner_pinned, cpu)
    assert kind == "ok" and code == 0 and affinity == {cpu}
    kind, (code, affinity, reason) = _in_child(_runner_pinned, max(allowed_cpus()) + 1000)
    assert code == 1 and affinity is None and reason.startswith("PinningError")
