"""Broadcast and gated rings in one process: order, lap detection and gap counts, gating, batches."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from mmshm.records import ORDER_EVENT
from mmshm.shm import BroadcastReader, BroadcastWriter, GatedReader, GatedWriter, ShmError

REC = np.dtype([("seq", "<u8"), ("k", "<u8"), ("pad", "<u8", (6,))])  # 64 bytes


def rec(k: int) -> np.ndarray:
    r = np.zeros(1, REC)
    r["k"] = k
    return r


def drain(reader) -> list[tuple[int, int]]:
    out = []
    while (r := reader.poll()) is not None:
        out.append((int(r["seq"]), int(r["k"])))
    return out


@pytest.fixture
def bcast(instance):
    w = BroadcastWriter.create(instance, "md", REC, capacity=8)
    r = BroadcastReader.attach(instance, "md", REC, reader="r")
    yield w, r
    r.close()
    w.close()


def test_broadcast_in_order(bcast):
    w, r = bcast
    assert r.poll() is None
    assert [w.publish(rec(i)) for i in range(5)] == [1, 2, 3, 4, 5]
    assert drain(r) == [(i + 1, i) for i in range(5)]
    assert r.gaps == 0 and r.lost == 0 and r.polled == 5 and r.lag() == 0


def test_poll_returns_independent_copies(bcast):
    w, r = bcast
    w.publish(rec(1))
    w.publish(rec(2))
    a, b = r.poll(), r.poll()
    assert (int(a["k"]), int(b["k"])) == (1, 2)


def test_publish_accepts_void_array_bytes(bcast):
    w, r = bcast
    w.publish(rec(1)[0])
    w.publish(rec(2))
    w.publish(rec(3).tobytes())
    w.publish_bytes(bytearray(rec(4).tobytes()))
    w.publish(np.zeros((), REC))
    assert [k for _, k in drain(r)] == [1, 2, 3, 4, 0]


def test_poll_into(bcast):
    w, r = bcast
    out = np.zeros(1, REC)
    ba = bytearray(REC.itemsize)
    assert not r.poll_into(out)
    w.publish(rec(7))
    w.publish(rec(8))
    assert r.poll_into(out) and int(out["k"][0]) == 7 and int(out["seq"][0]) == 1
    assert r.poll_into(ba) and np.frombuffer(ba, REC)["k"][0] == 8
    with pytest.raises(TypeError):
        r.poll_into(bytes(REC.itemsize))
    with pytest.raises(TypeError):
        r.poll_into(out[0])                   # a scalar is not an output buffer
    ro = np.zeros(1, REC)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        r.poll_into(ro)


def test_lap_detected_and_counted(bcast):
    w, r = bcast
    for i in range(20):                     # capacity 8: the reader at seq 1 is lapped
        w.publish(rec(i))
    got = drain(r)
    seqs = [s for s, _ in got]
    assert seqs == list(range(seqs[0], 21))  # resynced, then contiguous to the end
    assert r.gaps == 1
    assert r.lost == seqs[0] - 1             # every skipped message is counted
    assert all(k == s - 1 for s, k in got)  # never a record from another sequence


def test_lapped_reader_row_in_header(instance, bcast):
    w, r = bcast
    for i in range(20):
        w.publish(rec(i))
    drain(r)
    slot = w.segment.readers[r.slot]
    assert int(slot["gaps"]) == 1 and int(slot["lost"]) == r.lost and int(slot["cursor"]) == 21
    assert bytes(slot["name"]) == b"r"


def test_reader_start_latest_and_oldest(instance, bcast):
    w, _ = bcast
    for i in range(3):
        w.publish(rec(i))
    late = BroadcastReader.attach(instance, "md", REC, reader="late")
    old = BroadcastReader.attach(instance, "md", REC, reader="old", start="oldest")
    try:
        assert late.poll() is None
        assert [s for s, _ in drain(old)] == [1, 2, 3]
        with pytest.raises(ValueError):
            BroadcastReader.attach(instance, "md", REC, reader="bad", start="middle")
    finally:
        late.close()
        old.close()


def test_batches(bcast):
    w, r = bcast
    arr = np.zeros(6, REC)
    arr["k"] = np.arange(6)
    assert w.publish_batch(arr) == 6
    out = np.zeros(4, REC)
    assert r.poll_batch(out) == 4 and list(out["seq"]) == [1, 2, 3, 4]
    assert r.poll_batch(out) == 2 and list(out["k"][:2]) == [4, 5]
    assert r.poll_batch(out) == 0
    assert w.publish_batch(np.zeros(0, REC)) == 0
    # strided views work on both sides
    assert w.publish_batch(arr[::2]) == 3
    big = np.zeros(6, REC)
    assert r.poll_batch(big[::2]) == 3 and list(big["k"][::2]) == [0, 2, 4]
    with pytest.raises(TypeError):
        w.publish_batch(np.zeros(2, ORDER_EVENT))
    with pytest.raises(ValueError):
        w.publish_batch(np.zeros((2, 2), REC))


def test_batch_lapped(bcast):
    w, r = bcast
    arr = np.zeros(30, REC)
    arr["k"] = np.arange(30)
    w.publish_batch(arr)
    out = np.zeros(64, REC)
    n = r.poll_batch(out)
    assert r.gaps == 1 and r.lost + n == 30
    assert list(out["seq"][:n]) == list(range(31 - n, 31))


def test_heartbeats(instance, bcast):
    w, r = bcast
    w.heartbeat()
    w.heartbeat()
    r.heartbeat()
    h = w.segment.header
    assert int(h["heartbeat_count"]) == 2 and int(h["heartbeat_mono"]) > 0
    assert int(w.segment.readers[r.slot]["heartbeat_mono"]) > 0


# --------------------------------------------------------------------------- gated

@pytest.fixture
def gated(instance):
    w = GatedWriter.create(instance, "orders", REC, capacity=4, required=("risk", "recorder"))
    yield w
    w.close()


def test_gated_refuses_when_full_counts_and_resumes(instance, gated):
    w = gated
    assert w.required == 2 and w.free_slots() == 4
    assert [w.try_publish(rec(i)) for i in range(6)] == [True] * 4 + [False] * 2
    assert w.refused == 2 and w.alarm
    assert int(w.segment.header["refused"]) == 2
    risk = GatedReader.attach(instance, "orders", REC, reader="risk")
    rec_ = GatedReader.attach(instance, "orders", REC, reader="recorder")
    try:
        assert risk.required and rec_.required
        assert [k for _, k in drain(risk)] == [0, 1, 2, 3]
        assert not w.try_publish(rec(4))     # recorder has not consumed yet
        assert w.refused == 3
        assert rec_.poll() is not None       # recorder frees one slot
        assert w.try_publish(rec(4))
        assert [k for _, k in drain(rec_)] == [1, 2, 3, 4]
        assert [k for _, k in drain(risk)] == [4]
        w.clear_alarm()
        assert not w.alarm
        assert risk.gaps == 0 and rec_.gaps == 0
    finally:
        risk.close()
        rec_.close()


def test_gated_batch_publishes_prefix(instance, gated):
    w = gated
    arr = np.zeros(6, REC)
    arr["k"] = np.arange(6)
    assert w.publish_batch(arr) == 4
    assert w.refused == 2 and w.alarm


def test_required_reader_restart_resumes(instance, gated):
    w = gated
    risk = GatedReader.attach(instance, "orders", REC, reader="risk")
    rec_ = GatedReader.attach(instance, "orders", REC, reader="recorder")
    for i in range(3):
        assert w.try_publish(rec(i))
    assert risk.poll() is not None
    risk.close()                              # "dies" after consuming seq 1
    for i in range(3, 5):
        rec_.poll_batch(np.zeros(8, REC))
        w.try_publish(rec(i))
    risk2 = GatedReader.attach(instance, "orders", REC, reader="risk")
    try:
        assert risk2.cursor == 2
        assert [k for _, k in drain(risk2)] == [1, 2, 3, 4]   # nothing lost
    finally:
        risk2.close()
        rec_.close()


def test_required_reader_of_dead_process_is_reattached(instance, gated):
    risk = GatedReader.attach(instance, "orders", REC, reader="risk")
    p = subprocess.Popen(["true"])
    p.wait()
    gated.segment.readers[risk.slot]["pid"] = p.pid         # as if the owner was killed
    again = GatedReader.attach(instance, "orders", REC, reader="risk")
    assert again.slot == risk.slot and again.required
    again.close()


def test_untethered_reader_on_gated_is_lossy(instance):
    w = GatedWriter.create(instance, "orders", REC, capacity=4, required=())
    u = GatedReader.attach(instance, "orders", REC, reader="viewer")
    try:
        assert not u.required
        for i in range(10):
            assert w.try_publish(rec(i))     # nobody gates: never refused
        got = drain(u)
        assert u.gaps == 1 and u.lost + len(got) == 10
    finally:
        u.close()
        w.close()


def test_gated_takeover_is_gap_and_keeps_required_cursors(instance, gated):
    risk = GatedReader.attach(instance, "orders", REC, reader="risk")
    for i in range(3):
        gated.try_publish(rec(i))
    risk.poll()
    p = subprocess.Popen(["true"])
    p.wait()
    gated.segment.header["creator_pid"] = p.pid
    w2 = GatedWriter.create(instance, "orders", REC, capacity=4, required=("risk", "recorder"))
    try:
        assert w2.epoch == 2 and w2.cursor == 4
        assert w2.free_slots() == 1           # recorder has consumed nothing: still gated
        assert w2.try_publish(rec(3))
        assert not w2.try_publish(rec(4))
        assert [k for _, k in drain(risk)] == [1, 2, 3]
        assert risk.gaps == 1 and risk.lost == 0
    finally:
        risk.close()
        w2.close()


def test_required_reader_name_taken_by_live_process(instance, gated):
    risk = GatedReader.attach(instance, "orders", REC, reader="risk")
    try:
        with pytest.raises(ShmError, match="already attached"):
            GatedReader.attach(instance, "orders", REC, reader="risk")
    finally:
        risk.close()


def test_expect_required_guards_typos(instance, gated):
    with pytest.raises(ShmError, match="not a required reader"):
        GatedReader.attach(instance, "orders", REC, reader="rsik", expect_required=True)
    with pytest.raises(ShmError, match="is a required reader"):
        GatedReader.attach(instance, "orders", REC, reader="risk", expect_required=False)
    ok = GatedReader.attach(instance, "orders", REC, reader="risk", expect_required=True)
    assert ok.required
    ok.close()
    # the failed attaches released their slots
    assert sum(1 for r in gated.segment.readers if int(r["state"]) == 2) == 0
