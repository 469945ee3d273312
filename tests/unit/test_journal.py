"""The journal: schema, idempotent batch inserts, fill dedup, queries, the ring's
deferred release, md captures and `mmshm orders`."""
from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest

from mmshm.cli import main as cli_main
from mmshm.journal import (JournalWriter, MdCaptureWriter, last_orders, open_journal, order_report,
                           read_md_capture, totals, u64_from_sql, u64_to_sql)
from mmshm.journal.schema import JournalError
from mmshm.records import INSTRUMENT_ROW, MARKET_EVENT, ORDER_EVENT
from mmshm.records import OrderEventKind as K
from mmshm.records import OrderStatus as S
from mmshm.shm import GatedReader, GatedWriter


def ev(seq: int, kind: int, cid: int, status: int, **kw) -> np.void:
    r = np.zeros(1, ORDER_EVENT)
    r["seq"], r["kind"], r["client_id"], r["status"] = seq, kind, cid, status
    r["instrument"], r["side"], r["price"], r["qty"] = 0, 1, 600_000, 10
    r["local_ts"] = 1_700_000_000_000_000_000 + seq
    r["event_mono"] = 1_000_000 + seq * 1000
    for k, v in kw.items():
        r[k] = v
    return r


def batch(*events) -> np.ndarray:
    return np.concatenate(events)


def lifecycle(cid: int, seq0: int) -> np.ndarray:
    """New → ack → partial fill → same fill again (reconciled) → final fill."""
    return batch(
        ev(seq0, K.NEW_SENT, cid, S.PENDING_NEW, sent_mono=5_000_000, md_seq=42),
        ev(seq0 + 1, K.ACK, cid, S.NEW, venue_order_id=777, event_mono=5_250_000),
        ev(seq0 + 2, K.FILL, cid, S.PARTIALLY_FILLED, fill_px=600_000, fill_qty=4, filled_qty=4, fee=-240,
           trade_id=9001, flags=4),
        ev(seq0 + 3, K.RECONCILE, cid, S.PARTIALLY_FILLED, filled_qty=4),
        ev(seq0 + 4, K.FILL, cid, S.PARTIALLY_FILLED, fill_px=600_000, fill_qty=4, filled_qty=4, fee=-240,
           trade_id=9001, flags=4),
        ev(seq0 + 5, K.FILL, cid, S.FILLED, fill_px=600_010, fill_qty=6, filled_qty=10, fee=-360,
           trade_id=9002, flags=4),
    )


@pytest.fixture
def db(tmp_path):
    conn = open_journal(tmp_path / "j.sqlite")
    yield conn
    conn.close()


def test_schema_is_wal_with_tables_and_views(tmp_path, db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"orders", "order_events", "fills", "instruments", "meta", "orders_dec", "fills_dec",
            "order_events_dec"} <= names
    # A plain sqlite3 connection can read it.
    plain = sqlite3.connect(tmp_path / "j.sqlite")
    assert plain.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0
    plain.close()
    open_journal(tmp_path / "j.sqlite").close()  # reopening is fine


def test_readonly_missing_and_foreign_files(tmp_path):
    with pytest.raises(JournalError, match="no journal"):
        open_journal(tmp_path / "absent.sqlite", readonly=True)
    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE x (a)")
    other.commit()
    other.close()
    with pytest.raises(JournalError):
        open_journal(tmp_path / "other.sqlite", readonly=True)


def test_order_row_events_and_fill_dedup(db):
    w = JournalWriter(db)
    assert w.begin_ring(111) == 0
    st = w.write(lifecycle(7, 1))
    w.commit()
    assert (st.events, st.fills, st.duplicate_fills, st.duplicates, st.bad) == (6, 2, 1, 0, 0)
    rep = order_report(db, 7)
    o = rep["order"]
    assert o["status_name"] == "FILLED" and o["filled_qty"] == 10 and o["n_fills"] == 2
    assert o["fill_qty_sum"] == 10 and o["fees"] == -600
    assert o["avg_fill_px"] == pytest.approx((600_000 * 4 + 600_010 * 6) / 10)
    assert o["venue_order_id"] == 777 and o["md_seq"] == 42 and o["n_events"] == 6
    assert [e["kind"] for e in rep["events"]] == ["NEW_SENT", "ACK", "FILL", "RECONCILE", "FILL", "FILL"]
    assert [f["trade_id"] for f in rep["fills"]] == [9001, 9002]
    assert rep["latencies"]["sent_to_ack_us"] == pytest.approx(250.0)
    assert order_report(db, 8) is None


