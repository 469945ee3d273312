"""Hypothesis: any interleaving of writes and reads on a ring of capacity N.

A reader sees every message in order exactly once, or a counted gap; never a duplicate
or a torn record. Gated rings additionally never lose a message for a required reader:
a refused publish is counted and the message is simply not in the ring.
"""
from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checksummed import REC, check_record, make
from mmshm.shm import BroadcastReader, BroadcastWriter, GatedReader, GatedWriter

_counter = itertools.count()

ops = st.lists(
    st.one_of(
        st.tuples(st.just("w"), st.integers(1, 40)),       # publish a batch of n (or n singles)
        st.tuples(st.just("r"), st.integers(1, 40)),       # poll up to n
        st.tuples(st.just("rb"), st.integers(1, 40)),      # poll_batch of n
    ),
    min_size=1, max_size=40,
)


def run(reader, writer, script, log2cap, gated):
    published: list[int] = []      # k of every message that made it into the ring
    seen: list[int] = []
    next_k = 0
    for op, n in script:
        if op == "w":
            for _ in range(n):
                r = make(next_k)
                ok = writer.try_publish(r) if gated else (writer.publish(r) > 0)
                if ok:
                    published.append(next_k)
                    next_k += 1
        elif op == "r":
            for _ in range(n):
                got = reader.poll()
                if got is None:
                    break
                seen.append(check_record(got))
        else:
            out = np.zeros(n, REC)
            m = reader.poll_batch(out)
            seen.extend(check_record(x) for x in out[:m])
    while (got := reader.poll()) is not None:
        seen.append(check_record(got))
    # strictly increasing: in order, no duplicate
    assert all(b > a for a, b in zip(seen, seen[1:]))
    # anything missing is accounted for by the counted gaps
    assert len(seen) + reader.lost == len(published)
    assert (reader.lost == 0) == (reader.gaps == 0)
    if gated:
        assert reader.lost == 0 and reader.gaps == 0 and seen == published
        assert writer.refused >= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops, log2cap=st.integers(1, 5))
def test_broadcast_any_interleaving(instance, script, log2cap):
    name = f"b{next(_counter)}"
    w = BroadcastWriter.create(instance, name, REC, capacity=1 << log2cap)
    r = BroadcastReader.attach(instance, name, REC, reader="p")
    try:
        run(r, w, script, log2cap, gated=False)
    finally:
        r.close()
        w.unlink()
        w.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops, log2cap=st.integers(1, 5))
def test_gated_any_interleaving(instance, script, log2cap):
    name = f"g{next(_counter)}"
    w = GatedWriter.create(instance, name, REC, capacity=1 << log2cap, required=("p",))
    r = GatedReader.attach(instance, name, REC, reader="p")
    try:
        run(r, w, script, log2cap, gated=True)
        refused_expected = sum(n for op, n in script if op == "w") - (r.polled)
        assert w.refused == refused_expected
    finally:
        r.close()
        w.unlink()
        w.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops, log2cap=st.integers(1, 4))
def test_gated_batch_publish_any_interleaving(instance, script, log2cap):
    """publish_batch on a gated ring: the prefix that fits goes in, the rest is refused and counted."""
    name = f"gb{next(_counter)}"
    cap = 1 << log2cap
    w = GatedWriter.create(instance, name, REC, capacity=cap, required=("p",))
    r = GatedReader.attach(instance, name, REC, reader="p")
    try:
        next_k, seen, attempted = 0, [], 0
        for op, n in script:
            if op == "w":
                batch = np.concatenate([make(next_k + i) for i in range(n)])
                attempted += n
                next_k += w.publish_batch(batch)
            else:
                out = np.zeros(n, REC)
                m = r.poll_batch(out)
                seen.extend(check_record(x) for x in out[:m])
        out = np.zeros(cap, REC)
        m = r.poll_batch(out)
        seen.extend(check_record(x) for x in out[:m])
        assert seen == list(range(next_k))
        assert w.refused == attempted - next_k
    finally:
        r.close()
        w.unlink()
        w.close()
