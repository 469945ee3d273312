"""Watchdog policy and classification rules on fabricated snapshots (no processes, no shm)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from mmshm.agent.proctable import process_alive
from mmshm.monitor.classify import Classifier
from mmshm.monitor.model import InstanceSnapshot, ProcessInfo, ReaderInfo, SegmentInfo
from mmshm.monitor.policy import WatchdogPolicy, parse_signal
from mmshm.records import ProcState, Verdict

S = 1_000_000_000
ME = 999_999


def proc(row=0, pid=100, role="feed", state=ProcState.RUNNING, hb=0, alive=True, started=1):
    return ProcessInfo(row=row, pid=pid, role=role, state=state, cpu=-1, started_ts=started,
                       heartbeat_mono=hb, heartbeat_count=1, work_count=0, idle_cycles=0, counters={},
                       alive=alive)


def seg(name="md", creator=100, cursor=1, readers=()):
    return SegmentInfo(name=name, posix_name=f"/mmshm-x-{name}", kind="BROADCAST", dtype_name="MARKET_EVENT",
                       capacity=1024, creator_pid=creator, creator_alive=True, epoch=1, cursor=cursor,
                       write_count=cursor, refused=0, alarm=0, heartbeat_mono=0, heartbeat_count=0,
                       created_ts=0, readers=list(readers))


def reader(lag, pid=200, name="quoter"):
    return ReaderInfo(slot=0, name=name, required=False, pid=pid, alive=True, cursor=1, lag=lag, gaps=0,
                      lost=0, polled=0, heartbeat_mono=0)


def snap(now, processes, segments=()):
    return InstanceSnapshot("x", now, processes=list(processes), segments=list(segments))


def verdicts(classifier, s):
    return {a.process.pid: (a.verdict, a.reason) for a in classifier.assess(s)}


def test_dead_hung_ok_and_self():
    c = Classifier(WatchdogPolicy(heartbeat_timeout_s=1.0, role_timeouts={"executor": 3.0}), self_pid=ME)
    now = 100 * S
    out = verdicts(c, snap(now, [
        proc(0, pid=1, alive=False),                                   # gone while RUNNING
        proc(1, pid=2, hb=now - 2 * S),                                # stale
        proc(2, pid=3, role="executor", hb=now - 2 * S),               # stale but its timeout is 3 s
        proc(3, pid=4, alive=False, state=ProcState.STOPPED),          # stopped cleanly
        proc(4, pid=ME, hb=1),                                          # the watchdog itself
        proc(5, pid=6, state=ProcState.FREE),                          # free rows are skipped
    ]))
    assert out[1][0] == Verdict.DEAD and "gone while RUNNING" in out[1][1]
    assert out[2][0] == Verdict.HUNG and "heartbeat 2.000s old > 1s" in out[2][1]
    assert out[3][0] == Verdict.OK
    assert out[4] == (Verdict.OK, "stopped cleanly")
    assert out[ME][0] == Verdict.OK
    assert 6 not in out


def test_starting_and_stopping_get_their_own_timeouts():
    c = Classifier(WatchdogPolicy(heartbeat_timeout_s=1.0, starting_timeout_s=10, stopping_timeout_s=20), ME)
    now = 100 * S
    out = verdicts(c, snap(now, [
        proc(0, pid=1, state=ProcState.STARTING, hb=now - 5 * S),
        proc(1, pid=2, state=ProcState.STOPPING, hb=now - 15 * S),
        proc(2, pid=3, state=ProcState.STOPPING, hb=now - 25 * S),
    ]))
    assert out[1][0] == Verdict.OK and out[2][0] == Verdict.OK
    assert out[3][0] == Verdict.HUNG and "STOPPING" in out[3][1]


def test_dead_row_replaced_by_a_newer_process_of_the_role_is_ok():
    c = Classifier(WatchdogPolicy(), ME)
    now = 100 * S
    out = verdicts(c, snap(now, [proc(0, pid=1, alive=False, started=10), proc(1, pid=2, hb=now, started=20)]))
    assert out[1] == (Verdict.OK, "pid 1 gone, replaced by pid 2")


def test_idle_writer_after_limit_and_ok_again_when_cursor_moves():
    c = Classifier(WatchdogPolicy(idle_limits={"feed": 1.0}), ME)
    t = 100 * S
    assert verdicts(c, snap(t, [proc(hb=t)], [seg(cursor=5)]))[100][0] == Verdict.OK
    assert verdicts(c, snap(t + S // 2, [proc(hb=t + S // 2)], [seg(cursor=5)]))[100][0] == Verdict.OK
    v, reason = verdicts(c, snap(t + 2 * S, [proc(hb=t + 2 * S)], [seg(cursor=5)]))[100]
    assert v == Verdict.IDLE and "md still for 2.000s > 1s (cursor 5)" in reason
    # paused processes are not idle; a moving cursor clears it
    assert verdicts(c, snap(t + 3 * S, [proc(hb=t + 3 * S, state=ProcState.PAUSED)], [seg(cursor=5)]))[100][0] == Verdict.OK
    assert verdicts(c, snap(t + 4 * S, [proc(hb=t + 4 * S)], [seg(cursor=6)]))[100][0] == Verdict.OK


def test_roles_without_idle_limit_or_segments_are_never_idle():
    c = Classifier(WatchdogPolicy(idle_limits={"feed": 1.0}), ME)
    t = 100 * S
    for dt in (0, 5 * S):
        out = verdicts(c, snap(t + dt, [proc(pid=100, role="risk", hb=t + dt), proc(1, pid=101, hb=t + dt)],
                                [seg(creator=100), seg("procs", creator=101)]))
        assert out == {100: (Verdict.OK, ""), 101: (Verdict.OK, "")}


def test_slow_reader_after_consecutive_growth():
    c = Classifier(WatchdogPolicy(slow_reader_checks=3, slow_reader_min_lag=100), ME)
    t = 100 * S
    results = []
    for i, lag in enumerate([50, 150, 300, 450, 460, 400]):
        s = snap(t + i * S, [proc(pid=100, hb=t + i * S), proc(1, pid=200, role="quoter", hb=t + i * S)],
                 [seg(cursor=1000 + i, readers=[reader(lag)])])
        results.append(verdicts(c, s)[200][0])
    assert results == [Verdict.OK, Verdict.OK, Verdict.OK, Verdict.SLOW_READER, Verdict.SLOW_READER, Verdict.OK]


def test_policy_from_mapping_and_config():
    p = WatchdogPolicy.from_mapping({"interval_s": 0.1, "kill_signal": "TERM", "critical_roles": ["feed"],
                                     "role_timeouts": {"feed": 0.5}})
    assert p.kill_signal == signal.SIGTERM and p.critical_roles == frozenset({"feed"})
    assert p.timeout_s("feed") == 0.5 and p.timeout_s("risk") == p.heartbeat_timeout_s
    with pytest.raises(ValueError, match="unknown watchdog policy keys: intervall"):
        WatchdogPolicy.from_mapping({"intervall": 1})
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        WatchdogPolicy(interval_s=0)
    with pytest.raises(ValueError, match=r"role_timeouts\['feed'\]"):
        WatchdogPolicy(role_timeouts={"feed": -1})
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal("SIGNOPE")
    assert parse_signal("9") == parse_signal("SIGKILL") == parse_signal(9) == 9

    from mmshm.config import default_config

    cfg = default_config()
    p = WatchdogPolicy.from_config(cfg.watchdog)
    assert p.interval_s == cfg.watchdog.interval_s
    assert p.critical_roles == frozenset(cfg.watchdog.critical_roles)
    assert p.kill_signal == signal.SIGKILL


def test_process_alive_detects_reused_pid():
    now = time.time_ns()
    assert process_alive(os.getpid(), now)
    assert not process_alive(os.getpid(), 1_000_000_000)  # "claimed" in 1970: our pid is a reuse
    assert not process_alive(0) and not process_alive(-5)
