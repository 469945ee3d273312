"""The recorder process against a real orders ring written by this test (acting as the
executor, and as risk, the ring's other required reader)."""
from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from mmshm.agent.counters import counter_index
from mmshm.agent.proctable import ProcessTable
from mmshm.records import ORDER_EVENT
from mmshm.records import OrderEventKind as K
from mmshm.records import OrderStatus as S
from mmshm.shm import GatedReader, GatedWriter
from mmshm.shm import segment as segmod
from tests.conftest import PYTHON

CAPACITY = 1024


def make_events(n: int) -> np.ndarray:
    """n events: orders of 4 events each (new, ack, fill, fill) with unique trade ids."""
    evs = np.zeros(n, ORDER_EVENT)
    i = np.arange(n)
    cid = i // 4 + 1
    step = i % 4
    evs["client_id"] = cid
    evs["kind"] = np.choose(step, [K.NEW_SENT, K.ACK, K.FILL, K.FILL])
    evs["status"] = np.choose(step, [S.PENDING_NEW, S.NEW, S.PARTIALLY_FILLED, S.FILLED])
    evs["side"] = 1 + cid % 2
    evs["price"] = 600_000 + cid % 100
    evs["qty"] = 10
    is_fill = step >= 2
    evs["fill_qty"] = np.where(is_fill, 5, 0)
    evs["filled_qty"] = np.where(step == 2, 5, np.where(step == 3, 10, 0))
    evs["fill_px"] = np.where(is_fill, evs["price"], 0)
    evs["fee"] = np.where(is_fill, -3, 0)
    evs["trade_id"] = np.where(is_fill, i + 1, 0)
    evs["local_ts"] = time.time_ns() + i
    evs["event_mono"] = time.monotonic_ns() + i
    return evs


