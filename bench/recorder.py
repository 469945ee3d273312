"""Recorder throughput: ORDER_EVENTs journaled per second, batched vs a naive peer.

    python bench/recorder.py [--events N] [--naive-events M]

Figure: the recorder agent (gated-ring read without release, numpy → executemany, one
transaction per batch, release after COMMIT) draining a pre-filled ``orders`` ring into
a fresh journal. Peer, same run, same machine: a naive recorder that polls one event at
a time and INSERTs + COMMITs each one (same WAL/synchronous=NORMAL journal). One
process, the ring is refilled between drains, so the figure is the recorder's own cost
(ring read + SQLite), not the writer's. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from mmshm.journal.recorder import RecorderAgent
from mmshm.journal.schema import open_journal
from mmshm.records import ORDER_EVENT
from mmshm.shm import GatedReader, GatedWriter

CAPACITY = 1 << 14


def make_events(n: int) -> np.ndarray:
    """Realistic mix: per order new, ack, fill, fill (half the events are fills)."""
    i = np.arange(n)
    e = np.zeros(n, ORDER_EVENT)
    step = i % 4
    e["client_id"] = i // 4 + 1
    e["kind"] = np.choose(step, [1, 4, 7, 7])
    e["status"] = np.choose(step, [1, 2, 3, 4])
    e["side"], e["price"], e["qty"] = 1, 600_000, 10
    e["fill_qty"] = np.where(step >= 2, 5, 0)
    e["fill_px"] = np.where(step >= 2, 600_000, 0)
    e["trade_id"] = np.where(step >= 2, i + 1, 0)
    e["local_ts"] = time.time_ns()
    e["event_mono"] = time.monotonic_ns()
    return e


def bench_agent(instance: str, db: Path, evs: np.ndarray) -> float:
    w = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=CAPACITY, required=("recorder",))
    agent = RecorderAgent(instance, db, batch=4096)
    try:
        agent.on_start()
        busy = 0
        i = 0
        while i < len(evs) or agent._pending_n:
            if i < len(evs):
                i += w.publish_batch(evs[i:i + CAPACITY])
            t0 = time.perf_counter_ns()
            while agent.do_work():
                pass
            busy += time.perf_counter_ns() - t0
        assert agent.events == len(evs), (agent.events, len(evs))
        return len(evs) / (busy / 1e9)
    finally:
        agent.on_close()
        w.unlink()
        w.close()


def bench_naive(instance: str, db: Path, evs: np.ndarray) -> float:
    w = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=CAPACITY, required=("recorder",))
    r = GatedReader.attach(instance, "orders", ORDER_EVENT, reader="recorder")
    conn = open_journal(db)
    sql = ("INSERT OR IGNORE INTO order_events (ring_id, ring_seq, kind, kind_name, client_id, venue_order_id, "
           "instrument, side, status, flags, reason, price, qty, filled_qty, fill_px, fill_qty, fee, trade_id, "
           "md_seq, venue_ts, local_ts, sent_mono, event_mono) VALUES (1, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
           "?, ?, ?, ?, ?, ?, ?, ?, ?)")
    try:
        busy = 0
        i = 0
        done = 0
        while done < len(evs):
            if i < len(evs):
                i += w.publish_batch(evs[i:i + CAPACITY])
            t0 = time.perf_counter_ns()
            while True:
                e = r.poll()
                if e is None:
                    break
                conn.execute("BEGIN")
                conn.execute(sql, (int(e["seq"]), int(e["kind"]), int(e["client_id"]), int(e["venue_order_id"]),
                                   int(e["instrument"]), int(e["side"]), int(e["status"]), int(e["flags"]),
                                   int(e["reason"]), int(e["price"]), int(e["qty"]), int(e["filled_qty"]),
                                   int(e["fill_px"]), int(e["fill_qty"]), int(e["fee"]), int(e["trade_id"]),
                                   int(e["md_seq"]), int(e["venue_ts"]), int(e["local_ts"]), int(e["sent_mono"]),
                                   int(e["event_mono"])))
                conn.execute("COMMIT")
                done += 1
            busy += time.perf_counter_ns() - t0
        return len(evs) / (busy / 1e9)
    finally:
        conn.close()
        r.close()
        w.unlink()
        w.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--naive-events", type=int, default=5_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmshm-bench-rec-") as tmp:
        base = f"bench{os.getpid()}{uuid.uuid4().hex[:6]}"
        agent_rate = bench_agent(base + "a", Path(tmp) / "agent.sqlite", make_events(args.events))
        naive_rate = bench_naive(base + "n", Path(tmp) / "naive.sqlite", make_events(args.naive_events))
    out = {
        "benchmark": "recorder_throughput",
        "figure": {"name": "recorder agent, events journaled per second", "events": args.events,
                   "events_per_s": round(agent_rate)},
        "peer": {"name": "naive: poll one event, INSERT + COMMIT per event", "events": args.naive_events,
                 "events_per_s": round(naive_rate)},
        "ratio": round(agent_rate / naive_rate, 1),
        "notes": "single process; ring refilled between drains; WAL, synchronous=NORMAL, fresh journal",
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
