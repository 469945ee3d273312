"""Idle strategies: backoff grows and resets, the sleeping strategies really sleep."""
from __future__ import annotations

import time

import pytest

from mmshm.agent.idle import (
    BackoffIdle,
    BusySpinIdle,
    NoOpIdle,
    SleepingIdle,
    SpinThenYieldIdle,
    default_idle_kind,
    make_idle,
)


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_backoff_spins_then_yields_then_sleeps_doubling_to_max():
    sleep = RecordingSleep()
    idle = BackoffIdle(max_spins=3, max_yields=2, min_park_ns=1000, max_park_ns=8000, sleep=sleep)
    for _ in range(5):  # 3 spins + 2 yields: no sleep yet
        idle.idle(0)
    assert sleep.calls == []
    assert (idle.spins, idle.yields) == (3, 2)
    for _ in range(6):
        idle.idle(0)
    assert sleep.calls == pytest.approx([1e-6, 2e-6, 4e-6, 8e-6, 8e-6, 8e-6])
    assert idle.parks == 6


def test_backoff_resets_on_work():
    sleep = RecordingSleep()
    idle = BackoffIdle(max_spins=1, max_yields=1, min_park_ns=1000, max_park_ns=1_000_000, sleep=sleep)
    for _ in range(6):
        idle.idle(0)
    assert idle.park_ns == 16000
    idle.idle(3)  # work resets everything
    assert (idle.spins, idle.yields, idle.park_ns) == (0, 0, 1000)
    sleep.calls.clear()
    idle.idle(0)
    idle.idle(0)
    assert sleep.calls == []  # back to spinning and yielding first
    idle.idle(0)
    assert sleep.calls == pytest.approx([1e-6])


def test_backoff_actually_sleeps():
    idle = BackoffIdle(max_spins=0, max_yields=0, min_park_ns=2_000_000, max_park_ns=2_000_000)
    start = time.monotonic()
    for _ in range(5):
        idle.idle(0)
    assert time.monotonic() - start >= 5 * 0.002  # a lower bound, not a speed claim


def test_sleeping_idle_sleeps_only_without_work():
    sleep = RecordingSleep()
    idle = SleepingIdle(period_ns=5_000_000, sleep=sleep)
    idle.idle(1)
    assert sleep.calls == []
    idle.idle(0)
    assert sleep.calls == pytest.approx([0.005])
    start = time.monotonic()
    SleepingIdle(period_ns=3_000_000).idle(0)
    assert time.monotonic() - start >= 0.003


def test_spin_then_yield_counts():
    idle = SpinThenYieldIdle(max_spins=2)
    for _ in range(5):
        idle.idle(0)
    assert (idle.spins, idle.yields) == (2, 3)
    idle.idle(1)
    assert idle.spins == 0


@pytest.mark.parametrize("bad", [dict(min_park_ns=0), dict(min_park_ns=10, max_park_ns=5), dict(max_spins=-1)])
def test_backoff_rejects_bad_parameters(bad):
    with pytest.raises(ValueError):
        BackoffIdle(**bad)


def test_make_idle_env_overrides_config(monkeypatch):
    monkeypatch.setenv("MMSHM_IDLE", "sleep")
    idle = make_idle("busy")
    assert isinstance(idle, BackoffIdle)
    # options for another kind are dropped, not a TypeError
    monkeypatch.setenv("MMSHM_IDLE", "yield")
    assert isinstance(make_idle("sleep", max_park_ns=10_000_000), SpinThenYieldIdle)


def test_make_idle_kinds(monkeypatch):
    monkeypatch.delenv("MMSHM_IDLE", raising=False)
    assert isinstance(make_idle("busy"), BusySpinIdle)
    assert isinstance(make_idle("yield"), SpinThenYieldIdle)
    assert isinstance(make_idle("noop"), NoOpIdle)
    idle = make_idle("sleep", max_park_ns=4_000_000)
    assert isinstance(idle, BackoffIdle) and idle.max_park_ns == 4_000_000


def test_make_idle_rejects_unknown(monkeypatch):
    monkeypatch.setenv("MMSHM_IDLE", "turbo")
    with pytest.raises(ValueError, match="MMSHM_IDLE 'turbo'"):
        make_idle()


def test_default_sleeps_when_fewer_cores_than_processes(monkeypatch):
    monkeypatch.delenv("MMSHM_IDLE", raising=False)
    assert default_idle_kind(n_processes=7, cpus=2) == "sleep"
    assert default_idle_kind(n_processes=4, cpus=8) == "yield"  # never busy by default
    assert isinstance(make_idle(None, n_processes=10_000), BackoffIdle)
