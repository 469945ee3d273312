"""Writing batches of ORDER_EVENTs into the journal (one SQLite transaction per commit).

The recorder hands :meth:`JournalWriter.write` whole batches read from the ring (numpy
arrays of ``ORDER_EVENT``); columns are converted with numpy and inserted with
``executemany``, so the per-event cost is SQLite's, not Python's. Idempotence has two
layers: events at or below the ring's high-water sequence already in the journal are
skipped before any SQL (the normal re-read after a restart), and ``UNIQUE(ring_id,
ring_seq)`` / ``UNIQUE(client_id, trade_id)`` make any other duplicate a no-op.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import numpy as np

from mmshm.records import INSTRUMENT_ROW, ORDER_EVENT, OrderEventKind, OrderStatus

_KIND_NAMES = {int(k): k.name for k in OrderEventKind}
_STATUS_NAMES = {int(s): s.name for s in OrderStatus}
_U64_FIELDS = ("client_id", "venue_order_id", "trade_id", "md_seq")

_EVENT_COLUMNS = ("ring_id", "ring_seq", "kind", "kind_name", "client_id", "venue_order_id", "instrument",
                  "side", "status", "flags", "reason", "price", "qty", "filled_qty", "fill_px", "fill_qty",
                  "fee", "trade_id", "md_seq", "venue_ts", "local_ts", "sent_mono", "event_mono")
_INSERT_EVENT = (f"INSERT OR IGNORE INTO order_events ({', '.join(_EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})")

# Fold a batch's events of one order into its row. Events arrive in ring order (the
# executor's order), so the latest non-zero value wins; first-seen values (md_seq, sent
# time) are kept. The batch is pre-folded per order in Python by the same rules
# (_fold), so each order costs one upsert per batch, not one per event.
_UPSERT_ORDER = """
INSERT INTO orders (client_id, instrument, side, price, qty, status, status_name, filled_qty, md_seq,
                    venue_order_id, reject_reason, n_events, last_kind, first_ts, last_ts, sent_mono, ack_mono)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client_id) DO UPDATE SET
    instrument     = CASE WHEN orders.instrument = 0 THEN excluded.instrument ELSE orders.instrument END,
    side           = CASE WHEN orders.side = 0 THEN excluded.side ELSE orders.side END,
    price          = CASE WHEN excluded.price <> 0 THEN excluded.price ELSE orders.price END,
    qty            = CASE WHEN excluded.qty <> 0 THEN excluded.qty ELSE orders.qty END,
    status         = CASE WHEN excluded.status <> 0 THEN excluded.status ELSE orders.status END,
    status_name    = CASE WHEN excluded.status <> 0 THEN excluded.status_name ELSE orders.status_name END,
    filled_qty     = MAX(orders.filled_qty, excluded.filled_qty),
    md_seq         = CASE WHEN orders.md_seq = 0 THEN excluded.md_seq ELSE orders.md_seq END,
    venue_order_id = CASE WHEN excluded.venue_order_id <> 0 THEN excluded.venue_order_id ELSE orders.venue_order_id END,
    reject_reason  = CASE WHEN excluded.reject_reason <> 0 THEN excluded.reject_reason ELSE orders.reject_reason END,
    n_events       = orders.n_events + excluded.n_events,
    last_kind      = excluded.last_kind,
    first_ts       = MIN(orders.first_ts, excluded.first_ts),
    last_ts        = MAX(orders.last_ts, excluded.last_ts),
    sent_mono      = CASE WHEN orders.sent_mono = 0 THEN excluded.sent_mono ELSE orders.sent_mono END,
    ack_mono       = CASE WHEN orders.ack_mono = 0 THEN excluded.ack_mono ELSE orders.ack_mono END
