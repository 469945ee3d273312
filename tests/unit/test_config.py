"""Config: precedence of every layer, sources, validation errors, credentials, CLI."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mmshm import config as C
from mmshm.cli import main as cli_main
from mmshm.config import ConfigError, load_config, load_credentials

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_run_locally_without_network():
    cfg = load_config(env={})
    assert cfg.instance == "main"
    assert cfg.mode == "paper"
    assert cfg.venue.name == "sim"
    assert cfg.exporter.host == "127.0.0.1"
    assert cfg.cpus.exporter is None
    assert {cfg.cpus.feed, cfg.cpus.quoter, cfg.cpus.executor} <= {0, 1}
    assert all(s == "default" or s.startswith("default (auto") for _, _, s in cfg.items())
    # every risk trigger of issue 5 with its default threshold
    r = cfg.risk
    assert (r.daily_loss_pct, r.drawdown_pct, r.position_runaway_mult, r.stale_md_s) == (0.5, 2.0, 2.0, 10.0)
    assert (r.cascade_severity, r.rate_limit_errors, r.losing_fills, r.losing_fills_pause_s) == (1.5, 2, 5, 14400.0)
    assert r.error_burst_per_hour == 10
    assert (r.margin_alert_pct, r.margin_reduce_only_pct, r.margin_halt_pct) == (60.0, 80.0, 90.0)
    assert (r.reentry_wait_s, r.reentry_limit_fraction, r.rehalt_window_s, r.max_halts_per_day) == (300.0, 0.5, 3600.0, 3)
    assert r.daily_loss_action == r.drawdown_action == r.position_runaway_action == "halt"
    assert r.stale_md_action == r.cascade_action == "pull" and r.losing_fills_action == "pause"


def test_config_is_frozen():
    cfg = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.risk.daily_loss_pct = 1.0  # type: ignore[misc]


def test_precedence_cli_env_override_profile_file_default(tmp_path):
    main = write(tmp_path, "m.toml", """