def test_replay_after_restart_is_idempotent(db):
    w = JournalWriter(db)
    w.begin_ring(111)
    w.write(lifecycle(7, 1)[:3])
    w.commit()
    # A restarted recorder re-reads events 2..6 (3 were committed, the cursor was not released).
    w2 = JournalWriter(db)
    assert w2.begin_ring(111) == 3
    st = w2.write(lifecycle(7, 1)[1:])
    w2.commit()
    assert st.duplicates == 2 and st.events == 3
    assert db.execute("SELECT COUNT(*) FROM order_events").fetchone()[0] == 6
    o = order_report(db, 7)["order"]
    assert o["n_events"] == 6 and o["fees"] == -600 and o["n_fills"] == 2


def test_new_ring_incarnation_does_not_collide(db):
    w = JournalWriter(db)
    w.begin_ring(111)
    w.write(lifecycle(7, 1))
    w.commit()
    assert w.begin_ring(222) == 0  # a fresh ring: sequences start at 1 again
    w.write(lifecycle(8, 1))
    w.commit()
    assert totals(db)["events"] == 12 and totals(db)["orders"] == 2


def test_rollback_then_retry(db):
    w = JournalWriter(db)
    w.begin_ring(1)
    w.write(lifecycle(7, 1))
    w.rollback()
    assert db.execute("SELECT COUNT(*) FROM order_events").fetchone()[0] == 0
    assert w.high_water == 0
    w.write(lifecycle(7, 1))
    w.commit()
    assert db.execute("SELECT COUNT(*) FROM order_events").fetchone()[0] == 6


def test_reject_cancel_and_bad_events(db):
    w = JournalWriter(db)
    w.begin_ring(1)
    st = w.write(batch(
        ev(1, K.NEW_SENT, 10, S.PENDING_NEW, sent_mono=1),
        ev(2, K.REJECT, 10, S.REJECTED, reason=-5022),
        ev(3, K.NEW_SENT, 11, S.PENDING_NEW),
        ev(4, K.ACK, 11, S.NEW),
        ev(5, K.CANCEL_SENT, 11, S.PENDING_CANCEL),
        ev(6, K.CANCELED, 11, S.CANCELED),
        ev(7, 99, 12, 0),              # unknown kind: journaled as evidence, not folded
        ev(8, K.ACK, 0, S.NEW),        # no client id
    ))
    w.commit()
    assert st.events == 8 and st.bad == 2
    assert order_report(db, 10)["order"]["status_name"] == "REJECTED"
    assert order_report(db, 10)["order"]["reject_reason"] == -5022
    assert order_report(db, 11)["order"]["status_name"] == "CANCELED"
    assert order_report(db, 12) is None
    assert db.execute("SELECT kind_name FROM order_events WHERE ring_seq = 7").fetchone()[0] == "KIND_99"
    assert [r["client_id"] for r in last_orders(db, 5)] == [11, 10]


def test_position_reports_are_kept_not_folded_nor_bad(db):
    """The executor's venue position report (RECONCILE, client_id 0) belongs to no order."""
    w = JournalWriter(db)
    w.begin_ring(1)
    st = w.write(batch(ev(1, K.RECONCILE, 0, 0)))
    w.commit()
    assert st.events == 1 and st.bad == 0
    assert db.execute("SELECT kind_name FROM order_events WHERE ring_seq = 1").fetchone()[0] == "RECONCILE"
    assert last_orders(db, 5) == []


