"""Helpers for tests that start processes: an instance's segments, and whether a pid is gone."""
from __future__ import annotations

import os
from pathlib import Path

SHM_DIR = Path("/dev/shm")


def instance_segments(instance: str) -> list[str]:
    """Names of every /dev/shm/mmshm-<instance>-* segment, sorted."""
    return sorted(p.name for p in SHM_DIR.glob(f"mmshm-{instance}-*"))


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs; a zombie is gone for our purposes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class UpChild:
    """`mmshm up --profile ci --json` for one test instance, started through the ``spawn``
    fixture; a thread collects its JSON lines (text lines kept as ``{"type": "text"}``)."""

    #: default wait of :meth:`wait_event`, s
    event_timeout = 20.0

    def __init__(self, spawn, instance: str, tmp: Path, *extra: str) -> None:
        import sys
        import threading

        self.instance = instance
        self.tmp = tmp
        argv = [sys.executable, "-m", "mmshm", "up", "--profile", "ci", "--instance", instance, "--json",
                "--log-dir", str(tmp / "logs"), "--set", f"state_dir={tmp}", *extra]
        self.proc = spawn(argv)
        self.lines: list[dict] = []
        self.stderr = b""
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        import orjson

        for raw in iter(self.proc.stdout.readline, b""):
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                rec = {"type": "text", "msg": raw.decode(errors="replace")}
            with self._cond:
                self.lines.append(rec)
                self._cond.notify_all()

    def _read_err(self) -> None:
        self.stderr = self.proc.stderr.read()

    def events(self, event: str, **match) -> list[dict]:
        with self._cond:
            return [r for r in self.lines if r.get("event") == event
                    and all(r.get(k) == v for k, v in match.items())]

    def wait(self, pred, timeout: float = 20.0, what: str = ""):
        """``pred()`` once truthy (re-checked on every new line); AssertionError with the last
        lines and stderr at the deadline or when `mmshm up` exited first."""
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"timed out waiting for {what}; rc={self.proc.poll()} "
                                         f"lines={self.lines[-15:]} stderr={self.stderr[-2000:]!r}")
                self._cond.wait(min(left, 0.2))

    def wait_event(self, event: str, timeout: float | None = None, after: int = 0, **match) -> dict:
        return self.wait(lambda: next(iter(self.events(event, **match)[after:]), None),
                         self.event_timeout if timeout is None else timeout, f"event {event} {match}")
