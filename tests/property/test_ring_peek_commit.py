"""Hypothesis: two-phase reads (peek, commit, rewind, restart) on the rings.

Gated ring, required reader: any interleaving of writes, peeks, commits, rewinds and
reader restarts (re-attach from the stored cursor) delivers every message at least once
and never loses one; once committed a message is never delivered again; the writer
accepts a message exactly when it would not overwrite an uncommitted slot (so every
delivered record is intact and belongs to its sequence).

Untethered readers (broadcast ring, gated ring by a non-required name): the same peek
semantics, but lapping still applies: every message is delivered or counted as lost,
never torn, and nothing committed is delivered again.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checksummed import REC, check_record, make
from mmshm.shm import BroadcastReader, BroadcastWriter, GatedReader, GatedWriter

_counter = itertools.count()

_common = [
    st.tuples(st.just("w"), st.integers(1, 40)),        # publish n singles
    st.tuples(st.just("peek"), st.integers(1, 20)),     # peek_batch of n
    st.tuples(st.just("peek1"), st.just(0)),            # peek() one
    st.tuples(st.just("commit"), st.integers(0, 20)),   # commit(min(n, pending))
    st.tuples(st.just("through"), st.integers(0, 20)),  # commit_through(a peeked seq)
    st.tuples(st.just("rewind"), st.just(0)),
    st.tuples(st.just("poll"), st.integers(1, 20)),     # poll_batch (peek + commit all)
]
gated_ops = st.lists(st.one_of(*_common, st.tuples(st.just("restart"), st.just(0))), min_size=1, max_size=60)
lossy_ops = st.lists(st.one_of(*_common), min_size=1, max_size=60)


def checked_seq(r) -> int:
    """The record's sequence, after checking it is intact and belongs to that sequence."""
    return check_record(r) + 1


def stored_cursor(reader) -> int:
    return int(reader.segment.readers[reader.slot]["cursor"])


@pytest.mark.timeout(120)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=gated_ops, log2cap=st.integers(2, 5))
def test_gated_required_reader_two_phase(instance, script, log2cap):
    cap = 1 << log2cap
    name = f"pc{next(_counter)}"
    w = GatedWriter.create(instance, name, REC, capacity=cap, required=("r",))
    r = GatedReader.attach(instance, name, REC, reader="r", expect_required=True)
    written = 0          # sequences 1..written are in the ring (or were)
    committed = 1        # model: next sequence not yet committed
    cursor = 1           # model: next sequence to peek
    delivered: set[int] = set()

    def deliver(seqs: list[int]) -> None:
        nonlocal cursor
        assert seqs == list(range(cursor, cursor + len(seqs))), "out of order or skipped"
        assert all(s >= committed for s in seqs), "a committed message was delivered again"
        cursor += len(seqs)
        delivered.update(seqs)

    try:
        for op, n in script:
            if op == "w":
                for _ in range(n):
                    ok = w.try_publish(make(written))
                    # Exactly: accepted iff it does not overwrite an uncommitted slot.
                    assert ok == (written + 1 < committed + cap)
                    if ok:
                        written += 1
            elif op == "peek":
                out = np.zeros(n, REC)
                m = r.peek_batch(out)
                assert m == min(n, written + 1 - cursor)
                deliver([checked_seq(x) for x in out[:m]])
            elif op == "peek1":
                got = r.peek()
                assert (got is None) == (cursor > written)
                if got is not None:
                    deliver([checked_seq(got)])
            elif op == "commit":
                k = min(n, r.pending)
                assert r.commit(k) == committed + k
                committed += k
            elif op == "through":
                if cursor > committed:
                    seq = committed + n % (cursor - committed)
                    assert r.commit_through(seq) == seq + 1
                    committed = seq + 1
                elif committed > 1:
                    assert r.commit_through(committed - 1) == committed   # already committed: no-op
            elif op == "rewind":
                assert r.rewind() == cursor - committed
                cursor = committed
            elif op == "poll":
                out = np.zeros(n, REC)
                m = r.poll_batch(out)
                assert m == min(n, written + 1 - cursor)
                deliver([checked_seq(x) for x in out[:m]])
                committed = cursor
            else:  # restart: a reader that dies (no commit) and re-attaches from its stored cursor
                r.close()
                r = GatedReader.attach(instance, name, REC, reader="r", expect_required=True)
                cursor = committed
                assert r.cursor == r.committed == committed and r.pending == 0
            assert r.committed == committed and stored_cursor(r) == committed
            assert r.cursor == cursor and r.pending == cursor - committed
        # Drain: everything written is delivered at least once, nothing is lost.
        assert r.commit(r.pending) == cursor
        committed = cursor
        out = np.zeros(cap, REC)
        while m := r.peek_batch(out):
            deliver([checked_seq(x) for x in out[:m]])
            r.commit(m)
            committed += m
        assert delivered == set(range(1, written + 1))
        assert r.lost == 0 and r.gaps == 0 and committed == written + 1
    finally:
        r.close()
        w.unlink()
        w.close()


