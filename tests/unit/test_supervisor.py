"""Supervisor pieces without child processes: role order, restart policy, status line, commands table."""
from __future__ import annotations

import os
from decimal import Decimal

import orjson
import pytest

from mmshm.config import ROLES as CONFIG_ROLES
from mmshm.records import CommandKind
from mmshm.supervisor import roles
from mmshm.supervisor.backoff import RestartPolicy, RestartTracker
from mmshm.supervisor.commands import CommandInbox, open_table, read_command, send_command
from mmshm.supervisor.logs import wrap_line
from mmshm.supervisor.statusline import FillRate, StatusValues, format_status_line


# --------------------------------------------------------------------------- roles

def test_start_order_follows_the_data_flow():
    names = [r.name for r in roles.ROLES]
    assert names == ["feed", "risk", "quoter", "executor", "recorder", "watchdog", "exporter"]
    assert set(names) == set(CONFIG_ROLES)       # one role list with the config's [cpus]/[idle]


def test_stop_order_executor_first_venue_last():
    assert roles.STOP_ORDER[0] == "executor"
    assert set(roles.STOP_ORDER) == {r.name for r in roles.ROLES}
    assert roles.stop_order(["venue", "exporter", "feed", "executor", "quoter"]) == \
        ["executor", "quoter", "feed", "exporter", "venue"]


def test_executor_gets_the_longest_stop_timeout():
    ex = roles.role_spec("executor")
    assert all(ex.stop_timeout_s >= r.stop_timeout_s for r in roles.ROLES)
    assert ex.module == "mmshm.procs.executor"


def test_select_roles_skips_missing_modules_in_order():
    have = {"risk", "watchdog", "feed"}
    run, missing = roles.select_roles(available=lambda r: r.name in have)
    assert [r.name for r in run] == ["feed", "risk", "watchdog"]
    assert [r.name for r in missing] == ["quoter", "executor", "recorder", "exporter"]
    run, _ = roles.select_roles(only=["watchdog", "feed"], available=lambda r: True)
    assert [r.name for r in run] == ["feed", "watchdog"]          # start order, not argument order
    run, _ = roles.select_roles(skip=["exporter"], available=lambda r: True)
    assert "exporter" not in [r.name for r in run]


def test_select_roles_rejects_unknown_names():
    with pytest.raises(KeyError, match="fead"):
        roles.select_roles(only=["fead"])


def test_module_available_uses_find_spec():
    assert roles.module_available(roles.role_spec("watchdog"))      # procs/watchdog.py exists
    assert not roles.module_available(roles.RoleSpec("no_such_role_xyz"))


# --------------------------------------------------------------------------- restart policy

