"""Market-data capture files written by the recorder: raw ``MARKET_EVENT`` records.

A capture is a 128-byte text header (magic, dtype hash, record size, instance, start
time; space-padded, newline-terminated) followed by the records exactly as they were in
the ``md`` ring, so ``read_md_capture`` is one ``np.fromfile``. A record torn by a crash
at the end of the file is ignored on reading.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from mmshm.records import MARKET_EVENT, dtype_hash

MAGIC = "MMSHM-MD1"
HEADER_SIZE = 128


class CaptureError(ValueError):
    """Not a capture file, or one written with another MARKET_EVENT layout."""


class MdCaptureWriter:
    """Appends MARKET_EVENT batches to ``<dir>/md-<instance>-<utc>.mdcap`` (created 0600)."""

    def __init__(self, directory: str | os.PathLike, instance: str) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = d / f"md-{instance}-{stamp}-{os.getpid()}.mdcap"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._f = os.fdopen(fd, "wb", buffering=1 << 20)
        head = (f"{MAGIC} hash={dtype_hash(MARKET_EVENT):016x} size={MARKET_EVENT.itemsize} "
                f"instance={instance} start_ns={time.time_ns()}")
        if len(head) > HEADER_SIZE - 1:
            head = head[:HEADER_SIZE - 1]
        self._f.write(head.ljust(HEADER_SIZE - 1).encode() + b"\n")
        self.records = 0

    def write(self, events: np.ndarray) -> None:
        if events.dtype != MARKET_EVENT:
            raise TypeError(f"events must be MARKET_EVENT records, got {events.dtype}")
        self._f.write(np.ascontiguousarray(events).tobytes())
        self.records += len(events)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_md_capture(path: str | os.PathLike) -> np.ndarray:
    """Every whole record of a capture file as a MARKET_EVENT array."""
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE).decode("ascii", "replace")
        if not head.startswith(MAGIC):
            raise CaptureError(f"{path}: not an mmshm md capture (header {head[:20]!r})")
        fields = dict(p.split("=", 1) for p in head.split()[1:] if "=" in p)
        if fields.get("hash") != f"{dtype_hash(MARKET_EVENT):016x}":
            raise CaptureError(f"{path}: written with another MARKET_EVENT layout (hash {fields.get('hash')})")
        data = f.read()
    n = len(data) // MARKET_EVENT.itemsize
    return np.frombuffer(data[:n * MARKET_EVENT.itemsize], dtype=MARKET_EVENT).copy()