"""

_INSERT_FILL = """
INSERT OR IGNORE INTO fills (client_id, trade_id, instrument, side, px, qty, fee, maker, venue_ts, local_ts,
                             ring_id, ring_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# Recomputed from the deduplicated fills table, so a fill reported twice never counts twice.
_REFOLD_FILLS = """
UPDATE orders SET n_fills = s.n, fill_qty_sum = s.q, fees = s.f,
       avg_fill_px = CASE WHEN s.q > 0 THEN s.notional / s.q END
FROM (SELECT client_id, COUNT(*) AS n, SUM(qty) AS q, SUM(fee) AS f, TOTAL(px * 1.0 * qty) AS notional
      FROM fills WHERE client_id IN (SELECT value FROM json_each(?)) GROUP BY client_id) AS s
WHERE orders.client_id = s.client_id
"""


@dataclass
class BatchStats:
    """What one :meth:`JournalWriter.write` did."""
    events: int = 0          # new events inserted into order_events
    duplicates: int = 0      # events already journaled (re-read after a restart)
    fills: int = 0           # new fills
    duplicate_fills: int = 0 # fills already known by (client_id, trade_id)
    bad: int = 0             # events journaled but not folded (unknown kind, client id 0)


class JournalWriter:
    """Appends ORDER_EVENT batches of one ring incarnation to an open journal connection.

    Call :meth:`begin_ring` once per attached ring, then :meth:`write` batches (an
    explicit transaction is opened on the first write) and :meth:`commit`.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.ring_id: int | None = None
        self.high_water = 0          # highest ring_seq of ring_id in the journal (incl. uncommitted)
        self._committed_high_water = 0
        self.in_transaction = False

    def begin_ring(self, ring_id: int) -> int:
        """Journal events of the ring created at ``ring_id`` (its header ``created_ts``).

        Returns the highest sequence of that ring already journaled (0 if none): events at
        or below it are skipped as duplicates.
        """
        self.rollback()
        self.ring_id = int(ring_id)
        row = self.conn.execute("SELECT MAX(ring_seq) FROM order_events WHERE ring_id = ?",
                                (self.ring_id,)).fetchone()
        self.high_water = self._committed_high_water = int(row[0] or 0)
        return self.high_water

    # ------------------------------------------------------------------ writing
    def write(self, events: np.ndarray) -> BatchStats:
        """Insert ``events`` (1-D ORDER_EVENT array, ring order) inside the open transaction."""
        if self.ring_id is None:
            raise RuntimeError("begin_ring() must be called before write()")
        if events.dtype != ORDER_EVENT:
            raise TypeError(f"events must be ORDER_EVENT records, got {events.dtype}")
        stats = BatchStats()
        if len(events) == 0:
            return stats
        seqs = events["seq"]
        fresh = seqs > np.uint64(self.high_water)
        stats.duplicates = int(len(events) - np.count_nonzero(fresh))
        if stats.duplicates:
            events = events[fresh]
            if len(events) == 0:
                return stats
        if not self.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.in_transaction = True
        cols = {name: events[name] for name in ORDER_EVENT.names if name != "_pad"}
        for name in _U64_FIELDS:
            cols[name] = cols[name].view("<i8")
        kinds = cols["kind"].tolist()
        kind_names = [_KIND_NAMES.get(k, f"KIND_{k}") for k in kinds]
        ring_ids = [self.ring_id] * len(events)
        seq_list = seqs[fresh].tolist() if stats.duplicates else seqs.tolist()
        lists = {name: col.tolist() for name, col in cols.items()}
        rows = zip(ring_ids, seq_list, kinds, kind_names, lists["client_id"], lists["venue_order_id"],
                   lists["instrument"], lists["side"], lists["status"], lists["flags"], lists["reason"],
                   lists["price"], lists["qty"], lists["filled_qty"], lists["fill_px"], lists["fill_qty"],
                   lists["fee"], lists["trade_id"], lists["md_seq"], lists["venue_ts"], lists["local_ts"],
                   lists["sent_mono"], lists["event_mono"])
        before = self.conn.total_changes
        self.conn.executemany(_INSERT_EVENT, rows)
        stats.events = self.conn.total_changes - before
        stats.duplicates += len(events) - stats.events

        known = np.isin(cols["kind"], np.fromiter(_KIND_NAMES, dtype=np.uint8)) & (cols["client_id"] != 0)
        # The executor's venue position reports (RECONCILE, client_id 0) belong to no order:
        # kept in order_events, neither folded into orders nor counted as bad.
        position_reports = (cols["kind"] == OrderEventKind.RECONCILE) & (cols["client_id"] == 0)
        stats.bad = int(len(events) - np.count_nonzero(known) - np.count_nonzero(position_reports))
        idx = np.flatnonzero(known).tolist()
        if idx:
            kind_arr = cols["kind"]
            sent = np.where(kind_arr == OrderEventKind.NEW_SENT,
                            np.where(cols["sent_mono"] != 0, cols["sent_mono"], cols["event_mono"]), 0).tolist()
            ack = np.where(kind_arr == OrderEventKind.ACK, cols["event_mono"], 0).tolist()
            reason = np.where(kind_arr == OrderEventKind.REJECT, cols["reason"], 0).tolist()
            ts = np.where(cols["local_ts"] != 0, cols["local_ts"], time.time_ns()).tolist()
            L = lists
            folded = _fold(idx, L, kind_names, reason, ts, sent, ack)
            self.conn.executemany(_UPSERT_ORDER, (
                (cid, *a[:5], _STATUS_NAMES.get(a[4], str(a[4])), *a[5:]) for cid, a in folded.items()))
            fill_idx = [i for i in idx if kinds[i] == OrderEventKind.FILL]
            if fill_idx:
                before = self.conn.total_changes
                self.conn.executemany(_INSERT_FILL, (
                    (L["client_id"][i], L["trade_id"][i] if L["trade_id"][i] != 0 else None, L["instrument"][i],
                     L["side"][i], L["fill_px"][i], L["fill_qty"][i], L["fee"][i], (L["flags"][i] >> 2) & 1,
                     L["venue_ts"][i], ts[i], self.ring_id, seq_list[i])
                    for i in fill_idx))
                stats.fills = self.conn.total_changes - before
                stats.duplicate_fills = len(fill_idx) - stats.fills
                if stats.fills:
                    clients = sorted({L["client_id"][i] for i in fill_idx})
                    self.conn.execute(_REFOLD_FILLS, (_json_ints(clients),))
        self.high_water = max(self.high_water, int(seq_list[-1]))
        return stats

    def commit(self) -> None:
        """COMMIT the open transaction (no-op without one)."""
        if self.in_transaction:
            self.conn.execute("COMMIT")
            self.in_transaction = False
        self._committed_high_water = self.high_water

    def rollback(self) -> None:
        """Abandon the open transaction (e.g. after a disk error); ``write`` may be retried."""
        if self.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # SQLite already rolled back (e.g. SQLITE_FULL)
            self.in_transaction = False
        self.high_water = self._committed_high_water

    # ------------------------------------------------------------------ instruments
    def set_instruments(self, rows: np.ndarray) -> int:
        """Copy tick/lot sizes of the used rows of an INSTRUMENT_ROW array (own transaction
        unless one is open). Returns how many instruments were written."""
        if rows.dtype != INSTRUMENT_ROW:
            raise TypeError(f"rows must be INSTRUMENT_ROW records, got {rows.dtype}")
        now = time.time_ns()
        params = []
        for i, r in enumerate(rows):
            symbol = bytes(r["symbol"]).split(b"\0", 1)[0].decode("ascii", "replace")
            if int(r["version"]) == 0 or not symbol or int(r["tick_mantissa"]) <= 0 or int(r["lot_mantissa"]) <= 0:
                continue
            tick = int(r["tick_mantissa"]) * 10.0 ** int(r["price_exp"])
            lot = int(r["lot_mantissa"]) * 10.0 ** int(r["qty_exp"])
            quote = bytes(r["quote_asset"]).split(b"\0", 1)[0].decode("ascii", "replace")
            params.append((int(r["instrument"]) if int(r["instrument"]) else i, symbol, quote, tick, lot, now))
        sql = ("INSERT INTO instruments (instrument, symbol, quote_asset, tick_size, lot_size, updated_ts) "
               "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instrument) DO UPDATE SET symbol = excluded.symbol, "
               "quote_asset = excluded.quote_asset, tick_size = excluded.tick_size, lot_size = excluded.lot_size, "
               "updated_ts = excluded.updated_ts")
        if self.in_transaction:
            self.conn.executemany(sql, params)
        else:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.executemany(sql, params)
        return len(params)


def _fold(idx: list[int], L: dict[str, list], kind_names: list[str], reason: list[int], ts: list[int],
          sent: list[int], ack: list[int]) -> dict[int, list]:
    """Per client id, the batch's events folded by the rules of ``_UPSERT_ORDER``.

    Value layout: instrument, side, price, qty, status, filled_qty, md_seq, venue_order_id,
    reject_reason, n_events, last_kind, first_ts, last_ts, sent_mono, ack_mono.
    """
    out: dict[int, list] = {}
    cids, insts, sides, prices, qtys = L["client_id"], L["instrument"], L["side"], L["price"], L["qty"]
    stats, filled, mds, vois = L["status"], L["filled_qty"], L["md_seq"], L["venue_order_id"]
    for i in idx:
        a = out.get(cids[i])
        if a is None:
            out[cids[i]] = [insts[i], sides[i], prices[i], qtys[i], stats[i], filled[i], mds[i], vois[i],
                            reason[i], 1, kind_names[i], ts[i], ts[i], sent[i], ack[i]]
            continue
        if a[0] == 0:
            a[0] = insts[i]
        if a[1] == 0:
            a[1] = sides[i]
        if prices[i]:
            a[2] = prices[i]
        if qtys[i]:
            a[3] = qtys[i]
        if stats[i]:
            a[4] = stats[i]
        if filled[i] > a[5]:
            a[5] = filled[i]
        if a[6] == 0:
            a[6] = mds[i]
        if vois[i]:
            a[7] = vois[i]
        if reason[i]:
            a[8] = reason[i]
        a[9] += 1
        a[10] = kind_names[i]
        if ts[i] < a[11]:
            a[11] = ts[i]
        if ts[i] > a[12]:
            a[12] = ts[i]
        if a[13] == 0:
            a[13] = sent[i]
        if a[14] == 0:
            a[14] = ack[i]
    return out


def _json_ints(values: list[int]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


__all__ = ["BatchStats", "JournalWriter"]
