"""Read-side queries: "what happened to order X", the last N orders, journal totals.

Plain functions over a connection (``open_journal(path, readonly=True)``) returning
dicts, so `mmshm orders` can print them as a table or JSON and tests can compare them.
Decimal prices appear when the journal knows the instrument's tick/lot sizes.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from mmshm.journal.schema import u64_from_sql, u64_to_sql

_U64_KEYS = ("client_id", "venue_order_id", "trade_id", "md_seq")


def _rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        d = dict(zip(names, row))
        for k in _U64_KEYS:
            if k in d and d[k] is not None:
                d[k] = u64_from_sql(d[k])
        out.append(d)
    return out


def _instrument(conn: sqlite3.Connection, index: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT symbol, quote_asset, tick_size, lot_size FROM instruments WHERE instrument = ?",
                       (index,)).fetchone()
    if row is None:
        return None
    return {"symbol": row[0], "quote_asset": row[1], "tick_size": row[2], "lot_size": row[3]}


def order_report(conn: sqlite3.Connection, client_id: int) -> dict[str, Any] | None:
    """The order row of ``client_id``, its events in ring (time) order, its fills and latencies.

    Latencies (µs, monotonic clock): ``sent_to_ack_us`` (new-order request written →
    ack published), ``sent_to_first_fill_us``, and per event ``since_sent_us``. None when
    the order is unknown.
    """
    key = u64_to_sql(client_id)
    orders = _rows(conn.execute("SELECT * FROM orders WHERE client_id = ?", (key,)))
    if not orders:
        return None
    order = orders[0]
    events = _rows(conn.execute(
        "SELECT ring_id, ring_seq, kind_name AS kind, status, reason, price, qty, filled_qty, fill_px, fill_qty, "
        "fee, trade_id, venue_order_id, venue_ts, local_ts, sent_mono, event_mono "
        "FROM order_events WHERE client_id = ? ORDER BY ring_id, ring_seq", (key,)))
    fills = _rows(conn.execute(
        "SELECT trade_id, px, qty, fee, maker, venue_ts, local_ts, ring_seq FROM fills WHERE client_id = ? "
        "ORDER BY ring_id, ring_seq", (key,)))
    sent = int(order["sent_mono"] or 0)
    for e in events:
        e["since_sent_us"] = round((e["event_mono"] - sent) / 1e3, 3) if sent and e["event_mono"] else None
    first_fill = next((e["event_mono"] for e in events if e["kind"] == "FILL" and e["event_mono"]), 0)
    latencies = {
        "sent_to_ack_us": round((order["ack_mono"] - sent) / 1e3, 3) if sent and order["ack_mono"] else None,
        "sent_to_first_fill_us": round((first_fill - sent) / 1e3, 3) if sent and first_fill else None,
    }
    inst = _instrument(conn, int(order["instrument"]))
    if inst is not None:
        tick, lot = inst["tick_size"], inst["lot_size"]
        order["decimal"] = {
            "symbol": inst["symbol"], "price": _dec(order["price"] * tick), "qty": _dec(order["qty"] * lot),
            "filled_qty": _dec(order["filled_qty"] * lot),
            "avg_fill_px": _dec(order["avg_fill_px"] * tick) if order["avg_fill_px"] is not None else None,
            "fees": _dec(order["fees"] / 1e8), "quote_asset": inst["quote_asset"],
        }
        for f in fills:
            f["px_dec"] = _dec(f["px"] * tick)
            f["qty_dec"] = _dec(f["qty"] * lot)
            f["fee_dec"] = _dec(f["fee"] / 1e8)
    return {"order": order, "events": events, "fills": fills, "latencies": latencies}


def last_orders(conn: sqlite3.Connection, n: int = 20) -> list[dict[str, Any]]:
    """The ``n`` most recently active orders, newest first, with sent→ack latency in µs."""
    if n <= 0:
        return []
    rows = _rows(conn.execute(
        "SELECT o.client_id, o.instrument, i.symbol, o.side, o.price, o.qty, o.status_name AS status, "
        "o.filled_qty, o.avg_fill_px, o.fees, o.n_fills, o.n_events, o.last_kind, o.first_ts, o.last_ts, "
        "CASE WHEN o.ack_mono > 0 AND o.sent_mono > 0 THEN (o.ack_mono - o.sent_mono) / 1e3 END AS ack_us, "
        "i.tick_size, i.lot_size "
        "FROM orders o LEFT JOIN instruments i ON i.instrument = o.instrument "
        "ORDER BY o.last_ts DESC, o.client_id DESC LIMIT ?", (int(n),)))
    return rows


def totals(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts over the whole journal (events, orders, fills, fees; ack latency percentiles, µs)."""
    ev = conn.execute("SELECT COUNT(*), MAX(ring_seq) FROM order_events").fetchone()
    od = conn.execute("SELECT COUNT(*) FROM orders").fetchone()
    fl = conn.execute("SELECT COUNT(*), COALESCE(SUM(fee), 0) FROM fills").fetchone()
    lat = [r[0] for r in conn.execute(
        "SELECT (ack_mono - sent_mono) FROM orders WHERE ack_mono > 0 AND sent_mono > 0 "
        "ORDER BY 1").fetchall()]
    def pct(p: float) -> float | None:
        if not lat:
            return None
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1e3, 3)
    return {"events": ev[0], "max_ring_seq": ev[1], "orders": od[0], "fills": fl[0], "fees": fl[1],
            "ack_p50_us": pct(0.5), "ack_p99_us": pct(0.99)}


def _dec(x: float) -> str:
    """A float from tick/lot arithmetic printed without binary noise (up to 10 places)."""
    s = f"{x:.10f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


__all__ = ["last_orders", "order_report", "totals"]
