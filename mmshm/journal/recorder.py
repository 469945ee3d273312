"""The recorder agent: the ``orders`` ring into the SQLite journal, md into capture files.

The recorder is a *required* reader (``recorder``) of the gated ``orders`` ring: the
executor cannot overwrite an event the recorder has not released, and when the recorder
falls behind the ring refuses new events (counted in the ring header; the recorder
reports that count and its lag in its process-table counters). The recorder reads with
the ring's two-phase API: ``peek_batch`` copies events without releasing them and
``commit`` releases them only after the SQLite COMMIT, so a SIGKILL at any moment loses
nothing: the restarted recorder resumes at the committed cursor, and the re-read of a
batch that was committed to SQLite but not yet released is skipped by sequence. A failed
transaction is rolled back and the ring ``rewind``s: the retry reads the events again
from shared memory (the ring, not the recorder's heap, holds them until they are durable).

Batches: each duty cycle reads up to ``batch`` events, inserts them into the open
transaction and commits when the ring is drained, when ``commit_interval_ms`` has passed
since the transaction began, or when half the ring is held uncommitted.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mmshm.agent.counters import counter_index
from mmshm.journal.capture import MdCaptureWriter
from mmshm.journal.schema import open_journal
from mmshm.journal.writer import JournalWriter
from mmshm.records import INSTRUMENT_ROW, MARKET_EVENT, ORDER_EVENT
from mmshm.shm import BroadcastReader, GatedReader, SeqlockTable
from mmshm.shm import segment as segmod

log = logging.getLogger("mmshm.recorder")

ROLE = "recorder"
ORDERS_SEGMENT = "orders"
MD_SEGMENT = "md"
INSTRUMENTS_SEGMENT = "instruments"


class RecorderAgent:
    """See the module docstring. ``clock`` is monotonic ns (tests may pass their own)."""

    name = "recorder"

    def __init__(self, instance: str, db_path: str | os.PathLike, *, commit_interval_ms: int = 100,
                 batch: int = 4096, capture_md: bool = False, capture_dir: str | os.PathLike | None = None,
                 attach_retry_s: float = 0.2, status_interval_s: float = 0.05,
                 instruments_interval_s: float = 5.0, retry_backoff_s: float = 0.5,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.instance = instance
        self.db_path = Path(db_path)
        self.commit_interval_ns = int(commit_interval_ms * 1e6)
        self.capture_md = capture_md
        self.capture_dir = capture_dir
        self.attach_retry_ns = int(attach_retry_s * 1e9)
        self.status_interval_ns = int(status_interval_s * 1e9)
        self.instruments_interval_ns = int(instruments_interval_s * 1e9)
        self.retry_backoff_ns = int(retry_backoff_s * 1e9)
        self._clock = clock
        self._buf = np.zeros(batch, dtype=ORDER_EVENT)
        self._md_buf = np.zeros(batch, dtype=MARKET_EVENT)
        self.conn: sqlite3.Connection | None = None
        self.writer: JournalWriter | None = None
        self.reader: GatedReader | None = None
        self._inode = 0
        self.md_reader: BroadcastReader | None = None
        self.capture: MdCaptureWriter | None = None
        self.instruments: SeqlockTable | None = None
        self._inst_bytes = b""
        self._counters: np.ndarray | None = None
        # Events peeked and inserted in the open transaction, not yet committed/released.
        self._pending_n = 0
        self._txn_start = 0
        self._retry_at = 0
        self._next_attach = 0
        self._next_status = 0
        self._next_inst = 0
        self._next_md_attach = 0
        # Totals (also in the process-table counters when run by the agent runner).
        self.events = self.fills = self.duplicates = self.bad = self.commits = self.db_errors = 0
        self.md_records = 0
        self._txn_events = self._txn_fills = 0

    # ------------------------------------------------------------------ agent protocol
    def bind_runner(self, runner) -> None:
        self._counters = runner.counters

    def on_start(self) -> None:
        self.conn = open_journal(self.db_path)
        self.writer = JournalWriter(self.conn)
        self._try_attach(self._clock())
        log.info("recorder started", extra={"db": str(self.db_path), "attached": self.reader is not None})

    def do_work(self) -> int:
        now = self._clock()
        work = 0
        if self.reader is None:
            if now >= self._next_attach:
                self._try_attach(now)
        elif now < self._retry_at:
            pass  # a failed transaction waits for its retry time; the ring holds the events
        else:
            work += self._drain(now)
        if self.capture_md:
            work += self._record_md(now)
        if now >= self._next_status:
            self._status(now)
        return work

    def on_close(self) -> None:
        try:
            if self.reader is not None and self._pending_n:
                self._commit(self._clock())
        finally:
            for obj in (self.reader, self.md_reader, self.instruments):
                if obj is not None:
                    obj.close()
            self.reader = self.md_reader = self.instruments = None
            if self.capture is not None:
                self.capture.close()
            if self.conn is not None:
                if self.writer is not None:
                    self.writer.rollback()
                self.conn.close()
                self.conn = None

    # ------------------------------------------------------------------ orders ring
    def _try_attach(self, now: int) -> None:
        self._next_attach = now + self.attach_retry_ns
        try:
            reader = GatedReader.attach(self.instance, ORDERS_SEGMENT, ORDER_EVENT, reader=ROLE, start="oldest")
        except segmod.SegmentNotFound:
            return
        except (segmod.ShmError, ValueError) as exc:
            log.error("cannot attach to the orders ring", extra={"error": str(exc)})
            return
        if not reader.required:
            # Nothing gates on us: events may be lost. Journal anyway, and say so loudly.
            log.error("recorder is not a required reader of the orders ring: the journal may miss events "
                      "(the executor must create it with required=('risk', 'recorder'))")
        self.reader = reader
        self._inode = self._segment_inode()
        ring_id = int(reader.segment.header["created_ts"])
        assert self.writer is not None
        hw = self.writer.begin_ring(ring_id)
        log.info("attached to the orders ring", extra={
            "ring_id": ring_id, "cursor": reader.committed, "journaled_up_to": hw,
            "required": reader.required})
        self._refresh_instruments(now, force=True)

    def _segment_inode(self) -> int:
        try:
            return os.stat(Path(segmod.SHM_DIR) / segmod.segment_name(self.instance, ORDERS_SEGMENT)[1:]).st_ino
        except OSError:
            return 0

    def _drain(self, now: int) -> int:
        assert self.reader is not None and self.writer is not None
        # Peek: the events stay reserved in the ring until _commit releases them.
        n = self.reader.peek_batch(self._buf)
        if n:
            if not self.writer.in_transaction:
                self._txn_start = now
            if not self._write(self._buf[:n], now):
                return n
            self._pending_n += n
        if self._pending_n and (n < len(self._buf) or now - self._txn_start >= self.commit_interval_ns
                                or self._pending_n >= self.reader.capacity // 2):
            self._commit(now)
        return n

    def _write(self, chunk: np.ndarray, now: int) -> bool:
        assert self.writer is not None
        try:
            st = self.writer.write(chunk)
        except sqlite3.Error as exc:
            self._db_failed(now, exc)
            return False
        self.events += st.events
        self.fills += st.fills
        self._txn_events += st.events
        self._txn_fills += st.fills
        self.duplicates += st.duplicates + st.duplicate_fills
        self.bad += st.bad
        return True

    def _commit(self, now: int) -> None:
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.commit()
        except sqlite3.Error as exc:
            self._db_failed(now, exc)
            return
        # Durable in SQLite: release the slots (a crash before this line only re-reads them).
        self.reader.commit(self._pending_n)
        self._pending_n = 0
        self._txn_events = self._txn_fills = 0
        self.commits += 1
        if self.capture is not None:
            self.capture.flush()

    def _db_failed(self, now: int, exc: Exception) -> None:
        """Roll back and rewind: the events stay reserved in the ring and are read again by the retry."""
        assert self.writer is not None and self.reader is not None
        self.db_errors += 1
        self.writer.rollback()
        dropped = self.reader.rewind()
        self._pending_n = 0
        # The retry inserts (and counts) them again.
        self.events -= self._txn_events
        self.fills -= self._txn_fills
        self._txn_events = self._txn_fills = 0
        self._retry_at = now + self.retry_backoff_ns
        log.error("journal write failed; will retry", extra={"error": str(exc), "pending": dropped})

    # ------------------------------------------------------------------ md captures
    def _record_md(self, now: int) -> int:
        if self.md_reader is None:
            if now < self._next_md_attach:
                return 0
            self._next_md_attach = now + self.attach_retry_ns
            try:
                self.md_reader = BroadcastReader.attach(self.instance, MD_SEGMENT, MARKET_EVENT, reader=ROLE)
            except (segmod.ShmError, ValueError):
                return 0
            self.capture = MdCaptureWriter(self.capture_dir or self.db_path.parent / "captures", self.instance)
            log.info("recording md", extra={"path": str(self.capture.path)})
        n = self.md_reader.poll_batch(self._md_buf)
        if n:
            assert self.capture is not None
            self.capture.write(self._md_buf[:n])
            self.md_records += n
        return n

    # ------------------------------------------------------------------ instruments, status
    def _refresh_instruments(self, now: int, force: bool = False) -> None:
        if not force and now < self._next_inst:
            return
        self._next_inst = now + self.instruments_interval_ns
        try:
            if self.instruments is None:
                self.instruments = SeqlockTable.attach(self.instance, INSTRUMENTS_SEGMENT, INSTRUMENT_ROW)
            rows = self.instruments.read_all()
        except (segmod.ShmError, ValueError):
            return
        raw = rows.tobytes()
        if raw == self._inst_bytes or self.writer is None:
            return
        try:
            self.writer.set_instruments(rows)
            self._inst_bytes = raw
        except sqlite3.Error as exc:
            log.warning("could not store instruments", extra={"error": str(exc)})

    def _status(self, now: int) -> None:
        """Counters into the process row; segment replacement check; instrument refresh."""
        self._next_status = now + self.status_interval_ns
        if self.reader is not None:
            if not self._pending_n and self._segment_inode() != self._inode:
                log.warning("orders ring was replaced; re-attaching")
                self.reader.close()
                self.reader = None
                self._next_attach = now
            else:
                self.reader.heartbeat()  # reader-slot liveness for `mmshm status` / the watchdog
                self._refresh_instruments(now)
        c = self._counters
        if c is None:
            return
        c[counter_index(ROLE, "orders_journaled")] = self.events
        c[counter_index(ROLE, "fills_journaled")] = self.fills
        c[counter_index(ROLE, "duplicates")] = self.duplicates
        c[counter_index(ROLE, "drops")] = self.bad + (self.reader.lost if self.reader is not None else 0)
        c[counter_index(ROLE, "commits")] = self.commits
        c[counter_index(ROLE, "db_errors")] = self.db_errors
        c[counter_index(ROLE, "md_recorded")] = self.md_records
        c[counter_index(ROLE, "md_gaps")] = self.md_reader.gaps if self.md_reader is not None else 0
        c[counter_index(ROLE, "attached")] = int(self.reader is not None)
        if self.reader is not None:
            h = self.reader.segment.header
            # Events not yet released: unread plus peeked-but-uncommitted.
            c[counter_index(ROLE, "lag")] = self.reader.lag() + self.reader.cursor - self.reader.committed
            c[counter_index(ROLE, "ring_refused")] = int(h["refused"])