def test_backoff_grows_exponentially_and_caps():
    t = RestartTracker(RestartPolicy(base_delay_s=0.5, factor=2, max_delay_s=3, max_restarts=100, window_s=1000))
    delays = [t.on_exit(now_s=i, ran_for_s=0.1).delay_s for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert t.total == 6


def test_backoff_resets_after_a_stable_run():
    t = RestartTracker(RestartPolicy(base_delay_s=1, factor=2, stable_after_s=30, max_restarts=100, window_s=1000))
    assert t.on_exit(0, 1).delay_s == 1
    assert t.on_exit(1, 1).delay_s == 2
    assert t.on_exit(100, 60).delay_s == 1       # ran 60 s: back to the base delay


def test_gives_up_after_n_restarts_in_window():
    t = RestartTracker(RestartPolicy(base_delay_s=0, max_restarts=3, window_s=10))
    assert [t.on_exit(i, 0.1).restart for i in range(3)] == [True, True, True]
    d = t.on_exit(3, 0.1)
    assert not d.restart and t.gave_up and "3 restarts within 10 s" in d.reason
    assert not t.on_exit(100, 0.1).restart       # stays given up


def test_old_restarts_leave_the_window():
    t = RestartTracker(RestartPolicy(base_delay_s=0, max_restarts=2, window_s=10))
    assert t.on_exit(0, 0.1).restart
    assert t.on_exit(5, 0.1).restart
    assert t.on_exit(20, 0.1).restart            # both earlier ones are older than 10 s
    assert t.on_exit(21, 0.1).restart
    assert not t.on_exit(22, 0.1).restart        # 20 and 21 are within 10 s: limit of 2 reached


def test_policy_validation():
    with pytest.raises(ValueError):
        RestartPolicy(base_delay_s=5, max_delay_s=1)
    with pytest.raises(ValueError):
        RestartPolicy(max_restarts=0)


# --------------------------------------------------------------------------- status line

def test_status_line_full():
    s = StatusValues(pnl=12.344, position=Decimal("0.005"), base_asset="BTC", spread_bp=4.21, fills=47,
                     mode="NORMAL", fill_rate_per_min=3.21, imbalance=0.123, leadlag_bp=0.8, drawdown=0.003,
                     margin=0.15, kill="OK", procs_up=8, procs_total=8)
    assert format_status_line(s) == (
        "PnL=$12.34 Pos=0.005BTC Spread=4.2bps Fills=47 Mode=NORMAL FillRate=3.2/min "
        "Signals: imb=+0.12 leadlag=+0.8bps Risk: dd=0.3% margin=15% kill=OK Procs=8/8")


def test_status_line_all_missing_is_na():
    line = format_status_line(StatusValues())
    assert line == ("PnL=n/a Pos=n/a Spread=n/a Fills=n/a Mode=n/a FillRate=n/a "
                    "Signals: imb=n/a leadlag=n/a Risk: dd=n/a margin=n/a kill=n/a")


def test_status_line_signs_and_zero():
    s = StatusValues(pnl=-3.2, position=Decimal("-0.010"), base_asset="ETH", imbalance=-0.5, leadlag_bp=-1.25,
                     fills=0, kill="HALT:MANUAL", mode="HALT+PAUSED")
    line = format_status_line(s)
    assert "PnL=-$3.20" in line and "Pos=-0.01ETH" in line and "imb=-0.50" in line
    assert "leadlag=-1.2bps" in line or "leadlag=-1.3bps" in line
    assert "Fills=0" in line and "kill=HALT:MANUAL" in line and "Mode=HALT+PAUSED" in line
    assert "Pos=0BTC" in format_status_line(StatusValues(position=Decimal("0E-3"), base_asset="BTC"))


def test_status_json_is_serialisable():
    s = StatusValues(position=Decimal("0.005"), base_asset="BTC")
    d = orjson.loads(orjson.dumps(s.to_json()))
    assert d["position"] == "0.005" and d["pnl"] is None


def test_fill_rate_over_window():
    fr = FillRate(window_s=60)
    assert fr.update(0, 0) is None
    assert fr.update(30, 5) == pytest.approx(10.0)     # 5 fills in 30 s
    assert fr.update(60, 5) == pytest.approx(5.0)
    assert fr.update(120, 8) == pytest.approx(3.0)     # window slid: (8 - 5) / 60 s
    assert fr.update(130, 2) is None                   # counter went back: executor restarted
    assert fr.update(140, 4) == pytest.approx(12.0)
    assert fr.update(150, None) is None


# --------------------------------------------------------------------------- logs

def test_wrap_line_passes_json_and_wraps_text():
    assert wrap_line('{"a": 1}\n', "feed", 1, "stdout") == b'{"a": 1}\n'
    rec = orjson.loads(wrap_line("Traceback (most recent call last):\n", "feed", 42, "stderr"))
    assert rec["role"] == "feed" and rec["pid"] == 42 and rec["stream"] == "stderr"
    assert rec["level"] == "ERROR" and rec["msg"].startswith("Traceback")
    assert orjson.loads(wrap_line("{not json}", "x", 1, "stdout"))["msg"] == "{not json}"


# --------------------------------------------------------------------------- commands table

def test_commands_sequence_and_inbox(instance):
    assert read_command(instance) is None
    inbox = CommandInbox.open(instance)
    try:
        assert inbox.poll() is None
        c1 = send_command(instance, CommandKind.HALT, "fat finger")
        assert c1.seq == 1 and c1.issuer_pid == os.getpid()
        got = inbox.poll()
        assert got is not None and got.kind == CommandKind.HALT and got.reason == "fat finger" and got.seq == 1
        assert inbox.poll() is None                    # once per command
        send_command(instance, CommandKind.PAUSE)
        send_command(instance, CommandKind.RESUME)
        got = inbox.poll()
        assert got.kind == CommandKind.RESUME and got.seq == 3   # latest value wins
        assert read_command(instance).seq == 3
        late = CommandInbox.open(instance)             # a restarted reader ignores what predates it
        assert late.poll() is None and late.last_seq == 3
        late.close()
    finally:
        inbox.close()


def test_command_reason_is_cut_at_a_character_boundary(instance):
    c = send_command(instance, CommandKind.HALT, "é" * 100)
    assert c.reason == "é" * 32
    assert read_command(instance).reason == "é" * 32


def test_command_waits_for_a_held_claim(instance):
    t = open_table(instance)
    try:
        t.claim_row(os.getpid() + 10_000_000)     # held by "someone else" (no such pid -> reclaimed as dead)
        c = send_command(instance, CommandKind.PAUSE, claim_timeout_s=0.2)
        assert c.seq == 1
        with pytest.raises(ValueError):
            send_command(instance, CommandKind.NONE)
        t.claim_row(os.getppid())                  # held by a live process: wait, then a clear error
        with pytest.raises(TimeoutError, match="held by pid"):
            send_command(instance, CommandKind.PAUSE, claim_timeout_s=0.1)
    finally:
        t.close()


# --------------------------------------------------------------------------- CLI arguments, launch wrapper

def test_up_argument_errors(capsys):
    from mmshm.cli import main

    assert main(["up", "--status-interval", "0"]) == 2
    assert main(["up", "--duration", "-1"]) == 2
    assert main(["up", "--roles", "fead", "--profile", "ci"]) == 2
    assert "unknown role 'fead'" in capsys.readouterr().err
    assert main(["up", "--set", "risk.daily_loss_pct=-1"]) == 2
    assert "risk.daily_loss_pct" in capsys.readouterr().err


def test_children_get_the_same_config_arguments():
    import argparse

    from mmshm.cli.up import _config_args

    ns = argparse.Namespace(config="c.toml", profile="ci", override_file=None, set=["a.b=1"], instance="x1")
    assert _config_args(ns) == ["--config", "c.toml", "--profile", "ci", "--set", "a.b=1", "--set", "instance=x1"]


def test_launch_wrapper(tmp_path):
    import subprocess
    import sys

    base = [sys.executable, "-m", "mmshm.supervisor.launch"]
    assert subprocess.run(base + ["1"], capture_output=True, timeout=30).returncode == 2
    marker = tmp_path / "ran"
    prog = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"]
    # Our pid is the parent: the program is exec'd.
    assert subprocess.run(base + [str(os.getpid()), "--", *prog], timeout=30).returncode == 0
    assert marker.exists()
    marker.unlink()
    # Not our parent (the supervisor is gone): nothing starts.
    assert subprocess.run(base + ["1", "--", *prog], timeout=30).returncode == 0
    assert not marker.exists()


def test_role_log_rotates_by_size(tmp_path):
    from mmshm.supervisor.logs import RoleLog

    log = RoleLog(tmp_path, "feed", max_bytes=100, backups=2)
    line = b'{"n": "' + b"x" * 40 + b'"}\n'          # 50 bytes
    for _ in range(7):
        log.write(line)
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["feed.jsonl", "feed.jsonl.1", "feed.jsonl.2"]     # the oldest was dropped
    assert log.rotations == 3 and log.lines == 7
    assert (tmp_path / "feed.jsonl").read_bytes() == line
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    again = RoleLog(tmp_path, "feed", max_bytes=100, backups=2)      # a restart appends, size known
    again.write(line)
    again.write(line)
    again.close()
    assert again.rotations == 1
