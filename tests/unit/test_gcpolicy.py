"""GcPolicy: freeze at start-up, collect while idle, every pause timed (mmshm.agent.gcpolicy)."""
from __future__ import annotations

import gc
import weakref

import pytest

from mmshm.agent.base import Agent
from mmshm.agent.gcpolicy import GcPolicy, open_gc_policy
from mmshm.agent.idle import SleepingIdle
from mmshm.agent.runner import AgentRunner
from mmshm.config import ConfigError, load_config
from mmshm.monitor.latency import open_table, read_histograms

pytestmark = pytest.mark.timeout(30)


class _Node:
    def __init__(self) -> None:
        self.me = self                      # a reference cycle: only the collector frees it


class _Recorder:
    def __init__(self) -> None:
        self.samples: list[int] = []
        self.published = 0
        self.closed = False

    def record(self, ns: int) -> None:
        self.samples.append(ns)

    def publish(self, now: int | None = None) -> None:
        self.published += 1

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_start_freezes_raises_the_threshold_and_close_restores(restore_gc) -> None:
    before = gc.get_threshold()
    p = GcPolicy("t", gen0_threshold=12_345)
    p.start()
    try:
        assert gc.get_freeze_count() > 1000          # the test process's modules and objects
        assert p.stats.frozen == gc.get_freeze_count()
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_threshold()[1:] == before[1:]
    finally:
        p.close()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
    p.close()                                        # idempotent


def test_no_freeze_keeps_the_permanent_generation_empty(restore_gc) -> None:
    p = GcPolicy("t", freeze=False)
    p.start()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        p.close()


def test_collects_when_idle_only_past_the_mark(restore_gc) -> None:
    p = GcPolicy("t", gen0_threshold=1_000_000, idle_collect_at=200)
    p.start()
    try:
        gc.collect()
        assert not p.collect_if_due()                # nothing piled up
        nodes = [_Node() for _ in range(300)]
        probe = weakref.ref(nodes[0])
        del nodes
        assert probe() is not None                   # a cycle outlives its last reference
        assert p.collect_if_due()
        assert probe() is None                       # freed here, off the hot path
        assert p.stats.idle_collections == 1
        assert sum(p.stats.collections) >= 1 and p.stats.collected >= 300
    finally:
        p.close()


def test_idle_collect_at_zero_never_collects_here(restore_gc) -> None:
    p = GcPolicy("t", idle_collect_at=0)
    p.start()
    try:
        _ = [_Node() for _ in range(2000)]
        assert not p.collect_if_due()
        assert p.stats.idle_collections == 0
    finally:
        p.close()


def test_every_pause_is_recorded_and_published(restore_gc) -> None:
    rec = _Recorder()
    p = GcPolicy("t", recorder=rec, publish_every_ns=0)
    p.start()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        p.close()
    assert len(rec.samples) == 2 and all(ns > 0 for ns in rec.samples)
    assert rec.published == 2
    assert p.stats.collections[0] == 1 and p.stats.collections[2] == 1
    assert p.stats.pause_max_ns == max(rec.samples)
    assert rec.closed
    gc.collect(0)
    assert len(rec.samples) == 2                     # unhooked at close


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="gen0_threshold"):
        GcPolicy("t", gen0_threshold=0)
    with pytest.raises(ValueError, match="idle_collect_at"):
        GcPolicy("t", idle_collect_at=-1)


def test_config_section_defaults_and_rules() -> None:
    cfg = load_config(env={})
    assert cfg.gc.freeze is True
    assert cfg.gc.gen0_threshold > cfg.gc.idle_collect_at > 0   # idle collection comes first
    assert load_config(cli_overrides=["gc.idle_collect_at=0"], env={}).gc.idle_collect_at == 0
    with pytest.raises(ConfigError, match="gc.gen0_threshold"):
        load_config(cli_overrides=["gc.gen0_threshold=0"], env={})


class _Garbage(Agent):
    """Makes cyclic garbage on its first passes, then idles; stops after a few idle passes."""

    name = "garbage"

    def __init__(self, runner_ref: list) -> None:
        self.passes = 0
        self.runner_ref = runner_ref
        self.started_frozen = -1

    def do_work(self) -> int:
        self.passes += 1
        if self.started_frozen < 0:
            self.started_frozen = gc.get_freeze_count()
        if self.passes <= 3:
            _ = [_Node() for _ in range(400)]
            return 1
        if self.passes > 6:
            self.runner_ref[0].request_stop()
        return 0


def test_runner_starts_the_policy_and_collects_when_the_agent_idles(restore_gc) -> None:
    ref: list = []
    agent = _Garbage(ref)
    policy = GcPolicy("t", gen0_threshold=1_000_000, idle_collect_at=500)
    runner = AgentRunner(agent, SleepingIdle(100_000), role="t", install_signals=False, gc_policy=policy)
    ref.append(runner)
    assert runner.run() == 0
    assert agent.started_frozen > 0                  # started before the first pass
    assert policy.stats.idle_collections >= 1        # the 1,200 cycles went while idle
    assert gc.get_freeze_count() == 0                # closed with the runner


def test_open_gc_policy_records_into_the_latency_table(instance, restore_gc) -> None:
    cfg = load_config(cli_overrides=[f"instance={instance}"], env={})
    p = open_gc_policy("quoter", cfg)
    from pathlib import Path
    assert not Path(f"/dev/shm/mmshm-{instance}-latency").exists()   # nothing opened for a role not yet running
    try:
        p.start()
        gc.collect(0)
    finally:
        p.close()
    t = open_table(instance)
    try:
        rows = {h["stage"]: h for h in read_histograms(t)}
    finally:
        t.close()
    assert rows["gc_quoter"]["count"] >= 1


def test_every_role_has_a_fixed_gc_row() -> None:
    """Fixed rows: roles started together (systemd) never race for a free one."""
    from mmshm.config import ROLES
    from mmshm.monitor.latency import LATENCY_ROWS, STAGES

    rows = [STAGES[f"gc_{r}"] for r in ROLES]
    assert len(set(rows)) == len(ROLES) and max(STAGES.values()) < LATENCY_ROWS - 1   # room for venue_to_feed
