"""Real processes on shared memory: stress each segment kind with checksummed payloads; SIGKILL takeover.

The children are this file run as a script (``python test_shm_processes.py ROLE ...``), so the
test and its workers live together. Each child prints one JSON line with what it saw.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

HERE = os.path.abspath(__file__)
REC = np.dtype([("seq", "<u8"), ("k", "<u8"), ("body", "<u8", (5,)), ("check", "<u8")])     # 64 B
ROW = np.dtype([("version", "<u8"), ("k", "<u8"), ("body", "<u8", (84,)), ("check", "<u8")])  # 704 B
MUL = 0x9E3779B97F4A7C15


def fill(arr: np.ndarray, k0: int) -> None:
    """Checksummed payloads: every body word and the check derive from k."""
    k = np.arange(k0, k0 + len(arr), dtype=np.uint64)
    arr["k"] = k
    arr["body"] = (k * np.uint64(MUL))[:, None]
    arr["check"] = k ^ np.uint64(0xA5A5A5A5A5A5A5A5)


def verify(arr: np.ndarray) -> bool:
    k = arr["k"]
    return bool(np.all(arr["body"] == (k * np.uint64(MUL))[:, None]) and np.all(arr["check"] == k ^ np.uint64(0xA5A5A5A5A5A5A5A5)))


# --------------------------------------------------------------------------- child roles

def child_ring_writer(kind: str, seconds: float, instance: str) -> dict:
    from mmshm.shm import BroadcastWriter, GatedWriter

    if kind == "gated":
        w = GatedWriter.create(instance, "ring", REC, capacity=1 << 10, required=("checker",))
    else:
        w = BroadcastWriter.create(instance, "ring", REC, capacity=1 << 10)
    print(json.dumps({"ready": True}), flush=True)
    batch = np.zeros(64, REC)
    k, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        fill(batch, k)
        k += w.publish_batch(batch)
        w.heartbeat()
        time.sleep(0.00005)
    fill(batch[:1], 1 << 62)                  # end marker
    while not w.publish_batch(batch[:1]):
        time.sleep(0.001)
    return {"published": k, "refused": w.refused}


def child_ring_reader(kind: str, instance: str) -> dict:
    from mmshm.shm import BroadcastReader, GatedReader

    cls = GatedReader if kind == "gated" else BroadcastReader
    r = _attach_retry(lambda: cls.attach(instance, "ring", REC, reader="checker", start="oldest"))
    start = r.cursor                          # messages before it were overwritten before we came
    out = np.zeros(256, REC)
    seen, torn, disorder, last = 0, 0, 0, -1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        n = r.poll_batch(out)
        if n == 0:
            time.sleep(0.0001)
            continue
        got = out[:n]
        if int(got["k"][-1]) == 1 << 62:
            got = got[:-1]
            done = True
        else:
            done = False
        torn += 0 if verify(got) else 1
        ks = got["k"].astype(np.int64)
        if len(ks):
            disorder += int(ks[0] <= last) + int(np.sum(np.diff(ks) <= 0))
            if kind == "gated":
                disorder += int(ks[0] != last + 1) + int(np.sum(np.diff(ks) != 1))
            last = int(ks[-1])
        seen += len(got)
        if done:
            break
    return {"seen": seen, "torn": torn, "disorder": disorder, "gaps": r.gaps, "lost": r.lost, "last": last,
            "start": start}


def child_table_writer(seconds: float, instance: str) -> dict:
    from mmshm.shm import SeqlockTable

    t = SeqlockTable.create(instance, "table", ROW, rows=4)
    print(json.dumps({"ready": True}), flush=True)
    rows = np.zeros(256, ROW)
    k, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        fill(rows, k)
        for i in range(0, 256, 4):
            t.write_batch(0, rows[i:i + 4])
        k += 256
        time.sleep(0.00005)
    return {"written": k}


def child_table_reader(seconds: float, instance: str) -> dict:
    from mmshm.shm import SeqlockTable

    t = _attach_retry(lambda: SeqlockTable.attach(instance, "table", ROW))
    out = np.zeros(4, ROW)
    reads, torn, odd, distinct = 0, 0, 0, set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t.read_all(out, timeout=1.0)
        reads += 4
        torn += 0 if verify(out) else 1
        odd += int(np.sum(out["version"] & np.uint64(1)))
        distinct.add(int(out["k"][0]))
    return {"reads": reads, "torn": torn, "odd": odd, "distinct": len(distinct)}


def child_slow_writer(instance: str) -> dict:
    """Publishes one message every ms forever (until killed), continuing the sequence."""
    from mmshm.shm import BroadcastWriter

    w = BroadcastWriter.create(instance, "ring", REC, capacity=1 << 12)
    print(json.dumps({"ready": True, "epoch": w.epoch, "cursor": w.cursor}), flush=True)
    one = np.zeros(1, REC)
    k = w.cursor
    while True:
        fill(one, k)
        w.publish(one)
        k += 1
        time.sleep(0.001)


def _attach_retry(fn, timeout: float = 10.0):
    from mmshm.shm import SegmentNotFound

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except SegmentNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _child_main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    instance = os.environ["MMSHM_INSTANCE"]
    if role == "ring_writer":
        res = child_ring_writer(args[0], float(args[1]), instance)
    elif role == "ring_reader":
        res = child_ring_reader(args[0], instance)
    elif role == "table_writer":
        res = child_table_writer(float(args[0]), instance)
    elif role == "table_reader":
        res = child_table_reader(float(args[0]), instance)
    elif role == "slow_writer":
        res = child_slow_writer(instance)
    else:
        raise SystemExit(f"unknown role {role}")
    print(json.dumps(res), flush=True)


# --------------------------------------------------------------------------- tests

def _result(proc, timeout: float = 60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def _wait_ready(proc) -> dict:
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()[-3000:]
    return json.loads(line)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["broadcast", "gated"])
def test_ring_stress_across_processes(spawn, kind):
    writer = spawn([sys.executable, HERE, "ring_writer", kind, "2.0"])
    _wait_ready(writer)
    reader = spawn([sys.executable, HERE, "ring_reader", kind])
    w = _result(writer)
    r = _result(reader)
    assert w["published"] > 1000
    assert r["torn"] == 0 and r["disorder"] == 0
    if kind == "gated":
        # lossless: every message published arrived, in order, exactly once
        assert r["seen"] == w["published"] and r["lost"] == 0 and r["gaps"] == 0
        assert r["last"] == w["published"] - 1 and r["start"] == 1
    else:
        assert r["seen"] + r["lost"] == w["published"] - (r["start"] - 1)
        assert (r["gaps"] == 0) == (r["lost"] == 0)


@pytest.mark.timeout(60)
def test_seqlock_stress_across_processes(spawn):
    writer = spawn([sys.executable, HERE, "table_writer", "2.0"])
    _wait_ready(writer)
    reader = spawn([sys.executable, HERE, "table_reader", "1.5"])
    r = _result(reader)
    w = _result(writer)
    assert w["written"] > 1000
    assert r["reads"] > 100
    assert r["torn"] == 0 and r["odd"] == 0
    assert r["distinct"] > 1            # the reader really raced the writer


@pytest.mark.timeout(60)
def test_sigkilled_writer_restart_is_new_epoch(spawn, instance):
    from mmshm.shm import BroadcastReader

    w1 = spawn([sys.executable, HERE, "slow_writer"])
    first = _wait_ready(w1)
    assert first["epoch"] == 1
    r = BroadcastReader.attach(instance, "ring", REC, reader="watch", start="oldest")
    try:
        ks: list[int] = []

        def drain(until: float) -> None:
            while time.monotonic() < until:
                x = r.poll()
                if x is None:
                    time.sleep(0.001)
                    continue
                assert verify(np.array([x]))
                ks.append(int(x["seq"]))

        drain(time.monotonic() + 0.3)
        assert ks, "no messages from the first writer"
        os.kill(w1.pid, signal.SIGKILL)
        w1.wait(timeout=10)
        w2 = spawn([sys.executable, HERE, "slow_writer"])
        second = _wait_ready(w2)
        assert second["epoch"] == 2
        assert second["cursor"] > ks[-1]
        drain(time.monotonic() + 0.3)
        assert r.epoch == 2 and r.gaps >= 1 and r.lost == 0
        assert ks == sorted(set(ks))                     # in order, never a duplicate
        assert ks[-1] > second["cursor"]                  # the new writer's messages arrived
    finally:
        r.close()


if __name__ == "__main__":
    _child_main(sys.argv[1:])
