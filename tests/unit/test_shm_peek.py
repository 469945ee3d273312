"""Two-phase reads on the rings: peek_batch / peek, commit, commit_through, rewind."""
from __future__ import annotations

import numpy as np
import pytest

from mmshm.shm import BroadcastReader, BroadcastWriter, GatedReader, GatedWriter
from mmshm.shm.segment import ShmError

REC = np.dtype([("seq", "<u8"), ("v", "<u8"), ("pad", "<u8", (6,))])


def recs(first: int, n: int) -> np.ndarray:
    a = np.zeros(n, REC)
    a["v"] = np.arange(first, first + n)
    return a


def stored(r) -> int:
    return int(r.segment.readers[r.slot]["cursor"])


@pytest.fixture
def gated(instance):
    w = GatedWriter.create(instance, "g", REC, capacity=8, required=("req",))
    r = GatedReader.attach(instance, "g", REC, reader="req", expect_required=True)
    yield w, r
    r.close()
    w.unlink()
    w.close()


def test_peek_does_not_release_until_commit(gated):
    w, r = gated
    assert w.publish_batch(recs(0, 8)) == 8
    out = np.zeros(5, REC)
    assert r.peek_batch(out) == 5 and list(out["seq"]) == [1, 2, 3, 4, 5]
    assert (r.cursor, r.committed, r.pending, stored(r)) == (6, 1, 5, 1)
    # The next peek continues after what was already peeked.
    assert r.peek_batch(out) == 3 and list(out["seq"][:3]) == [6, 7, 8]
    assert r.peek_batch(out) == 0 and r.peek() is None
    assert not w.try_publish(recs(8, 1)) and w.free_slots() == 0   # still full: nothing released
    assert r.commit(3) == 4 and stored(r) == 4 and r.pending == 5 and r.polled == 3
    assert w.free_slots() == 3
    assert r.commit(5) == 9 and r.pending == 0 and w.free_slots() == 8 and r.polled == 8


def test_commit_argument_errors(gated):
    w, r = gated
    w.publish_batch(recs(0, 4))
    assert r.commit(0) == 1                     # nothing peeked, nothing to do
    with pytest.raises(ValueError, match="cannot commit 1 records, 0 peeked"):
        r.commit(1)
    r.peek_batch(np.zeros(2, REC))
    with pytest.raises(ValueError):
        r.commit(3)
    with pytest.raises(ValueError):
        r.commit(-1)
    assert r.committed == 1 and r.pending == 2   # a refused commit changes nothing


def test_commit_through(gated):
    w, r = gated
    w.publish_batch(recs(0, 6))
    r.peek_batch(np.zeros(6, REC))
    with pytest.raises(ValueError, match="only sequences below 7"):
        r.commit_through(7)                      # not peeked yet
    assert r.commit_through(2) == 3 and r.pending == 4 and stored(r) == 3
    assert r.commit_through(1) == 3              # already committed: no-op
    assert r.commit_through(6) == 7 and r.pending == 0 and r.polled == 6


def test_rewind_redelivers_uncommitted(gated):
    w, r = gated
    w.publish_batch(recs(10, 6))
    out = np.zeros(6, REC)
    assert r.peek_batch(out) == 6
    r.commit(2)
    assert r.rewind() == 4 and r.cursor == 3 and r.pending == 0
    assert r.rewind() == 0
    again = np.zeros(6, REC)
    assert r.peek_batch(again) == 4
    assert list(again["seq"][:4]) == [3, 4, 5, 6] and list(again["v"][:4]) == [12, 13, 14, 15]


def test_poll_after_peek_commits_everything_read(gated):
    w, r = gated
    w.publish_batch(recs(0, 5))
    r.peek_batch(np.zeros(2, REC))
    got = r.poll()
    assert int(got["seq"]) == 3                  # poll reads after the peeked records ...
    assert r.committed == 4 and r.pending == 0 and r.polled == 3   # ... and releases them too
    out = np.zeros(4, REC)
    r.peek_batch(out[:1])
    assert r.poll_batch(out) == 1 and int(out["seq"][0]) == 5
    assert r.committed == 6 and r.polled == 5


def test_restart_resumes_at_the_committed_cursor(instance, gated):
    """A required reader killed after peeking (no commit) gets the batch again."""
    w, r = gated
    w.publish_batch(recs(0, 6))
    r.peek_batch(np.zeros(6, REC))
    r.commit(2)
    r.close()                                    # like SIGKILL: nothing more is stored
    r2 = GatedReader.attach(instance, "g", REC, reader="req")
    try:
        assert r2.cursor == r2.committed == 3 and r2.pending == 0
        out = np.zeros(8, REC)
        assert r2.peek_batch(out) == 4 and list(out["seq"][:4]) == [3, 4, 5, 6]
    finally:
        r2.close()


def test_untethered_lap_releases_what_was_peeked(instance):
    """An untethered peeker that is lapped counts the gap; commit(n) still counts what it peeked."""
    w = GatedWriter.create(instance, "u", REC, capacity=4)
    r = GatedReader.attach(instance, "u", REC, reader="u", start="oldest", expect_required=False)
    try:
        w.publish_batch(recs(0, 2))
        out = np.zeros(8, REC)
        assert r.peek_batch(out) == 2            # seq 1, 2 peeked
        # Nobody gates: seq 3..12 reuse the slots of 1..8.
        assert all(w.try_publish(recs(v, 1)) for v in range(2, 12))
        m = r.peek_batch(out)
        assert r.gaps == 1 and r.lost > 0
        seqs = list(out["seq"][:m])
        assert seqs == list(range(seqs[0], 13)) and seqs[0] == 3 + r.lost
        assert r.pending == 2 + m and r.cursor == 13
        assert r.committed == seqs[0]            # the lap released 1..2 (and the lost ones)
        r.commit(3)                              # 2 auto-released + the first after the lap
        assert r.committed == seqs[0] + 1 and r.pending == m - 1
        assert r.rewind() == m - 1               # only what survives in the ring is re-read
        assert r.peek_batch(out) == m - 1 and int(out["seq"][0]) == seqs[1]
    finally:
        r.close()
        w.unlink()
        w.close()


def test_broadcast_reader_peek_commit(instance):
    w = BroadcastWriter.create(instance, "b", REC, capacity=8)
    r = BroadcastReader.attach(instance, "b", REC, reader="b", start="oldest")
    try:
        w.publish_batch(recs(0, 3))
        assert int(r.peek()["seq"]) == 1 and r.committed == 1
        assert r.rewind() == 1
        out = np.zeros(4, REC)
        assert r.peek_batch(out) == 3 and r.commit_through(3) == 4 and r.lag() == 0
    finally:
        r.close()
        w.unlink()
        w.close()


def test_bad_arguments_and_closed_reader(gated):
    w, r = gated
    with pytest.raises(TypeError):
        r.peek_batch(np.zeros(2, np.uint64))
    with pytest.raises(TypeError):
        r.peek_batch([1, 2])
    with pytest.raises(ValueError, match="read-only"):
        a = np.zeros(2, REC)
        a.flags.writeable = False
        r.peek_batch(a)
    assert r.peek_batch(np.zeros(0, REC)) == 0
    r.close()
    for call in (lambda: r.peek_batch(np.zeros(1, REC)), r.peek, lambda: r.commit(0),
                 lambda: r.commit_through(0), r.rewind):
        with pytest.raises(ShmError, match="closed"):
            call()
