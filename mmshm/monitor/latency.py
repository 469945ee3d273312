"""Per-stage latency histograms in shared memory (the ``latency`` seqlock table).

Each pipeline stage (feed→quote, quote→send, send→ack, ...) owns one row of
``LATENCY_ROW``: a count, a sum, a max and fixed log2-microsecond buckets. The stage's
process records into a local copy (no shared-memory traffic per sample) and publishes
the row with one seqlock write from time to time (``publish``; the agent runner's
duty cycle or every N samples). The exporter reads the rows at scrape time and serves
them as Prometheus histograms in seconds.

Buckets: bucket 0 counts samples < 1 µs, bucket ``i`` (1 <= i < N-1) samples in
``[2**(i-1), 2**i)`` µs, the last bucket everything >= ``2**(N-2)`` µs (~4.2 s). Upper
bounds are exact powers of two, so a Prometheus ``le`` bound is ``2**i`` µs.

Rows are found by stage name: :data:`STAGES` fixes the rows of the well-known stages so
every process agrees without coordination; another name reuses the row already carrying
it, else takes the first unnamed row after the fixed ones (not atomic: two processes
adding *new* names at the same instant could pick the same row; give such stages a
fixed row in :data:`STAGES`). One writer per stage.
"""
from __future__ import annotations

import os
import time

import numpy as np

from mmshm._native.latency import LatencyHist
from mmshm.records import _padded
from mmshm.shm import SeqlockTable
from mmshm.shm import segment as segmod

LATENCY_SEGMENT = "latency"
#: Buckets per row: < 1 µs, then powers of two up to 2**22 µs, then overflow.
LATENCY_BUCKETS = 24
#: Rows of a new latency table.
LATENCY_ROWS = 16

LATENCY_ROW = _padded([
    ("version", "<u8"),      # seqlock-owned
    ("stage", "S16"),        # stage name, e.g. b"feed_to_quote"
    ("pid", "<i8"),          # the row's writer
    ("count", "<u8"),        # samples recorded
    ("sum_ns", "<u8"),       # sum of samples, ns
    ("max_ns", "<i8"),
    ("updated_mono", "<i8"), # monotonic ns of the last publish
    ("buckets", "<u8", (LATENCY_BUCKETS,)),  # non-cumulative counts (see module docstring)
], 256)

#: Well-known stages and their fixed rows.
STAGES: dict[str, int] = {
    "feed_to_quote": 0,   # md event published → targets written (quoter)
    "quote_to_send": 1,   # targets written → order request on the socket (executor)
    "send_to_ack": 2,     # request on the socket → venue ack (executor)
    "tick_to_order": 3,   # venue frame received → order request on the socket (end to end)
    "quote_to_seen": 4,   # targets written → the executor reads the change (its wake-up and queueing)
    "seen_to_send": 5,    # the executor reads the change → its last request on the socket
    # one garbage-collector pause row per role (mmshm.agent.gcpolicy): fixed, so roles
    # starting at once (systemd) never race for a free row
    **{f"gc_{role}": 6 + k for k, role in enumerate(
        ("feed", "quoter", "executor", "risk", "watchdog", "recorder", "exporter"))},
}

#: Upper bounds of the buckets in seconds (the last one is +Inf).
BUCKET_BOUNDS_S: tuple[float, ...] = tuple((1 << i) * 1e-6 for i in range(LATENCY_BUCKETS - 1)) + (float("inf"),)


def bucket_of(ns: int) -> int:
    """Bucket index of a latency of ``ns`` nanoseconds (negative counts as 0)."""
    us = ns // 1000 if ns > 0 else 0
    b = int(us).bit_length()
    return b if b < LATENCY_BUCKETS else LATENCY_BUCKETS - 1


def open_table(instance: str, rows: int = LATENCY_ROWS) -> SeqlockTable:
    """The instance's latency table (created if absent, else attached at its size)."""
    try:
        return SeqlockTable.attach(instance, LATENCY_SEGMENT, LATENCY_ROW)
    except segmod.SegmentNotFound:
        return SeqlockTable.create_or_attach(instance, LATENCY_SEGMENT, LATENCY_ROW, rows)


