"""Seqlock table: reads are consistent, rows claimed by CAS, bad rows and dead writers are clear errors."""
from __future__ import annotations

import os
import subprocess
import threading

import numpy as np
import pytest

from mmshm.records import PROCESS_ROW
from mmshm.shm import SegmentMismatch, SeqlockBusy, SeqlockTable, ShmError

ROW = np.dtype([("version", "<u8"), ("a", "<u8"), ("vals", "<u8", (13,)), ("check", "<u8")])  # 128 B


def make_row(k: int) -> np.ndarray:
    r = np.zeros(1, ROW)
    r["a"] = k
    r["vals"] = k
    r["check"] = k * 15
    return r


def consistent(r) -> bool:
    return int(r["a"]) * 15 == int(r["check"]) and all(int(v) == int(r["a"]) for v in r["vals"])


def test_write_read_roundtrip(instance):
    t = SeqlockTable.create(instance, "t", ROW, rows=4)
    try:
        assert t.rows == 4
        assert int(t.read(1)["version"]) == 0            # never written: zeros
        t.write(1, make_row(7))
        r = t.read(1)
        assert int(r["a"]) == 7 and int(r["version"]) == 2 and consistent(r)
        t.write(1, make_row(8)[0])
        assert t.version(1) == 4
        buf = np.zeros(1, ROW)
        assert t.read_into(1, buf) == 4 and int(buf["a"][0]) == 8
        ba = bytearray(ROW.itemsize)
        assert t.read_into(1, ba) == 4
        allrows = t.read_all()
        assert allrows.shape == (4,) and int(allrows["a"][1]) == 8
        batch = np.concatenate([make_row(i) for i in range(3)])
        t.write_batch(1, batch)
        assert [int(x) for x in t.read_all()["a"]] == [0, 0, 1, 2]
    finally:
        t.close()


def test_out_of_range_rows(instance):
    t = SeqlockTable.create(instance, "t", ROW, rows=2)
    try:
        with pytest.raises(IndexError):
            t.write(2, make_row(1))
        with pytest.raises(IndexError):
            t.read(5)
        with pytest.raises(IndexError):
            t.write_batch(1, np.zeros(2, ROW))
    finally:
        t.close()


def test_row_left_odd_by_dead_writer(instance):
    t = SeqlockTable.create(instance, "t", ROW, rows=2)
    try:
        t.segment.data(ROW)["version"][0] = 3            # writer died mid-write
        with pytest.raises(SeqlockBusy, match="row 0"):
            t.read(0, timeout=0.01)
        t.write(0, make_row(5))                           # the next writer repairs it
        assert t.version(0) == 6 and int(t.read(0)["a"]) == 5
    finally:
        t.close()


def test_concurrent_writer_never_torn(instance):
    """A thread writes rows without the GIL while we read: every read is internally consistent."""
    t = SeqlockTable.create(instance, "t", ROW, rows=1)
    rows = np.concatenate([make_row(i) for i in range(1, 2001)])
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            for i in range(0, 2000, 100):
                t.write_batch(0, rows[i:i + 1])            # releases the GIL inside

    th = threading.Thread(target=writer)
    th.start()
    try:
        seen = set()
        for _ in range(5000):
            r = t.read(0, timeout=1.0)
            assert consistent(r)
            assert int(r["version"]) % 2 == 0
            seen.add(int(r["a"]))
    finally:
        stop.set()
        th.join()
        t.close()


def test_create_or_attach_shares_one_table(instance):
    a = SeqlockTable.create_or_attach(instance, "procs", PROCESS_ROW, rows=8)
    b = SeqlockTable.create_or_attach(instance, "procs", PROCESS_ROW, rows=8)
    try:
        assert a.epoch == b.epoch == 1
        ra = a.claim_row(1001)
        rb = b.claim_row(1002)
        assert ra != rb
        assert a.claim_row(1001) == ra                  # idempotent
        row = np.zeros(1, PROCESS_ROW)
        row["pid"] = 1002
        b.write(rb, row)
        assert int(a.read(rb)["pid"]) == 1002
        assert a.claims()[ra] == 1001
        assert a.release_row(ra, 1001) and a.claims()[ra] == 0
        with pytest.raises(SegmentMismatch):
            SeqlockTable.create_or_attach(instance, "procs", PROCESS_ROW, rows=4)
    finally:
        a.close()
        b.close()


def test_claim_row_reclaims_dead_pid_and_fills_up(instance):
    t = SeqlockTable.create(instance, "t", ROW, rows=2)
    try:
        p = subprocess.Popen(["true"])
        p.wait()
        assert t.claim_row(p.pid) == 0
        assert t.claim_row() == 1                       # default key: our pid
        assert t.claim_row(os.getpid()) == 1
        assert t.claim_row(424242424) == 0              # row 0's pid is dead: reclaimed
        with pytest.raises(ShmError, match="no free row"):
            t.claim_row(434343434, reclaim_dead=False)
        with pytest.raises(ValueError):
            t.claim_row(0)
    finally:
        t.close()


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["claim", "release"]), st.integers(1, 6)), max_size=30))
def test_claims_match_a_model(instance, ops):
    """claim_row/release_row behave like a dict key -> row with first-free allocation."""
    name = f"c{len(ops)}{abs(hash(tuple(ops))) % 10**8}"
    t = SeqlockTable.create(instance, name, ROW, rows=4)
    try:
        model: dict[int, int] = {}
        for op, key in ops:
            key += 10**9                      # never a live pid: no dead-pid reclaim surprises
            if op == "claim":
                if key in model:
                    assert t.claim_row(key, reclaim_dead=False) == model[key]
                elif len(model) == 4:
                    with pytest.raises(ShmError):
                        t.claim_row(key, reclaim_dead=False)
                else:
                    row = t.claim_row(key, reclaim_dead=False)
                    assert row == min(set(range(4)) - set(model.values()))
                    model[key] = row
            else:
                row = model.get(key, 0)
                assert t.release_row(row, key) == (key in model)
                model.pop(key, None)
            assert {k: i for i, k in enumerate(t.claims()) if k} == model
    finally:
        t.unlink()
        t.close()
