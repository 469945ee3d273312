"""The recorder agent in-process: batching, release-after-commit, retry after a failed
transaction, md captures, instruments, counters."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from mmshm.agent.counters import counter_index, counter_names
from mmshm.journal import read_md_capture
from mmshm.journal.recorder import RecorderAgent
from mmshm.records import INSTRUMENT_ROW, MARKET_EVENT, ORDER_EVENT, PROC_COUNTERS
from mmshm.shm import BroadcastWriter, GatedWriter, SeqlockTable


class FakeRunner:
    def __init__(self):
        self.counters = np.zeros(PROC_COUNTERS, dtype=np.int64)


def events(n: int, start_cid: int = 1) -> np.ndarray:
    e = np.zeros(n, ORDER_EVENT)
    e["kind"] = 7  # FILL
    e["status"] = 3
    e["client_id"] = np.arange(start_cid, start_cid + n)
    e["trade_id"] = np.arange(start_cid, start_cid + n)
    e["fill_qty"] = 1
    e["fill_px"] = 100
    return e


@pytest.fixture
def ring(instance):
    w = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=256, required=("recorder",))
    yield w
    w.unlink()
    w.close()


def count(db) -> int:
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT COUNT(*) FROM order_events").fetchone()[0]
    finally:
        c.close()


def test_batches_are_released_only_after_commit(instance, ring, tmp_path):
    db = tmp_path / "j.sqlite"
    agent = RecorderAgent(instance, db, batch=64, commit_interval_ms=10_000)
    runner = FakeRunner()
    agent.bind_runner(runner)
    agent.on_start()
    try:
        assert ring.publish_batch(events(200)) == 200
        # A full batch (64 of 200): journaled in the open transaction, not committed, not released.
        assert agent.do_work() == 64
        assert agent.reader.committed == 1 and count(db) == 0
        while agent.do_work():
            pass
        assert count(db) == 200 and agent.reader.committed == 201
        agent._status(0)
        c = runner.counters
        assert c[counter_index("recorder", "orders_journaled")] == 200
        assert c[counter_index("recorder", "fills_journaled")] == 200
        assert c[counter_index("recorder", "lag")] == 0 and c[counter_index("recorder", "attached")] == 1
        assert "ring_refused" in counter_names("recorder")
    finally:
        agent.on_close()


def test_failed_transaction_is_retried_without_loss(instance, ring, tmp_path, monkeypatch):
    db = tmp_path / "j.sqlite"
    agent = RecorderAgent(instance, db, batch=64, retry_backoff_s=0.0)
    runner = FakeRunner()
    agent.bind_runner(runner)
    agent.on_start()
    try:
        ring.publish_batch(events(100))
        real_commit = agent.writer.commit
        calls = {"n": 0}

        def failing_commit():
            calls["n"] += 1
            if calls["n"] == 1:
                raise sqlite3.OperationalError("disk I/O error (simulated)")
            real_commit()

        monkeypatch.setattr(agent.writer, "commit", failing_commit)
        for _ in range(10):
            agent.do_work()
        assert agent.db_errors == 1
        assert count(db) == 100 and agent.events == 100 and agent.fills == 100
        assert agent.reader.committed == 101
    finally:
        agent.on_close()


def test_waits_for_the_ring_then_records_md_and_instruments(instance, tmp_path):
    db = tmp_path / "j.sqlite"
    agent = RecorderAgent(instance, db, capture_md=True, capture_dir=tmp_path / "cap", attach_retry_s=0.0)
    agent.bind_runner(FakeRunner())
    agent.on_start()
    md = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=64)
    inst = SeqlockTable.create(instance, "instruments", INSTRUMENT_ROW, 2)
    try:
        assert agent.reader is None and agent.do_work() == 0
        row = np.zeros(1, INSTRUMENT_ROW)
        row["symbol"], row["tick_mantissa"], row["price_exp"], row["lot_mantissa"], row["qty_exp"] = (
            b"BTCUSDT", 1, -1, 1, -3)
        inst.write(0, row)
        agent.do_work()  # attaches md (latest)
        e = np.zeros(3, MARKET_EVENT)
        e["md_seq"] = [1, 2, 3]
        md.publish_batch(e)
        w = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=64, required=("recorder",))
        try:
            w.publish_batch(events(3))
            for _ in range(3):
                agent.do_work()
            assert count(db) == 3
            c = sqlite3.connect(db)
            assert c.execute("SELECT symbol, price FROM orders_dec LIMIT 1").fetchone() == ("BTCUSDT", 0.0)
            c.close()
        finally:
            agent.on_close()
            w.unlink()
            w.close()
        files = list((tmp_path / "cap").glob("*.mdcap"))
        assert len(files) == 1 and list(read_md_capture(files[0])["md_seq"]) == [1, 2, 3]
    finally:
        md.unlink()
        md.close()
        inst.unlink()
        inst.close()