class LatencyRecorder:
    """One stage's histogram: ``record(ns)`` locally, ``publish()`` into shared memory.

    ``LatencyRecorder.open(instance, "send_to_ack")``; the process keeps it for its
    lifetime and calls ``close()`` at exit (the row keeps its values; a restarted
    process continues the counts, so Prometheus counters never go backwards).
    Cython hot loops use ``hist`` (``mmshm._native.latency.LatencyHist``) and call its
    ``cdef record(ns)`` / ``publish(now)`` without the GIL; both views share one local row.
    """

    def __init__(self, table: SeqlockTable, row: int, stage: str, owns_table: bool = False) -> None:
        self.table = table
        self.row = row
        self.stage = stage
        self._owns_table = owns_table
        self._rec = np.zeros(1, LATENCY_ROW)
        prev = table.read(row)
        if bytes(prev["stage"]).rstrip(b"\0") == stage.encode():
            self._rec[0] = prev       # continue the counts of a previous writer of this stage
        r = self._rec[0]
        r["stage"] = stage.encode()
        r["pid"] = os.getpid()
        self.buckets: np.ndarray = self._rec["buckets"][0]
        self.hist = LatencyHist(table, row, self._rec)
        #: ``record(ns)``: add one sample (C; ~50 ns from Python).
        self.record = self.hist.record_ns
        self.publish()

    @classmethod
    def open(cls, instance: str, stage: str) -> "LatencyRecorder":
        """The recorder of ``stage`` (a well-known row, else the row already named ``stage``,
        else the first unnamed row). ValueError for a bad name or a full table."""
        data = stage.encode()
        if not stage or len(data) > 16 or not stage.replace("_", "").isalnum():
            raise ValueError(f"stage must be 1..16 chars of [A-Za-z0-9_], got {stage!r}")
        table = open_table(instance)
        try:
            row = STAGES.get(stage)
            if row is None:
                rows = table.read_all()
                names = [bytes(r["stage"]).rstrip(b"\0") for r in rows]
                if data in names:
                    row = names.index(data)
                else:
                    free = [i for i in range(len(STAGES), table.rows) if not names[i]]
                    if not free:
                        raise ValueError(f"latency table is full ({table.rows} rows); cannot add {stage!r}")
                    row = free[0]
            if row >= table.rows:
                raise ValueError(f"latency table has {table.rows} rows; stage {stage!r} needs row {row}")
            return cls(table, row, stage, owns_table=True)
        except BaseException:
            table.close()
            raise

    def record_many(self, ns: np.ndarray) -> None:
        """Add many samples at once (vectorised)."""
        ns = np.asarray(ns, dtype=np.int64)
        if ns.size == 0:
            return
        us = np.maximum(ns, 0) // 1000
        idx = np.minimum(np.where(us > 0, np.floor(np.log2(np.maximum(us, 1))).astype(np.int64) + 1, 0),
                         LATENCY_BUCKETS - 1)
        self.buckets += np.bincount(idx, minlength=LATENCY_BUCKETS).astype(np.uint64)
        r = self._rec[0]
        r["count"] += ns.size
        pos = ns[ns > 0]
        if pos.size:
            r["sum_ns"] += int(pos.sum())
            r["max_ns"] = max(int(r["max_ns"]), int(pos.max()))

    def publish(self, now_mono: int | None = None) -> None:
        """Write the row (one seqlock write of 256 bytes)."""
        self.hist.publish_now(time.monotonic_ns() if now_mono is None else now_mono)

    @property
    def count(self) -> int:
        return int(self._rec[0]["count"])

    def close(self) -> None:
        if self._owns_table:
            self.publish()
            self.table.close()


def read_histograms(table: SeqlockTable) -> list[dict]:
    """Every named row: ``{"stage", "count", "sum_s", "max_s", "buckets" (non-cumulative), "pid"}``."""
    out = []
    for r in table.read_all():
        name = bytes(r["stage"]).split(b"\0", 1)[0].decode("ascii", "replace")
        if not name or int(r["version"]) == 0:
            continue
        out.append({"stage": name, "count": int(r["count"]), "sum_s": int(r["sum_ns"]) / 1e9,
                    "max_s": int(r["max_ns"]) / 1e9, "buckets": [int(b) for b in r["buckets"]],
                    "pid": int(r["pid"])})
    return out


__all__ = ["BUCKET_BOUNDS_S", "LATENCY_BUCKETS", "LATENCY_ROW", "LATENCY_SEGMENT", "STAGES", "LatencyRecorder",
           "bucket_of", "open_table", "read_histograms"]
