"""The journal's SQLite schema, and opening a journal the way every user must.

Tables a person can query with plain ``sqlite3``:

- ``order_events``: every ORDER_EVENT read from the ``orders`` ring, once. ``(ring_id,
  ring_seq)`` is unique: ``ring_id`` is the ring's creation time (realtime ns, kept across
  writer takeovers), so a re-read after a recorder restart never inserts twice and a
  fresh ring (new instance run, sequences from 1 again) never collides with an old one.
- ``orders``: one row per client order id, folded from its events (status, cumulative
  fill, fees, first/last seen, sent and ack times).
- ``fills``: unique on ``(client_id, trade_id)``: a fill reported twice (user stream and
  reconciliation) is stored and counted once.
- ``instruments``: tick/lot sizes copied from the ``instruments`` segment when present,
  so the ``*_dec`` views show decimal prices, quantities and fees.

Prices are int ticks, quantities int lots, fees int ``FEE_SCALE`` (1e-8) quote units,
times int ns, exactly as in shared memory. uint64 ids are stored as SQLite's signed
int64 (values >= 2**63 wrap negative; :func:`u64_from_sql` undoes it).
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


def u64_to_sql(value: int) -> int:
    """A uint64 as the signed int64 SQLite stores."""
    value = int(value)
    return value - _U64 if value > _I64_MAX else value


def u64_from_sql(value: int | None) -> int | None:
    """Undo :func:`u64_to_sql`."""
    if value is None:
        return None
    return value + _U64 if value < 0 else value


DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS order_events (
    id              INTEGER PRIMARY KEY,
    ring_id         INTEGER NOT NULL,   -- created_ts of the orders ring
    ring_seq        INTEGER NOT NULL,   -- ring sequence of the event
    kind            INTEGER NOT NULL,   -- OrderEventKind
    kind_name       TEXT    NOT NULL,
    client_id       INTEGER NOT NULL,
    venue_order_id  INTEGER NOT NULL,
    instrument      INTEGER NOT NULL,
    side            INTEGER NOT NULL,   -- 1 buy, 2 sell
    status          INTEGER NOT NULL,   -- OrderStatus after the event
    flags           INTEGER NOT NULL,   -- bit0 post-only, bit1 reduce-only, bit2 maker
    reason          INTEGER NOT NULL,   -- venue error code (rejects)
    price           INTEGER NOT NULL,   -- ticks
    qty             INTEGER NOT NULL,   -- lots
    filled_qty      INTEGER NOT NULL,   -- cumulative lots
    fill_px         INTEGER NOT NULL,
    fill_qty        INTEGER NOT NULL,
    fee             INTEGER NOT NULL,   -- FEE_SCALE units
    trade_id        INTEGER NOT NULL,
    md_seq          INTEGER NOT NULL,
    venue_ts        INTEGER NOT NULL,   -- realtime ns
    local_ts        INTEGER NOT NULL,   -- realtime ns
    sent_mono       INTEGER NOT NULL,   -- monotonic ns
    event_mono      INTEGER NOT NULL,   -- monotonic ns
    UNIQUE (ring_id, ring_seq)
);
CREATE INDEX IF NOT EXISTS order_events_client ON order_events (client_id, ring_id, ring_seq);

CREATE TABLE IF NOT EXISTS orders (
    client_id       INTEGER PRIMARY KEY,
    instrument      INTEGER NOT NULL,
    side            INTEGER NOT NULL,
    price           INTEGER NOT NULL,   -- ticks (latest accepted/sent)
    qty             INTEGER NOT NULL,   -- lots
    status          INTEGER NOT NULL,
    status_name     TEXT    NOT NULL,
    filled_qty      INTEGER NOT NULL,   -- cumulative lots (venue's figure)
    n_fills         INTEGER NOT NULL DEFAULT 0,
    fill_qty_sum    INTEGER NOT NULL DEFAULT 0,  -- lots in the (deduplicated) fills table
    avg_fill_px     REAL,               -- ticks, volume-weighted over fills
    fees            INTEGER NOT NULL DEFAULT 0,  -- FEE_SCALE units, sum over fills
    md_seq          INTEGER NOT NULL,
    venue_order_id  INTEGER NOT NULL,
    reject_reason   INTEGER NOT NULL,
    n_events        INTEGER NOT NULL,
    last_kind       TEXT    NOT NULL,
    first_ts        INTEGER NOT NULL,   -- realtime ns, first event seen
    last_ts         INTEGER NOT NULL,   -- realtime ns, last event seen
    sent_mono       INTEGER NOT NULL,   -- monotonic ns the new-order request went out
    ack_mono        INTEGER NOT NULL    -- monotonic ns the ack was published (0 = none)
);
CREATE INDEX IF NOT EXISTS orders_last_ts ON orders (last_ts);

CREATE TABLE IF NOT EXISTS fills (
    id          INTEGER PRIMARY KEY,
    client_id   INTEGER NOT NULL,
    trade_id    INTEGER,                -- NULL when the venue gave none (then never deduplicated)
    instrument  INTEGER NOT NULL,
    side        INTEGER NOT NULL,
    px          INTEGER NOT NULL,       -- ticks
    qty         INTEGER NOT NULL,       -- lots
    fee         INTEGER NOT NULL,       -- FEE_SCALE units
    maker       INTEGER NOT NULL,
    venue_ts    INTEGER NOT NULL,
    local_ts    INTEGER NOT NULL,
    ring_id     INTEGER NOT NULL,
    ring_seq    INTEGER NOT NULL,
    UNIQUE (client_id, trade_id)
);
CREATE INDEX IF NOT EXISTS fills_local_ts ON fills (local_ts);

CREATE TABLE IF NOT EXISTS instruments (
    instrument   INTEGER PRIMARY KEY,
    symbol       TEXT NOT NULL,
    quote_asset  TEXT NOT NULL,
    tick_size    REAL NOT NULL,
    lot_size     REAL NOT NULL,
    updated_ts   INTEGER NOT NULL
);

CREATE VIEW IF NOT EXISTS orders_dec AS
SELECT o.client_id, i.symbol,
       CASE o.side WHEN 1 THEN 'BUY' WHEN 2 THEN 'SELL' ELSE '?' END AS side,
       o.price * i.tick_size AS price, o.qty * i.lot_size AS qty, o.status_name AS status,
       o.filled_qty * i.lot_size AS filled_qty, o.avg_fill_px * i.tick_size AS avg_fill_px,
       o.fees / 1e8 AS fees, o.n_fills, o.md_seq, o.venue_order_id,
       strftime('%Y-%m-%d %H:%M:%f', o.first_ts / 1e9, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%d %H:%M:%f', o.last_ts / 1e9, 'unixepoch') AS last_seen,
       CASE WHEN o.ack_mono > 0 AND o.sent_mono > 0 THEN (o.ack_mono - o.sent_mono) / 1e3 END AS ack_us
FROM orders o LEFT JOIN instruments i ON i.instrument = o.instrument;

CREATE VIEW IF NOT EXISTS fills_dec AS
SELECT f.client_id, f.trade_id, i.symbol,
       CASE f.side WHEN 1 THEN 'BUY' WHEN 2 THEN 'SELL' ELSE '?' END AS side,
       f.px * i.tick_size AS px, f.qty * i.lot_size AS qty, f.fee / 1e8 AS fee, f.maker,
       strftime('%Y-%m-%d %H:%M:%f', f.local_ts / 1e9, 'unixepoch') AS seen
FROM fills f LEFT JOIN instruments i ON i.instrument = f.instrument;

CREATE VIEW IF NOT EXISTS order_events_dec AS
SELECT e.ring_seq, e.client_id, e.kind_name, i.symbol,
       CASE e.side WHEN 1 THEN 'BUY' WHEN 2 THEN 'SELL' ELSE '?' END AS side,
       e.status, e.reason, e.price * i.tick_size AS price, e.qty * i.lot_size AS qty,
       e.filled_qty * i.lot_size AS filled_qty, e.fill_px * i.tick_size AS fill_px,
       e.fill_qty * i.lot_size AS fill_qty, e.fee / 1e8 AS fee, e.trade_id,
       strftime('%Y-%m-%d %H:%M:%f', e.local_ts / 1e9, 'unixepoch') AS seen
FROM order_events e LEFT JOIN instruments i ON i.instrument = e.instrument;
"""


