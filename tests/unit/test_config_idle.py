"""[idle] park bounds: the hot roles' short park (idle.hot_max_park_ns)."""
from __future__ import annotations

import pytest

from mmshm.config import HOT_ROLES, ROLES, ConfigError, load_config


def test_hot_roles_use_the_short_park_others_the_long_one():
    cfg = load_config(env={})
    assert cfg.idle.hot_max_park_ns < cfg.idle.max_park_ns
    for role in ROLES:
        want = cfg.idle.hot_max_park_ns if role in HOT_ROLES else cfg.idle.max_park_ns
        assert cfg.idle.max_park_ns_for(role) == want
    assert "executor" in HOT_ROLES and "risk" not in HOT_ROLES


def test_hot_park_is_configurable_and_checked_against_min_park():
    cfg = load_config(cli_overrides=["idle.hot_max_park_ns=20000"], env={})
    assert cfg.idle.max_park_ns_for("executor") == 20_000
    with pytest.raises(ConfigError, match="hot_max_park_ns"):
        load_config(cli_overrides=["idle.min_park_ns=30000", "idle.hot_max_park_ns=20000"], env={})


def test_run_role_gives_each_role_its_own_park(monkeypatch) -> None:
    """The quoter (a hot role) backs off to the short park; risk keeps the long one."""
    from mmshm.agent import runner

    seen: dict[str, dict] = {}
    monkeypatch.setattr(runner, "run_agents", lambda role, agents, **kw: seen.setdefault(role, kw) and 0)
    cfg = load_config(env={})
    runner.run_role("quoter", [], cfg)
    runner.run_role("risk", [], cfg)
    assert seen["quoter"]["idle_options"]["max_park_ns"] == cfg.idle.hot_max_park_ns
    assert seen["risk"]["idle_options"]["max_park_ns"] == cfg.idle.max_park_ns
