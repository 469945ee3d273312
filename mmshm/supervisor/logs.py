"""Children's stdout/stderr into one JSON-lines file per role under the log directory.

Children already log JSON lines (``mmshm.log``); those are written through unchanged.
Anything else (a traceback on stderr, a print) becomes
``{"ts", "ts_ns", "level", "role", "pid", "stream", "msg"}`` so the file stays one JSON
object per line. One small thread per pipe; the terminal only gets the status line.

The pump never blocks the child for long: it reads lines as they come and appends them
to a file (no network, no lock shared with the supervisor loop).
"""
from __future__ import annotations

import datetime as _dt
import threading
import time
from pathlib import Path
from typing import IO

import orjson


def _now() -> tuple[str, int]:
    ns = time.time_ns()
    ts = _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="microseconds")
    return ts.replace("+00:00", "Z"), ns


def wrap_line(line: str, role: str, pid: int, stream: str) -> bytes:
    """A JSON line for one output line: JSON objects pass through, other text is wrapped."""
    text = line.rstrip("\r\n")
    if text.startswith("{") and text.endswith("}"):
        try:
            orjson.loads(text)
            return text.encode() + b"\n"
        except orjson.JSONDecodeError:
            pass
    ts, ns = _now()
    return orjson.dumps({"ts": ts, "ts_ns": ns, "level": "ERROR" if stream == "stderr" else "INFO",
                         "role": role, "pid": pid, "stream": stream, "msg": text}) + b"\n"


class RoleLog:
    """The ``<log_dir>/<role>.jsonl`` file (append; shared by every restart of the role).

    Rotated by size: past ``max_bytes`` the file becomes ``<role>.jsonl.1`` (older ones
    shift up to ``.<backups>``, the oldest is dropped) and a new file is started, so a
    chatty or crash-looping child cannot fill the disk.
    """

    def __init__(self, log_dir: Path, role: str, max_bytes: int = 64 << 20, backups: int = 3) -> None:
        self.path = Path(log_dir) / f"{role}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh = open(self.path, "ab", buffering=0)
        self._size = self._fh.tell()
        self._lock = threading.Lock()
        self.lines = 0
        self.rotations = 0

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fh.closed:
                return
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            self._fh.write(data)
            self._size += len(data)
            self.lines += 1

    def _rotate(self) -> None:
        self._fh.close()
        for i in range(self.backups, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i}"))
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._fh = open(self.path, "ab", buffering=0)
        self._size = 0
        self.rotations += 1

    def event(self, msg: str, level: str = "INFO", **fields) -> None:
        """A supervisor event line in this file (``logger`` = ``mmshm.supervisor``)."""
        ts, ns = _now()
        self.write(orjson.dumps({"ts": ts, "ts_ns": ns, "level": level, "logger": "mmshm.supervisor",
                                 "msg": msg, **fields},
                                default=str) + b"\n")

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def pump(stream: IO[bytes], log: RoleLog, role: str, pid: int, name: str) -> threading.Thread:
    """Start a daemon thread copying ``stream`` line by line into ``log`` until EOF."""

    def run() -> None:
        try:
            for raw in iter(stream.readline, b""):
                log.write(wrap_line(raw.decode("utf-8", "replace"), role, pid, name))
        except (OSError, ValueError):
            pass  # pipe or file closed under us at shutdown
        finally:
            try:
                stream.close()
            except OSError:
                pass

    t = threading.Thread(target=run, name=f"log-{role}-{pid}-{name}", daemon=True)
    t.start()
    return t
