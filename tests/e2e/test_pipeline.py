"""The whole pipeline, end to end, on the simulated venue: `mmshm up` (profile ci, every
role a real process, MMSHM_IDLE=sleep) makes fills within the position limit, risk's
position equals the venue's, the journal holds every fill exactly once; SIGKILL of the
quoter or the feed -> watchdog HALT -> the executor cancels everything within 1 s (a
safety-latency requirement of the issue), quoting resumes after restart and re-entry;
`mmshm halt` / `mmshm resume`; Ctrl-C leaves no segment and no child.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from pipeline_harness import Up
from procutil import instance_segments, pid_gone

pytestmark = pytest.mark.slow

#: make the safety path observable within a test: re-entry after 2 s instead of 5 min, the
#: watchdog's HALT cleared 1 s after every critical role is back, a second halt within the
#: run not escalated to "halted for the day", losing fills (a real pause trigger in the
#: sim's adverse flow) not pausing for 4 h.
FAST_REENTRY = ("--set", "risk.reentry_wait_s=2", "--set", "watchdog.auto_clear_halt_s=1",
                "--set", "risk.rehalt_window_s=0", "--set", "risk.losing_fills=1000")


def wait_for(pred, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def stop_and_check_clean(up: Up) -> None:
    """Ctrl-C: exit 0, every /dev/shm/mmshm-<instance>-* segment gone, every child gone."""
    children = up.children()
    assert up.interrupt(timeout=60) == 0, up.stderr[-2000:]
    assert instance_segments(up.instance) == []
    assert all(pid_gone(p) for p in children), [p for p in children if not pid_gone(p)]


@pytest.mark.timeout(180)
def test_up_makes_fills_within_limits_and_books_agree(spawn, instance, tmp_path):
    up = Up(spawn, instance, tmp_path, "--set", "risk.losing_fills=1000")
    up.start()
    wait_for(lambda: up.open_orders() > 0, 30, "quotes at the venue")
    samples, worst, limit_seen = 0, 0, 0
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end:
        row = up.control_row(1)
        if row is not None and int(row["version"]) > 0:
            pos, cap = abs(int(row["position"])), int(row["max_position"])
            samples += 1
            worst = max(worst, pos)
            limit_seen = max(limit_seen, cap)
            assert pos <= cap or cap == 0 and pos == 0, f"|position| {pos} lots over the limit {cap}"
        time.sleep(0.25)
    assert samples > 100 and limit_seen > 0

    # stop quoting (pause pulls every quote), then compare the three books
    assert up.cli("pause").returncode == 0
    wait_for(lambda: up.open_orders() == 0, 15, "no open order after pause")
    def books_agree():
        v, r = up.venue_position(), up.control_row(1)
        return (v,) if r is not None and int(r["position"]) == v else None
    (venue_pos,) = wait_for(books_agree, 15, "risk's position = the venue's")
    trades = up.venue_trades()
    assert len(trades) >= 1, "no fill in a minute of quoting"
    venue_ids = sorted(int(t["id"]) for t in trades)
    signed = sum((1 if t["side"] == "BUY" else -1) * round(float(t["qty"]) * 1000) for t in trades)
    assert signed == up.venue_position()

    def journal_ids():
        with up.journal() as conn:
            return sorted(r[0] for r in conn.execute("SELECT trade_id FROM fills"))
    ids = wait_for(lambda: (lambda j: j if j == venue_ids else None)(journal_ids()), 15,
                   f"journal fills = the venue's {len(venue_ids)} trades")
    assert len(ids) == len(set(ids))                  # every fill exactly once
    with up.journal() as conn:
        net = conn.execute("SELECT COALESCE(SUM(CASE side WHEN 1 THEN qty ELSE -qty END), 0) FROM fills").fetchone()[0]
    assert net == up.venue_position()
    print(f"fills={len(trades)} worst|pos|={worst} limit={limit_seen} venue_pos={venue_pos}")
    stop_and_check_clean(up)


def _kill_and_measure(up: Up, role: str) -> float:
    """SIGKILL ``role``; seconds until the venue shows no open order (polled every ~5 ms)."""
    wait_for(lambda: up.open_orders() > 0, 60, f"quotes at the venue before killing {role}")
    readies = len(up.events("ready", role=role))
    pid = up.pid(role)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: up.open_orders() == 0, 10, f"no open order after SIGKILL of {role}", every=0.005)
    elapsed = time.monotonic() - t0
    up.wait_event("ready", role=role, after=readies, timeout=30)      # restarted by the supervisor
    wait_for(lambda: up.open_orders() > 0, 60, f"quoting again after {role} restart and re-entry")
    return elapsed


@pytest.mark.timeout(240)
def test_kill_quoter_or_feed_halts_within_a_second_then_resumes_and_manual_halt(spawn, instance, tmp_path):
    up = Up(spawn, instance, tmp_path, *FAST_REENTRY)
    up.start()
    for role in ("quoter", "feed"):
        elapsed = _kill_and_measure(up, role)
        print(f"SIGKILL {role} -> zero open orders in {elapsed * 1000:.0f} ms")
        assert elapsed <= 1.0, f"cancel-all after SIGKILL of {role} took {elapsed:.3f} s (> 1 s)"

    # manual halt: zero open orders; resume: quoting again
    halt = up.cli("halt", "--reason", "e2e")
    assert halt.returncode == 0, halt.stderr
    wait_for(lambda: up.open_orders() == 0, 5, "no open order after mmshm halt")
    time.sleep(1.0)
    assert up.open_orders() == 0, "quoting while halted"
    resume = up.cli("resume")
    assert resume.returncode == 0, resume.stderr
    wait_for(lambda: up.open_orders() > 0, 30, "quoting after mmshm resume")
    stop_and_check_clean(up)
