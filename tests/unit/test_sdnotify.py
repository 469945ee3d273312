"""sd_notify against a real AF_UNIX datagram socket bound by the test."""
from __future__ import annotations

import os
import socket
import uuid

import pytest

from mmshm.agent.sdnotify import SdNotifier


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def recv(sock) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def nothing_pending(sock) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
        return False
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(5)


@pytest.mark.timeout(20)
def test_ready_status_stopping(notify_socket):
    path, sock = notify_socket
    n = SdNotifier({"NOTIFY_SOCKET": path})
    assert n.enabled and not n.watchdog_enabled
    assert n.ready(status="feed up\nsecond line")
    assert recv(sock) == ["READY=1", f"MAINPID={os.getpid()}", "STATUS=feed up second line"]
    assert n.status("3 instruments")
    assert recv(sock) == ["STATUS=3 instruments"]
    assert n.stopping()
    assert recv(sock) == ["STOPPING=1"]
    assert n.sent == 3 and n.errors == 0
    n.close()


@pytest.mark.timeout(20)
def test_abstract_namespace_socket():
    name = f"mmshm-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        n = SdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert recv(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()


@pytest.mark.timeout(20)
def test_watchdog_pings_at_half_interval(notify_socket):
    path, sock = notify_socket
    n = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval_ns == 1_000_000_000
    t0 = 10_000_000_000
    assert n.maybe_ping(t0)
    assert recv(sock) == ["WATCHDOG=1"]
    assert not n.maybe_ping(t0 + 999_999_999)
    assert nothing_pending(sock)
    assert n.maybe_ping(t0 + 1_000_000_000)
    assert recv(sock) == ["WATCHDOG=1"]


def test_watchdog_pid_for_another_process_is_ignored(notify_socket):
    path, _ = notify_socket
    n = SdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert not n.watchdog_enabled and not n.maybe_ping()


def test_noop_without_notify_socket():
    n = SdNotifier({})
    assert not n.enabled
    assert not n.ready() and not n.maybe_ping() and not n.stopping()
    assert n.sent == 0 and n.errors == 0


def test_send_failure_is_counted_not_raised(tmp_path):
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert not n.ready()
    assert n.errors == 1 and "FileNotFoundError" in n.last_error