def _lossy(reader, writer, script, publish):
    """Run ``script`` on an untethered reader; returns the sequences written."""
    written = 0
    delivered: list[int] = []
    last_in_window = 0       # since the last commit-all/rewind, deliveries strictly increase

    def deliver(recs) -> None:
        nonlocal last_in_window
        for x in recs:
            s = checked_seq(x)
            assert s > last_in_window, "duplicate or out of order within a peek window"
            last_in_window = s
            delivered.append(s)

    for op, n in script:
        committed_before = reader.committed
        if op == "w":
            for _ in range(n):
                publish(make(written))
                written += 1
        elif op in ("peek", "poll"):
            out = np.zeros(n, REC)
            m = (reader.peek_batch if op == "peek" else reader.poll_batch)(out)
            recs = list(out[:m])
            assert all(int(x["seq"]) >= committed_before for x in recs), "committed message re-delivered"
            deliver(recs)
        elif op == "peek1":
            got = reader.peek()
            if got is not None:
                assert int(got["seq"]) >= committed_before
                deliver([got])
        elif op == "commit":
            pend = reader.pending
            reader.commit(min(n, pend))
            assert reader.pending == pend - min(n, pend)
        elif op == "through":
            if reader.cursor > reader.committed:
                seq = reader.committed + n % (reader.cursor - reader.committed)
                assert reader.commit_through(seq) == seq + 1
        else:  # rewind
            back = reader.rewind()
            assert reader.cursor == reader.committed and reader.pending == 0 and back >= 0
            last_in_window = reader.cursor - 1
        assert reader.committed <= reader.cursor
        assert stored_cursor(reader) == reader.committed
        assert reader.pending >= reader.cursor - reader.committed
    out = np.zeros(8, REC)
    while m := reader.poll_batch(out):
        deliver(list(out[:m]))
    # Every message delivered or counted lost (a rewind over lapped slots may count twice).
    assert len(set(delivered)) + reader.lost >= written
    assert set(delivered) <= set(range(1, written + 1))
    assert (reader.lost == 0) == (reader.gaps == 0)
    return written


@pytest.mark.timeout(120)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=lossy_ops, log2cap=st.integers(2, 5))
def test_broadcast_reader_two_phase(instance, script, log2cap):
    name = f"pb{next(_counter)}"
    w = BroadcastWriter.create(instance, name, REC, capacity=1 << log2cap)
    r = BroadcastReader.attach(instance, name, REC, reader="r", start="oldest")
    try:
        _lossy(r, w, script, w.publish)
    finally:
        r.close()
        w.unlink()
        w.close()


@pytest.mark.timeout(120)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=lossy_ops, log2cap=st.integers(2, 5))
def test_gated_untethered_reader_two_phase(instance, script, log2cap):
    """No required reader: the writer never refuses and an untethered peeker can be lapped."""
    name = f"pu{next(_counter)}"
    w = GatedWriter.create(instance, name, REC, capacity=1 << log2cap)
    r = GatedReader.attach(instance, name, REC, reader="u", start="oldest", expect_required=False)

    def publish(rec):
        assert w.try_publish(rec)

    try:
        _lossy(r, w, script, publish)
    finally:
        r.close()
        w.unlink()
        w.close()