class Harness:
    """The orders ring (executor side) and a draining risk reader."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.writer = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=CAPACITY,
                                         required=("risk", "recorder"))
        self.risk = GatedReader.attach(instance, "orders", ORDER_EVENT, reader="risk")
        self._risk_buf = np.zeros(CAPACITY, ORDER_EVENT)
        self.refused = 0

    def drain_risk(self) -> None:
        while self.risk.poll_batch(self._risk_buf):
            pass

    def publish(self, events: np.ndarray, deadline_s: float = 30.0, on_refused=None) -> None:
        """Publish every event in order; a refused publish (ring full) is retried, never skipped."""
        end = time.monotonic() + deadline_s
        i = 0
        while i < len(events):
            self.drain_risk()
            if self.writer.try_publish(events[i:i + 1]):
                i += 1
                continue
            self.refused += 1
            if on_refused is not None:
                on_refused()
            assert time.monotonic() < end, f"ring stayed full: {i}/{len(events)} published"
            time.sleep(0.001)

    def close(self) -> None:
        self.risk.close()
        self.writer.unlink()
        self.writer.close()


@pytest.fixture
def harness(instance):
    h = Harness(instance)
    yield h
    h.close()


def start_recorder(spawn, db: Path):
    return spawn([PYTHON, "-m", "mmshm.procs.recorder", "--profile", "ci", "--db", str(db),
                  "--set", "recorder.commit_interval_ms=20", "--batch", "256"])


def journaled(db: Path) -> tuple[int, int, int]:
    """(events, distinct ring seqs, fills) in the journal; zeros if it does not exist yet."""
    if not db.exists():
        return 0, 0, 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        try:
            ev, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT ring_seq) FROM order_events").fetchone()
            fills = conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        except sqlite3.OperationalError:
            return 0, 0, 0
        return ev, distinct, fills
    finally:
        conn.close()


def wait_for(pred, timeout: float, what: str, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: recorder exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def recorder_counters(instance: str) -> dict[str, int] | None:
    try:
        table = ProcessTable.attach(instance)
    except segmod.SegmentNotFound:
        return None
    try:
        for row in table.read_all():
            if bytes(row["role"]).rstrip(b"\0") == b"recorder" and int(row["state"]) == 2:
                names = ("orders_journaled", "lag", "ring_refused", "attached", "fills_journaled", "commits")
                return {n: int(row["counters"][counter_index("recorder", n)]) for n in names}
        return None
    finally:
        table.close()


@pytest.mark.timeout(60)
def test_recorder_journals_every_event(harness, spawn, instance, tmp_path):
    db = tmp_path / "journal.sqlite"
    n = 4000
    proc = start_recorder(spawn, db)
    harness.publish(make_events(n))
    wait_for(lambda: journaled(db)[0] == n, 30, "all events journaled", proc)
    ev, distinct, fills = journaled(db)
    assert (ev, distinct, fills) == (n, n, n // 2)
    c = wait_for(lambda: (c := recorder_counters(instance)) and c["orders_journaled"] == n and c, 10,
                 "recorder counters")
    assert c["attached"] == 1 and c["fills_journaled"] == n // 2 and c["lag"] == 0
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT status_name, filled_qty, n_fills, fees FROM orders WHERE client_id = 1").fetchone()
    assert row == ("FILLED", 10, 2, -6)
    conn.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.mark.timeout(90)
def test_sigkill_midway_then_restart_journals_everything_once(harness, spawn, instance, tmp_path):
    db = tmp_path / "journal.sqlite"
    n = 12000
    events = make_events(n)
    proc = start_recorder(spawn, db)
    killed = []
    # Publish the first part, kill -9 the recorder while it is journaling, restart, publish the rest.
    harness.publish(events[:6000])
    wait_for(lambda: journaled(db)[0] > 1000, 30, "recorder busy", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed.append(journaled(db)[0])
    # While it is dead the ring fills (the recorder gates it) and refuses; nothing is skipped.
    refused_before = harness.refused
    restarted = []

    def restart_once():
        if not restarted and harness.refused - refused_before > 50:
            restarted.append(start_recorder(spawn, db))

    harness.publish(events[6000:], on_refused=restart_once)
    if not restarted:
        restarted.append(start_recorder(spawn, db))
    proc2 = restarted[0]
    wait_for(lambda: journaled(db)[0] == n, 40, "all events journaled after restart", proc2)
    ev, distinct, fills = journaled(db)
    assert (ev, distinct, fills) == (n, n, n // 2), (ev, distinct, fills, killed)
    assert harness.refused > 50 and int(harness.writer.refused) == harness.refused
    c = wait_for(lambda: (c := recorder_counters(instance)) and c["lag"] == 0 and c, 10, "recorder counters")
    assert c["ring_refused"] == harness.refused
    conn = sqlite3.connect(db)
    seqs = [r[0] for r in conn.execute("SELECT ring_seq FROM order_events ORDER BY ring_seq")]
    assert seqs == list(range(1, n + 1))
    # Every order folded from exactly its 4 events.
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE n_events != 4 OR n_fills != 2").fetchone()[0] == 0
    conn.close()


@pytest.mark.timeout(60)
def test_ring_refuses_while_recorder_is_down_and_nothing_is_lost(harness, spawn, instance, tmp_path):
    db = tmp_path / "journal.sqlite"
    events = make_events(3 * CAPACITY)
    # No recorder yet: the first CAPACITY events fit, then the ring refuses (counted, alarm).
    for i in range(CAPACITY):
        harness.drain_risk()
        assert harness.writer.try_publish(events[i:i + 1])
    harness.drain_risk()
    assert not harness.writer.try_publish(events[CAPACITY:CAPACITY + 1])
    assert harness.writer.refused == 1 and harness.writer.alarm
    proc = start_recorder(spawn, db)
    harness.publish(events[CAPACITY:])
    wait_for(lambda: journaled(db)[0] == len(events), 30, "backlog journaled", proc)
    assert journaled(db)[1] == len(events)
    c = wait_for(lambda: (c := recorder_counters(instance)) and c["lag"] == 0 and c, 10, "counters")
    assert c["ring_refused"] >= 1
