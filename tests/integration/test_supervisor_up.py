"""`mmshm up` with the roles that exist: start in order, restart after SIGKILL, stop in order on
SIGINT leaving no segment and no child; --duration; give up + halt; a killed supervisor's
children follow it (parent-death signal); a second `mmshm up` on a live instance refuses.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import orjson
import pytest

from mmshm.agent.proctable import ProcessTable
from mmshm.supervisor.roles import STOP_ORDER, select_roles
from procutil import UpChild as Up, instance_segments, pid_gone


@pytest.mark.timeout(60)
def test_up_starts_restarts_and_stops_in_order(spawn, instance, tmp_path):
    expected, _ = select_roles()
    up = Up(spawn, instance, tmp_path, "--status-interval", "1", "--ready-timeout", "8")
    venue = up.wait_event("venue")
    assert venue["urls"]["rest"].startswith("http://127.0.0.1:")
    up.wait_event("ready", role="watchdog", timeout=25)
    started = {e["role"] for e in up.events("started")}
    assert started >= {"venue", "watchdog", *[r.name for r in expected if r.name != "exporter"]}

    # Every ready role is registered in the process table under the pid we started.
    table = ProcessTable.attach(instance)
    try:
        rows = table.read_all()
        registered = {bytes(r["role"]).rstrip(b"\0").decode(): int(r["pid"]) for r in rows if int(r["pid"])}
    finally:
        table.close()
    crashed = {e["role"] for e in up.events("exited")}     # a role still being built may crash: not ours
    latest = {e["role"]: e["pid"] for e in up.events("ready")}
    for role, pid in latest.items():
        if role not in crashed:
            assert registered.get(role) == pid, (role, pid, registered)

    # SIGKILL one child: the supervisor restarts it (new pid, ready again).
    victim = up.events("ready", role="watchdog")[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    exited = up.wait_event("exited", role="watchdog")
    assert exited["code"] == -signal.SIGKILL and exited["pid"] == victim
    again = up.wait_event("ready", role="watchdog", after=1, timeout=20)
    assert again["pid"] != victim
    up.wait(lambda: [r for r in up.lines if r.get("type") == "status"], what="a status line")

    pids = [e["pid"] for e in up.events("started")]
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=45) == 0
    up.wait_event("stopped", timeout=5)
    order = [e["role"] for e in up.lines if e.get("event") in ("child_stopped", "child_killed")]
    ranked = [r for r in order if r != "venue"]
    assert ranked == sorted(ranked, key=STOP_ORDER.index)
    assert order[-1] == "venue"
    assert instance_segments(instance) == []
    deadline = time.monotonic() + 5
    while not all(pid_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not pid_gone(p)] == []
    # Children's output is in the log directory as JSON lines.
    logs = tmp_path / "logs"
    assert (logs / "supervisor.jsonl").exists() and (logs / "watchdog.jsonl").exists()
    for line in (logs / "watchdog.jsonl").read_bytes().splitlines():
        orjson.loads(line)


@pytest.mark.timeout(60)
def test_duration_stops_by_itself_and_a_second_up_refuses(spawn, instance, tmp_path):
    argv = [sys.executable, "-m", "mmshm", "up", "--profile", "ci", "--instance", instance, "--roles", "watchdog",
            "--duration", "6", "--status-interval", "1", "--log-dir", str(tmp_path / "logs"),
            "--set", f"state_dir={tmp_path}"]
    first = spawn(argv)
    deadline = time.monotonic() + 20
    while not any(s.endswith("-procs") for s in instance_segments(instance)) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = spawn(argv[:-6] + ["--duration", "1"])
    _, err2 = second.communicate(timeout=30)
    assert second.returncode == 1 and b"already running" in err2, err2
    out, err = first.communicate(timeout=40)
    assert first.returncode == 0, err
    status = [ln for ln in out.decode().splitlines() if "PnL=" in ln]
    assert status and "Mode=" in status[0] and "Procs=2/2" in status[-1], out
    assert b"watchdog ready" in err and b"--duration 6 s reached" in err
    assert instance_segments(instance) == []


@pytest.mark.timeout(90)
def test_gives_up_and_halts_after_too_many_restarts(spawn, instance, tmp_path):
    up = Up(spawn, instance, tmp_path, "--roles", "feed,risk,watchdog", "--max-restarts", "1",
            "--restart-window", "60", "--ready-timeout", "10")
    first = up.wait_event("ready", role="watchdog", timeout=40)["pid"]
    assert up.events("ready", role="risk"), up.lines
    os.kill(first, signal.SIGKILL)
    second = up.wait_event("ready", role="watchdog", after=1)["pid"]
    os.kill(second, signal.SIGKILL)
    gave_up = up.wait_event("gave_up", role="watchdog")
    assert "1 restarts within 60 s" in gave_up["msg"]
    halt = up.wait_event("halt")
    assert "watchdog gave up" in halt["msg"] and halt["confirmed"], halt    # risk shows HALT
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=30) == 0
    assert instance_segments(instance) == []


@pytest.mark.timeout(60)
def test_children_follow_a_killed_supervisor(spawn, instance, tmp_path):
    up = Up(spawn, instance, tmp_path, "--roles", "watchdog")
    up.wait_event("ready", role="watchdog")
    pids = [e["pid"] for e in up.events("started")]
    assert len(pids) == 2                       # venue + watchdog
    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while not all(pid_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not pid_gone(p)] == []


@pytest.mark.timeout(60)
def test_venue_restarts_on_its_port(spawn, instance, tmp_path):
    up = Up(spawn, instance, tmp_path, "--roles", "watchdog")
    first = up.wait_event("venue")
    up.wait_event("ready", role="watchdog")
    os.kill(first["pid"], signal.SIGKILL)
    up.wait_event("exited", role="venue")
    second = up.wait_event("venue", after=1)
    assert second["pid"] != first["pid"]
    assert second["urls"]["rest"] == first["urls"]["rest"]     # the roles reconnect where they were
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=30) == 0
    assert instance_segments(instance) == []


@pytest.mark.timeout(60)
def test_sd_notify_is_the_supervisors_alone(spawn, instance, tmp_path):
    """Under a systemd Type=notify unit: READY/STATUS/STOPPING come from `mmshm up`, never a child."""
    import socket

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        proc = spawn([sys.executable, "-m", "mmshm", "up", "--profile", "ci", "--instance", instance,
                      "--roles", "watchdog", "--duration", "3", "--status-interval", "1",
                      "--log-dir", str(tmp_path / "logs"), "--set", f"state_dir={tmp_path}"],
                     env={"NOTIFY_SOCKET": path})
        msgs: list[str] = []
        deadline = time.monotonic() + 40
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                msgs.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
        proc.wait(timeout=10)
        while True:
            try:
                msgs.append(sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                break
    finally:
        sock.close()
    assert proc.returncode == 0
    ready = [m for m in msgs if "READY=1" in m]
    assert len(ready) == 1 and f"MAINPID={proc.pid}" in ready[0], msgs
    assert any(m.startswith("STATUS=PnL=") for m in msgs), msgs
    assert any("STOPPING=1" in m for m in msgs), msgs