[risk]
daily_loss_pct = 0.1
drawdown_pct = 1.1
leverage = 2.0
equity = 500.0
[profiles.p]
risk = { daily_loss_pct = 0.2, drawdown_pct = 1.2, leverage = 3.0 }
""")
    ov = write(tmp_path, "o.toml", "[risk]\ndaily_loss_pct = 0.3\ndrawdown_pct = 1.3\n")
    env = {"MMSHM_RISK__DAILY_LOSS_PCT": "0.4"}
    cfg = load_config(main, "p", ov, ["risk.daily_loss_pct=0.45"], env)
    assert cfg.risk.daily_loss_pct == 0.45 and cfg.source("risk.daily_loss_pct") == "cli --set"
    cfg = load_config(main, "p", ov, None, env)
    assert cfg.risk.daily_loss_pct == 0.4
    assert cfg.source("risk.daily_loss_pct") == "env MMSHM_RISK__DAILY_LOSS_PCT"
    assert cfg.risk.drawdown_pct == 1.3 and cfg.source("risk.drawdown_pct") == f"override file {ov}"
    assert cfg.risk.leverage == 3.0 and cfg.source("risk.leverage") == f"profile p ({main})"
    assert cfg.risk.equity == 500.0 and cfg.source("risk.equity") == f"file {main}"
    assert cfg.source("risk.kelly_fraction") == "default"
    assert cfg.profile == "p" and cfg.path == str(main)


def test_cli_dict_forms():
    cfg = load_config(cli_overrides={"risk": {"leverage": 4}, "quoter.levels": 2}, env={})
    assert cfg.risk.leverage == 4.0 and isinstance(cfg.risk.leverage, float)
    assert cfg.quoter.levels == 2 and cfg.source("quoter.levels") == "cli"


def test_env_scheme_and_parsing():
    env = {
        "MMSHM_INSTANCE": "007",  # strings are taken verbatim, not as the number 7
        "MMSHM_VENUE__SYMBOLS": "BTCUSDT, ETHUSDT",
        "MMSHM_CPUS__FEED": "none",
        "MMSHM_EXECUTOR__PREFER_WS": "false",
        "MMSHM_WATCHDOG__ROLE_TIMEOUTS__FEED": "0.5",
        "MMSHM_WATCHDOG__CRITICAL_ROLES": '["feed", "risk"]',
        "MMSHM_SHARED_DATA": "/x",  # reserved: not config
        "MMSHM_SOMETHING_ELSE": "1",  # not a key: ignored and reported
        "MMSHM_API_SECRET": "never-a-config-value",
    }
    cfg = load_config(env=env)
    assert cfg.instance == "007"
    assert cfg.venue.symbols == ("BTCUSDT", "ETHUSDT")
    assert cfg.cpus.feed is None and cfg.source("cpus.feed") == "env MMSHM_CPUS__FEED"
    assert cfg.executor.prefer_ws is False
    assert cfg.watchdog.role_timeouts.feed == 0.5
    assert cfg.watchdog.critical_roles == ("feed", "risk")
    assert cfg.ignored_env == ("MMSHM_SOMETHING_ELSE",)


def test_exchange_env_sets_mode_and_mmshm_mode_wins():
    cfg = load_config(env={"EXCHANGE_ENV": "Observe"})
    assert cfg.mode == "observe" and cfg.source("mode") == "env EXCHANGE_ENV"
    cfg = load_config(env={"EXCHANGE_ENV": "observe", "MMSHM_MODE": "shadow"})
    assert cfg.mode == "shadow" and cfg.source("mode") == "env MMSHM_MODE"


def test_mmshm_idle_forces_all_roles_but_specific_key_wins():
    cfg = load_config(env={"MMSHM_IDLE": "sleep", "MMSHM_IDLE__FEED": "yield"})
    assert [cfg.role_idle(r) for r in C.ROLES] == ["yield"] + ["sleep"] * (len(C.ROLES) - 1)
    assert cfg.source("idle.quoter") == "env MMSHM_IDLE"


def test_idle_auto_default_sleeps_on_small_machines(monkeypatch):
    monkeypatch.setattr(C, "_available_cpus", lambda: 2)
    cfg = load_config(env={})
    assert all(cfg.role_idle(r) == "sleep" for r in C.ROLES)
    assert "2 cores < 7 processes" in cfg.source("idle.feed")
    monkeypatch.setattr(C, "_available_cpus", lambda: 16)
    cfg = load_config(env={})
    assert cfg.idle.feed == "yield" and cfg.idle.watchdog == "sleep"
    assert "busy" not in {cfg.role_idle(r) for r in C.ROLES}  # busy only when asked for


def test_builtin_profiles_and_file_profile_wins(tmp_path):
    cfg = load_config(profile="ci", env={})
    assert all(cfg.role_cpu(r) is None for r in C.ROLES)
    assert cfg.source("cpus.feed") == "profile ci (built-in)"
    f = write(tmp_path, "c.toml", 'profile = "ci"\n[profiles.ci]\nexporter = { port = 1234 }\n')
    cfg = load_config(f, env={})
    assert cfg.exporter.port == 1234 and cfg.cpus.feed == 0  # file's ci replaces the built-in
    cfg = load_config(f, env={"MMSHM_PROFILE": "laptop"})
    assert cfg.profile == "laptop" and cfg.cpus.feed is None


def test_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match=r"profile = 'nope' \(from argument\): no such profile; expected one of ci, laptop"):
        load_config(profile="nope", env={})


def test_state_paths_derive_from_systemd_state_directory():
    cfg = load_config(env={"STATE_DIRECTORY": "/var/lib/mmshm", "MMSHM_INSTANCE": "blue"})
    assert cfg.state_dir == "/var/lib/mmshm"
    assert cfg.recorder.sqlite_path == "/var/lib/mmshm/blue/journal.sqlite"
    assert cfg.risk.postmortem_dir == "/var/lib/mmshm/blue/postmortem"
    assert "auto" in cfg.source("recorder.capture_dir")
    cfg = load_config(cli_overrides=["recorder.sqlite_path=/tmp/j.db"], env={"HOME": "/h"})
    assert cfg.recorder.sqlite_path == "/tmp/j.db" and cfg.state_dir == "/h/.local/state/mmshm"


@pytest.mark.parametrize("kw, expected", [
    ({"cli_overrides": ["risk.dayly_loss_pct=1"]},
     r"unknown key risk.dayly_loss_pct = '1' \(from cli --set\): did you mean risk.daily_loss_pct\?"),
    ({"cli_overrides": ["riks.x=1"]}, r"unknown key riks.x .*did you mean \[risk\]\? known top-level keys and sections: instance, mode"),
    ({"env": {"MMSHM_RISK__DAILY_LOSS_PCT": "-1"}},
     r"risk.daily_loss_pct = -1.0 \(from env MMSHM_RISK__DAILY_LOSS_PCT\): expected a value > 0"),
    ({"env": {"MMSHM_SEGMENTS__MD_CAPACITY": "1000"}},
     r"segments.md_capacity = 1000 \(from env MMSHM_SEGMENTS__MD_CAPACITY\): expected a power of two"),
    ({"env": {"EXCHANGE_ENV": "prod"}},
     r"mode = 'prod' \(from env EXCHANGE_ENV\): expected one of observe, shadow, paper, testnet, live"),
    ({"cli_overrides": {"cpus": {"feed": -1}}}, r"cpus.feed = -1 \(from cli\): expected a value >= 0"),
    ({"cli_overrides": ["cpus.feed=x"]}, r"cpus.feed = 'x' \(from cli --set\): expected an integer or \"none\""),
    ({"cli_overrides": ["quoter.levels=2.5"]}, r"quoter.levels = '2.5' .*expected an integer"),
    ({"cli_overrides": ["quoter.levels=6"]}, r"quoter.levels = 6 .*expected a value <= 5"),
    ({"cli_overrides": ["executor.prefer_ws=maybe"]}, r"expected true or false"),
    ({"cli_overrides": ["risk.daily_loss_pct=nan"]}, r"expected a finite number"),
    ({"cli_overrides": ["instance=a-b"]}, r"instance = 'a-b' \(from cli --set\): expected 1-40 letters"),
    ({"cli_overrides": ["risk.margin_alert_pct=85"]},
     r"risk.margin_alert_pct = 85.0 \(from cli --set\) must be < risk.margin_reduce_only_pct = 80.0 \(from default\)"),
    ({"cli_overrides": ["executor.deadman_refresh_ms=20000"]}, r"deadman_refresh_ms .* must be <"),
    ({"cli_overrides": ["watchdog.kill_signal=SIGFOO"]}, r"expected a signal name"),
    ({"cli_overrides": ["watchdog.critical_roles=feed,bogus"]}, r"expected one of feed, quoter"),
    ({"cli_overrides": ["mode=live"]}, r"mode = 'live' .* needs a real venue"),
    ({"cli_overrides": ["venue.name=replay"]}, r"expected a capture file"),
    ({"cli_overrides": ["risk=1"]}, r"risk = 1 \(from cli\): expected a table|unknown key"),
    ({"cli_overrides": ["nokv"]}, r"expected KEY=VALUE"),
    ({"cli_overrides": ["quoter.levels=4", "quoter.level_sizes=[1,1]"]}, r"expected at least quoter.levels = 4 sizes"),
    ({"cli_overrides": ["quoter.level_sizes=[1,0,1]"]}, r"quoter.level_sizes = \(1, 0, 1\) .*expected a value >= 1"),
    ({"cli_overrides": ["quoter.model=as"]}, r"expected one of fixed, avellaneda_stoikov, glft"),
    ({"cli_overrides": ["quoter.vol_warmup_s=60"]}, r"never warms up"),
])
def test_errors_name_key_value_source_and_expectation(kw, expected):
    kw.setdefault("env", {})
    with pytest.raises(ConfigError, match=expected):
        load_config(**kw)


def test_all_problems_reported_at_once(tmp_path):
    f = write(tmp_path, "bad.toml", '[risk]\ndrawdown_pct = "x"\n[segments]\norders_capacity = 3\nbogus = 1\n')
    with pytest.raises(ConfigError) as ei:
        load_config(f, env={})
    assert any("unknown key segments.bogus" in p and f"file {f}" in p for p in ei.value.problems)
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, "bad2.toml", '[risk]\ndrawdown_pct = "x"\n[segments]\norders_capacity = 3\n'), env={})
    assert len(ei.value.problems) == 2
    assert "risk.drawdown_pct = 'x'" in str(ei.value) and "expected a number" in str(ei.value)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "x.toml", "[risk\n"), env={})
    with pytest.raises(ConfigError, match=r"expected a table \[risk\]"):
        load_config(write(tmp_path, "y.toml", "risk = 3\n"), env={})


def test_config_path_from_env(tmp_path):
    f = write(tmp_path, "e.toml", 'instance = "fromenv"\n')
    assert load_config(env={"MMSHM_CONFIG": str(f)}).instance == "fromenv"


@pytest.mark.parametrize("name", ["mmshm.toml", "ci.toml", "binance-testnet.toml"])
def test_example_files_are_valid(name):
    cfg = load_config(REPO / "config" / name, env={})
    if name == "binance-testnet.toml":
        assert cfg.mode == "testnet" and cfg.venue.name == "binance-usdm"
    if name == "mmshm.toml":
        # the example spells out the defaults: same values as no file at all
        assert cfg == load_config(env={})
        assert load_config(REPO / "config" / name, "production", env={}).idle.feed == "busy"


def test_to_dict_roundtrip_through_cli_overrides():
    cfg = load_config(cli_overrides=["risk.leverage=7"], env={})
    again = load_config(cli_overrides=cfg.to_dict(), env={})
    assert again == cfg


def test_credentials_from_directory_win_over_env_and_are_masked(tmp_path):
    (tmp_path / "api_key").write_text("AKEYabcdefghijklmnopWXYZ\n")
    (tmp_path / "api_secret").write_text("SECRabcdefghijklmnop5678")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "MMSHM_API_KEY": "envkey-0123456789"}
    creds = load_credentials(env)
    assert creds.api_key == "AKEYabcdefghijklmnopWXYZ" and creds.api_secret == "SECRabcdefghijklmnop5678"
    text = repr(creds) + str(creds) + f"{creds}"
    assert "AKEY...WXYZ" in text and "SECR...5678" in text
    assert "abcdefghijklmnop" not in text
    assert creds.present and "CREDENTIALS_DIRECTORY" in creds.source


def test_credentials_from_env_and_required():
    creds = load_credentials({"MMSHM_API_KEY": "k" * 20, "MMSHM_API_SECRET": "tiny"})
    assert creds.api_secret == "tiny" and "tiny" not in repr(creds)
    assert not load_credentials({}).present
    with pytest.raises(ConfigError, match="credentials missing: api_key, api_secret"):
        load_credentials({}, required=True)
    import pickle
    with pytest.raises(TypeError):
        pickle.dumps(creds)


def test_cli_show_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSHM_RISK__DAILY_LOSS_PCT", "0.4")
    rc = cli_main(["config", "show", "--json", "--set", "quoter.levels=2", "risk", "quoter.levels"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["values"]["risk.daily_loss_pct"] == {"value": 0.4, "source": "env MMSHM_RISK__DAILY_LOSS_PCT"}
    assert out["values"]["quoter.levels"] == {"value": 2, "source": "cli --set"}
    assert "cpus.feed" not in out["values"]


def test_cli_show_table_and_check(capsys, monkeypatch):
    monkeypatch.delenv("MMSHM_CONFIG", raising=False)
    assert cli_main(["config", "show", "--profile", "ci", "cpus"]) == 0
    out = capsys.readouterr().out
    assert "cpus.feed" in out and "profile ci (built-in)" in out
    assert cli_main(["config", "check", "--set", "segments.md_capacity=3"]) == 2
    assert "segments.md_capacity = 3 (from cli --set): expected a power of two" in capsys.readouterr().err


def test_sections_feed_the_parts_constructors():
    """[quoter] builds QuoterParams and [watchdog] a WatchdogPolicy, key for key."""
    from mmshm.monitor.policy import WatchdogPolicy
    from mmshm.strategy.params import Model, QuoterParams

    cfg = load_config(env={})
    assert QuoterParams(**C.quoter_params_kwargs(cfg)) == QuoterParams()
    cfg = load_config(cli_overrides=["quoter.model=glft", "watchdog.role_timeouts.feed=0.5",
                                     "watchdog.kill_signal=sigterm"], env={})
    qp = QuoterParams(**C.quoter_params_kwargs(cfg))
    assert qp.model is Model.GLFT
    pol = WatchdogPolicy.from_mapping(C.section_mapping(cfg.watchdog))
    assert pol.timeout_s("feed") == 0.5 and pol.timeout_s("quoter") == cfg.watchdog.heartbeat_timeout_s
    assert pol.kill_signal == 15 and pol.is_critical("quoter")
    assert pol.idle_limits == {"feed": 30.0}


def test_empty_credential_files_count_as_absent(tmp_path):
    """tmpfiles creates empty LoadCredential sources so paper mode starts without keys."""
    (tmp_path / "api_key").write_text("")
    (tmp_path / "api_secret").write_text("\n")
    creds = load_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert not creds.present and creds.api_key is None and creds.source == "none"
    creds = load_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path), "MMSHM_API_KEY": "k" * 16,
                              "MMSHM_API_SECRET": "s" * 16})
    assert creds.present and creds.source == "env MMSHM_API_KEY, env MMSHM_API_SECRET"


def test_every_key_is_documented_and_show_doc(capsys):
    assert all(C.describe_key(k) for k in C.leaf_keys())
    assert cli_main(["config", "show", "--json", "--doc", "risk.daily_loss_action"]) == 0
    out = json.loads(capsys.readouterr().out)["values"]["risk.daily_loss_action"]
    assert out == {"value": "halt", "source": "default", "doc": "action when the daily loss trigger fires"}


def test_config_pickles_for_child_processes():
    import pickle

    cfg = load_config(cli_overrides=["risk.leverage=3"], env={})
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and again.source("risk.leverage") == "cli --set"


def test_risk_section_feeds_risk_params():
    """[risk] maps onto RiskParams/InstrumentRisk with the issue's defaults."""
    from mmshm.risk.params import Action, InstrumentRisk, RiskParams

    cfg = load_config(env={})
    rp = RiskParams(**C.risk_params_kwargs(cfg))
    assert dataclasses.replace(rp, postmortem_dir=None) == RiskParams()
    assert str(rp.postmortem_dir) == cfg.risk.postmortem_dir
    assert rp.error_burst.threshold == 11  # "> 10 per hour" under RiskParams' >= rule
    ir = InstrumentRisk(index=0, symbol="BTCUSDT", quote_per_tick_lot=1, **C.instrument_risk_kwargs(cfg))
    assert ir.max_position == 0 and ir.kelly_fraction == 0.25 and ir.max_order_qty == 10
    cfg = load_config(cli_overrides=["risk.drawdown_action=reduce_only", "risk.equity=1234.5"], env={})
    rp = RiskParams(**C.risk_params_kwargs(cfg))
    assert rp.drawdown.action is Action.REDUCE_ONLY and rp.initial_equity == 123_450_000_000