def test_u64_ids_round_trip(db):
    big = (1 << 64) - 5
    w = JournalWriter(db)
    w.begin_ring(1)
    w.write(batch(ev(1, K.NEW_SENT, big, S.PENDING_NEW), ev(2, K.FILL, big, S.FILLED, trade_id=big - 1,
                                                              fill_qty=1, fill_px=1)))
    w.commit()
    assert u64_from_sql(u64_to_sql(big)) == big
    rep = order_report(db, big)
    assert rep["order"]["client_id"] == big and rep["fills"][0]["trade_id"] == big - 1


def test_instruments_give_decimal_views(db):
    rows = np.zeros(2, INSTRUMENT_ROW)
    rows[0]["version"], rows[0]["instrument"], rows[0]["symbol"], rows[0]["quote_asset"] = 2, 0, b"BTCUSDT", b"USDT"
    rows[0]["tick_mantissa"], rows[0]["price_exp"], rows[0]["lot_mantissa"], rows[0]["qty_exp"] = 1, -1, 1, -3
    w = JournalWriter(db)
    assert w.set_instruments(rows) == 1
    w.begin_ring(1)
    w.write(lifecycle(7, 1))
    w.commit()
    dec = db.execute("SELECT symbol, price, qty, fees FROM orders_dec").fetchone()
    assert dec[0] == "BTCUSDT" and dec[1] == pytest.approx(60000.0) and dec[2] == pytest.approx(0.01)
    assert dec[3] == pytest.approx(-6e-6)
    rep = order_report(db, 7)
    assert rep["order"]["decimal"]["price"] == "60000" and rep["fills"][1]["px_dec"] == "60001"


def test_peek_holds_slots_until_commit(instance):
    """The recorder's read path: peeked events stay reserved in the ring until commit()."""
    w = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=8, required=("recorder",))
    r = GatedReader.attach(instance, "orders", ORDER_EVENT, reader="recorder")
    try:
        rec = ev(0, K.ACK, 1, S.NEW)
        assert all(w.try_publish(rec) for _ in range(8))
        out = np.zeros(16, ORDER_EVENT)
        assert r.peek_batch(out) == 8
        assert list(out["seq"][:8]) == list(range(1, 9))
        assert r.committed == 1 and int(r.segment.readers[r.slot]["cursor"]) == 1
        assert not w.try_publish(rec)          # read but not released: the ring is still full
        assert r.commit(8) == 9
        assert r.committed == 9 and int(r.segment.readers[r.slot]["cursor"]) == 9 and r.polled == 8
        assert w.try_publish(rec)
        assert w.cursor == 10
    finally:
        r.close()
        w.unlink()
        w.close()


def test_md_capture_round_trip(tmp_path):
    cap = MdCaptureWriter(tmp_path, "x")
    evs = np.zeros(5, MARKET_EVENT)
    evs["md_seq"] = np.arange(1, 6)
    cap.write(evs)
    cap.close()
    with open(cap.path, "ab") as f:
        f.write(b"\x01" * 7)  # torn record at the end
    back = read_md_capture(cap.path)
    assert list(back["md_seq"]) == [1, 2, 3, 4, 5]
    with pytest.raises(TypeError):
        MdCaptureWriter(tmp_path, "y").write(np.zeros(1, ORDER_EVENT))


def test_cli_orders_json_and_table(tmp_path, db, capsys):
    w = JournalWriter(db)
    w.begin_ring(1)
    w.write(lifecycle(7, 1))
    w.commit()
    path = str(tmp_path / "j.sqlite")
    assert cli_main(["orders", "--db", path, "--id", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["order"]["status_name"] == "FILLED" and len(out["events"]) == 6
    assert cli_main(["orders", "--db", path, "--id", "7"]) == 0
    assert "FILLED" in capsys.readouterr().out
    assert cli_main(["orders", "--db", path, "--last", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["orders"][0]["client_id"] == 7
    assert cli_main(["orders", "--db", path]) == 0
    assert cli_main(["orders", "--db", path, "--id", "8"]) == 1
    assert cli_main(["orders", "--db", path, "--id", "not an id!"]) == 2
    assert cli_main(["orders", "--db", str(tmp_path / "none.sqlite")]) == 2
