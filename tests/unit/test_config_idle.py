"""[idle] park bounds: with bells every role parks max_park_ns; without, the hot roles'
short park (idle.hot_max_park_ns)."""
from __future__ import annotations

import pytest

from mmshm.config import HOT_ROLES, ROLES, ConfigError, load_config


def test_with_bells_every_role_parks_the_long_park():
    cfg = load_config(env={})
    assert cfg.idle.bells
    assert {cfg.idle.max_park_ns_for(role) for role in ROLES} == {cfg.idle.max_park_ns}


def test_without_bells_hot_roles_use_the_short_park_others_the_long_one():
    cfg = load_config(cli_overrides=["idle.bells=false"], env={})
    assert cfg.idle.hot_max_park_ns < cfg.idle.max_park_ns
    for role in ROLES:
        want = cfg.idle.hot_max_park_ns if role in HOT_ROLES else cfg.idle.max_park_ns
        assert cfg.idle.max_park_ns_for(role) == want
    assert "executor" in HOT_ROLES and "risk" not in HOT_ROLES


def test_hot_park_is_configurable_and_checked_against_min_park():
    cfg = load_config(cli_overrides=["idle.hot_max_park_ns=20000", "idle.bells=false"], env={})
    assert cfg.idle.max_park_ns_for("executor") == 20_000
    with pytest.raises(ConfigError, match="hot_max_park_ns"):
        load_config(cli_overrides=["idle.min_park_ns=30000", "idle.hot_max_park_ns=20000"], env={})


def test_run_role_gives_each_role_its_own_park(monkeypatch) -> None:
    """Without bells the quoter (a hot role) backs off to the short park; risk keeps the long one."""
    from mmshm.agent import runner

    monkeypatch.delenv("MMSHM_IDLE", raising=False)
    seen: dict[str, dict] = {}
    monkeypatch.setattr(runner, "run_agents", lambda role, agents, **kw: seen.setdefault(role, kw) and 0)
    cfg = load_config(cli_overrides=["idle.bells=false", "idle.quoter=sleep"], env={})
    runner.run_role("quoter", [], cfg)
    runner.run_role("risk", [], cfg)
    assert seen["quoter"]["idle_options"]["max_park_ns"] == cfg.idle.hot_max_park_ns
    assert "bell" not in seen["quoter"]["idle_options"]
    assert seen["risk"]["idle_options"]["max_park_ns"] == cfg.idle.max_park_ns


def test_run_role_parks_a_sleeping_hot_role_on_its_doorbell(monkeypatch, instance) -> None:
    """With bells the sleeping quoter gets its bound doorbell (closed after the run) and the
    long park; risk (not a bell role) and a spinning quoter get none."""
    from mmshm.agent import runner
    from mmshm.agent.doorbell import BellRinger

    monkeypatch.delenv("MMSHM_IDLE", raising=False)
    seen: dict[str, dict] = {}

    def fake_run_agents(role, agents, **kw):
        bell = kw["idle_options"].get("bell")
        if bell is not None:                       # bound while the role runs: a ring arrives
            ringer = BellRinger(instance, role)
            ringer.ring()
            kw["rung"] = bell.wait(5.0)
            ringer.close()
        seen[role] = kw
        return 0

    monkeypatch.setattr(runner, "run_agents", fake_run_agents)
    cfg = load_config(cli_overrides=[f"instance={instance}", "idle.quoter=sleep", "idle.risk=sleep"], env={})
    runner.run_role("quoter", [], cfg)
    runner.run_role("risk", [], cfg)
    assert seen["quoter"]["rung"] is True
    assert seen["quoter"]["idle_options"]["max_park_ns"] == cfg.idle.max_park_ns
    assert "bell" not in seen["risk"]["idle_options"]
    ringer = BellRinger(instance, "quoter")        # closed after the run: nobody listens
    ringer.ring()
    assert ringer.absent == 1
    spinning = load_config(cli_overrides=[f"instance={instance}", "idle.quoter=busy"], env={})
    runner.run_role("quoter", [], spinning)
    assert "bell" not in seen["quoter"]["idle_options"]


def test_only_the_hot_roles_spin_and_yield_before_parking() -> None:
    """Risk and the recorder park at once from cold_min_park_ns; the hot roles keep the
    spins, yields and the 1 us start; every role ends at its max park."""
    cfg = load_config(env={})
    idle = cfg.idle
    for role in ROLES:
        got = idle.backoff_for(role)
        assert got["max_park_ns"] == idle.max_park_ns_for(role)
        if role in HOT_ROLES:
            assert (got["max_spins"], got["max_yields"], got["min_park_ns"]) == (idle.spins, idle.yields,
                                                                                 idle.min_park_ns)
        else:
            assert (got["max_spins"], got["max_yields"], got["min_park_ns"]) == (0, 0, idle.cold_min_park_ns)
    assert idle.cold_min_park_ns > idle.min_park_ns
    with pytest.raises(ConfigError, match="cold_min_park_ns"):
        load_config(cli_overrides=["idle.cold_min_park_ns=2000000"], env={})


def test_run_role_gives_risk_the_cold_backoff_and_a_yielding_role_its_spins(monkeypatch) -> None:
    from mmshm.agent import runner
    from mmshm.agent.idle import BackoffIdle, make_idle

    monkeypatch.delenv("MMSHM_IDLE", raising=False)
    seen: dict[str, dict] = {}
    monkeypatch.setattr(runner, "run_agents", lambda role, agents, **kw: seen.setdefault(role, kw) and 0)
    cfg = load_config(cli_overrides=["idle.bells=false", "idle.risk=sleep", "idle.recorder=yield",
                                     "idle.spins=7"], env={})
    runner.run_role("risk", [], cfg)
    runner.run_role("recorder", [], cfg)
    risk = make_idle("sleep", **seen["risk"]["idle_options"])
    assert isinstance(risk, BackoffIdle)
    assert (risk.max_spins, risk.max_yields, risk.park_ns) == (0, 0, cfg.idle.cold_min_park_ns)
    assert seen["recorder"]["idle_options"] == {"max_spins": 7}
