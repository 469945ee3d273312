"""Real signals to a child process running an AgentRunner (sleeping idle strategy).

The child prints one JSON event per line from its hooks; the test reads them with a
deadline and checks the process table row the child heartbeats into.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import time

import pytest

from mmshm.agent.proctable import ProcessTable
from mmshm.records import ProcState
from tests.conftest import PYTHON

CHILD = r"""
import json, os, sys
from mmshm.agent import AgentRunner, FunctionAgent, make_idle
from mmshm.agent.proctable import ProcessTable

def emit(*event):
    print(json.dumps(event), flush=True)

agent = FunctionAgent("child", lambda: 0, on_start=lambda: emit("started", os.getpid()),
                      on_close=lambda: emit("closed"))
runner = AgentRunner(agent, make_idle(), role="tester", proc_table=ProcessTable.open(os.environ["MMSHM_INSTANCE"]),
                     on_stop=lambda: emit("stop_hook"), on_halt=lambda: emit("halt"),
                     on_pause=lambda paused: emit("pause", paused), on_reload=lambda: emit("reload"))
code = runner.run()
emit("exit", code)
sys.exit(code)
"""


class Events:
    """Reads the child's JSON lines without blocking past a deadline."""

    def __init__(self, proc):
        self.proc = proc
        self.buf = b""

    def next(self, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event from child within {timeout}s; stderr: {self._stderr()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"child closed stdout; stderr: {self._stderr()}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-2000:]


def row_of(table: ProcessTable, pid: int):
    for row in table.read_all():
        if int(row["pid"]) == pid:
            return row
    raise AssertionError(f"pid {pid} not in process table")


def wait_state(table, pid, state, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(row_of(table, pid)["state"]) == state:
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never reached {state.name}")


@pytest.mark.timeout(60)
def test_signals_pause_halt_reload_then_graceful_stop(spawn, instance):
    proc = spawn([PYTHON, "-c", CHILD])
    ev = Events(proc)
    assert ev.next()[0] == "started"
    table = ProcessTable.attach(instance)
    try:
        wait_state(table, proc.pid, ProcState.RUNNING)
        hb1 = int(row_of(table, proc.pid)["heartbeat_count"])

        os.kill(proc.pid, signal.SIGUSR2)
        assert ev.next() == ["pause", True]
        wait_state(table, proc.pid, ProcState.PAUSED)
        os.kill(proc.pid, signal.SIGUSR2)
        assert ev.next() == ["pause", False]
        wait_state(table, proc.pid, ProcState.RUNNING)

        os.kill(proc.pid, signal.SIGHUP)
        assert ev.next() == ["reload"]

        os.kill(proc.pid, signal.SIGUSR1)
        assert ev.next() == ["halt"]
        wait_state(table, proc.pid, ProcState.HALTED)
        assert int(row_of(table, proc.pid)["heartbeat_count"]) > hb1  # heartbeating all along

        os.kill(proc.pid, signal.SIGTERM)
        assert ev.next() == ["stop_hook"]
        assert ev.next() == ["closed"]
        assert ev.next() == ["exit", 0]
        assert proc.wait(timeout=10) == 0
        assert int(row_of(table, proc.pid)["state"]) == ProcState.STOPPED
    finally:
        table.close()


@pytest.mark.timeout(60)
def test_sigint_is_a_graceful_stop_too(spawn):
    proc = spawn([PYTHON, "-c", CHILD])
    ev = Events(proc)
    assert ev.next()[0] == "started"
    os.kill(proc.pid, signal.SIGINT)
    assert ev.next() == ["stop_hook"]
    assert proc.wait(timeout=10) == 0


@pytest.mark.timeout(60)
def test_sd_notify_from_runner(spawn, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        proc = spawn([PYTHON, "-c", CHILD], env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        ev = Events(proc)
        assert ev.next()[0] == "started"
        first = sock.recv(4096).decode().split("\n")
        assert "READY=1" in first and f"MAINPID={proc.pid}" in first
        pings = 0
        while pings < 3:  # pinged every 100 ms (half of 200 ms)
            if sock.recv(4096).decode() == "WATCHDOG=1":
                pings += 1
        os.kill(proc.pid, signal.SIGTERM)
        while True:
            msg = sock.recv(4096).decode().split("\n")
            if "STOPPING=1" in msg:
                break
        assert proc.wait(timeout=10) == 0
    finally:
        sock.close()
