"""Property: however the ring's events are cut into batches, and whatever is rolled back
or re-read after a "crash", the journal ends up as if every event was written once."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mmshm.journal import JournalWriter, open_journal
from mmshm.records import ORDER_EVENT
from mmshm.records import OrderEventKind as K


@st.composite
def event_streams(draw):
    n_orders = draw(st.integers(1, 6))
    evs = []
    for cid in range(1, n_orders + 1):
        evs.append((K.NEW_SENT, cid, 1, 0))
        evs.append((K.ACK, cid, 2, 0))
        for _ in range(draw(st.integers(0, 3))):
            # Trade ids drawn from a small pool: the same fill is often reported twice.
            evs.append((K.FILL, cid, 3, draw(st.integers(1, 4)) + cid * 10))
        if draw(st.booleans()):
            evs.append((K.CANCELED, cid, 6, 0))
    order = draw(st.permutations(range(len(evs))))
    arr = np.zeros(len(evs), ORDER_EVENT)
    for seq, i in enumerate(order, start=1):
        kind, cid, status, trade = evs[i]
        arr[seq - 1]["seq"], arr[seq - 1]["kind"], arr[seq - 1]["client_id"] = seq, kind, cid
        arr[seq - 1]["status"], arr[seq - 1]["trade_id"] = status, trade
        arr[seq - 1]["fill_qty"], arr[seq - 1]["fill_px"], arr[seq - 1]["fee"] = (1, 100 + trade, -trade) if trade else (0, 0, 0)
        arr[seq - 1]["local_ts"] = 1_000 + seq
    return arr


def dump(conn):
    return (conn.execute("SELECT ring_seq, kind, client_id FROM order_events ORDER BY ring_seq").fetchall(),
            conn.execute("SELECT * FROM orders ORDER BY client_id").fetchall(),
            conn.execute("SELECT client_id, trade_id, px, qty, fee FROM fills ORDER BY client_id, trade_id").fetchall())


@settings(max_examples=60, deadline=None)
@given(events=event_streams(), cuts=st.lists(st.integers(0, 40), max_size=6),
       crashes=st.lists(st.sampled_from(["rollback", "reread", "restart"]), max_size=6))
def test_any_batching_and_replay_gives_the_same_journal(tmp_path_factory, events, cuts, crashes):
    d = tmp_path_factory.mktemp("j")
    ref = open_journal(d / "ref.sqlite")
    w = JournalWriter(ref)
    w.begin_ring(5)
    w.write(events)
    w.commit()

    conn = open_journal(d / "test.sqlite")
    w = JournalWriter(conn)
    w.begin_ring(5)
    bounds = sorted({min(c, len(events)) for c in cuts} | {0, len(events)})
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        crash = crashes[k] if k < len(crashes) else None
        w.write(events[lo:hi])
        if crash == "rollback":        # the transaction failed: retried in full
            w.rollback()
            w.write(events[lo:hi])
        w.commit()
        if crash == "reread":          # committed but not released: the batch comes again
            w.write(events[lo:hi])
            w.commit()
        elif crash == "restart":       # a new recorder: high water from the journal, re-read from lo
            w = JournalWriter(conn)
            w.begin_ring(5)
            w.write(events[lo:hi])
            w.commit()
    assert dump(conn) == dump(ref)
    conn.close()
    ref.close()
