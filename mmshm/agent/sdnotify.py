"""sd_notify(3) without libsystemd: one datagram per message to ``$NOTIFY_SOCKET``.

systemd's protocol is newline-separated ``KEY=VALUE`` assignments sent as a single
datagram over an AF_UNIX socket; a leading ``@`` in the address means the abstract
namespace. With ``Type=notify`` and ``WatchdogSec=``, systemd sets ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``) and restarts the service if ``WATCHDOG=1`` does not arrive in time;
we ping at half that interval, as sd_watchdog_enabled(3) recommends.

Without ``NOTIFY_SOCKET`` every call is a cheap no-op, so processes run the same way
under systemd, in a terminal and in tests. A failing send is counted, never raised: a
dead notify socket must not take a trading process down.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Mapping


def _address(raw: str) -> str | bytes:
    """A socket address from ``$NOTIFY_SOCKET`` (``@name`` = abstract namespace)."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


class SdNotifier:
    """Sends READY/STATUS/STOPPING/WATCHDOG to systemd, if it is listening.

    ``env`` defaults to ``os.environ`` (read once, at construction); ``pid`` is the pid
    that ``WATCHDOG_PID`` must match for the watchdog interval to apply to us.
    """

    def __init__(self, env: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if env is None else env
        self.socket_path = env.get("NOTIFY_SOCKET") or None
        self.errors = 0
        self.sent = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        self._addr = _address(self.socket_path) if self.socket_path else None
        self.watchdog_interval_ns = _watchdog_interval_ns(env, os.getpid() if pid is None else pid)
        self._next_ping_ns = 0

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_interval_ns > 0

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False when disabled or it failed."""
        if self._addr is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._addr)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (optionally with a STATUS line): start-up finished, the unit is active."""
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """STATUS=...: the free-text line `systemctl status` shows."""
        return self.notify("STATUS=" + _one_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutdown has begun."""
        lines = ["STOPPING=1"]
        if status is not None:
            lines.append("STATUS=" + _one_line(status))
        return self.notify(*lines)

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask for more time to start/stop (e.g. a slow cancel-all)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1 now, regardless of schedule."""
        return self.notify("WATCHDOG=1")

    def maybe_ping(self, now_ns: int | None = None) -> bool:
        """WATCHDOG=1 if half of ``WATCHDOG_USEC`` has passed since the last ping.

        Cheap enough for every duty cycle: without a watchdog it is one attribute test.
        """
        if self.watchdog_interval_ns <= 0 or self._addr is None:
            return False
        now = time.monotonic_ns() if now_ns is None else now_ns
        if now < self._next_ping_ns:
            return False
        self._next_ping_ns = now + self.watchdog_interval_ns
        return self.watchdog()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval_ns(env: Mapping[str, str], pid: int) -> int:
    """Half of ``WATCHDOG_USEC`` in ns, or 0 when no watchdog applies to ``pid``."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return 0
    wd_pid = env.get("WATCHDOG_PID")
    if wd_pid:
        try:
            if int(wd_pid) != pid:
                return 0  # the watchdog is meant for another process (e.g. our parent)
        except ValueError:
            return 0
    try:
        value = int(usec)
    except ValueError:
        return 0
    return value * 1000 // 2 if value > 0 else 0


def _one_line(text: str) -> str:
    """STATUS must be one line: systemd would read a newline as the next assignment."""
    return " ".join(str(text).split())