class JournalError(Exception):
    """The journal cannot be opened or has an incompatible schema."""


def open_journal(path: str | os.PathLike, *, readonly: bool = False, timeout_s: float = 5.0) -> sqlite3.Connection:
    """Open (creating if needed) the journal at ``path`` in WAL mode with synchronous=NORMAL.

    WAL lets ``mmshm orders`` and ``sqlite3`` read while the recorder writes; NORMAL in
    WAL mode never corrupts the database on a crash and only risks the last
    transactions on a power loss, which the ring re-delivers on restart anyway.
    ``readonly`` opens an existing journal for queries (JournalError if absent).
    """
    path = Path(path)
    if readonly:
        if not path.exists():
            raise JournalError(f"no journal at {path}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None)
        _check_version(conn, path)
        return conn
    path.parent.mkdir(parents=True, exist_ok=True)
    # Explicit transactions (BEGIN/COMMIT by the writer): isolation_level=None.
    conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"{path}: could not switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.executescript(DDL)
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise JournalError(f"{path}: schema version {row[0]}, this mmshm writes {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path} is not an mmshm journal: {exc}") from None
    if row is None or int(row[0]) != SCHEMA_VERSION:
        conn.close()
        raise JournalError(f"{path}: schema version {row and row[0]}, this mmshm reads {SCHEMA_VERSION}")
