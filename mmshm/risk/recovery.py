"""A restarted risk process gets back the fills its predecessor already consumed.

Why: risk is a required reader of the ``orders`` ring and resumes from its stored
cursor, so events before that cursor were applied by the previous risk process and are
gone from this one's memory: without recovery a restart would reset the position to 0
and the PnL to nothing, and limits would be computed on a false, flat book.

Where from: the recorder's SQLite journal, which holds every event of the ring keyed by
``(ring_id, ring_seq)`` (``ring_id`` = the ring's ``created_ts``). We replay exactly the
fills of the current ring with ``ring_seq`` below our cursor; everything from the cursor
on still comes through the ring, so nothing is applied twice. The recorder may lag
behind the previous risk: we wait (bounded) until the journal holds every event below
the cursor, and report how many are still missing if it does not get there.

Scope: one ring = one executor session. A new ring (new session) starts from the
configured equity, as before; the executor's start-up RECONCILE position report (see
docs/CONTRACTS.md) then brings in the venue's position.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmshm.risk.engine import RiskEngine

log = logging.getLogger("mmshm.risk")


@dataclass
class Recovery:
    """What :func:`recover_fills` did."""
    ring_id: int
    cursor: int
    fills: int = 0            # fills applied
    duplicates: int = 0       # fills the engine already had (deduplicated)
    journaled_up_to: int = 0  # highest ring_seq of this ring in the journal
    missing: int = 0          # events below the cursor not in the journal (recorder behind)
    error: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def recover_fills(engine: RiskEngine, journal_path: str | Path, ring_id: int, cursor: int, *,
                  wait_s: float = 2.0, poll_s: float = 0.05, keepalive: Callable[[], object] | None = None) -> Recovery:
    """Apply the journal's fills of ring ``ring_id`` with ``ring_seq < cursor`` to ``engine``.

    Never raises for a missing or unreadable journal: the error is in the result (and
    logged), and risk carries on with what it has.
    """
    rep = Recovery(ring_id, cursor)
    if cursor <= 1:
        return rep                               # nothing was consumed before us
    path = Path(journal_path)
    if not path.exists():
        rep.error = f"no journal at {path}"
        rep.missing = cursor - 1
        log.error("risk: cannot recover fills consumed by the previous risk process", extra=rep.as_dict())
        return rep
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        rep.error = f"journal {path}: {exc}"
        log.error("risk: cannot open the journal", extra=rep.as_dict())
        return rep
    try:
        deadline = time.monotonic() + wait_s
        while True:
            row = conn.execute("SELECT MAX(ring_seq) FROM order_events WHERE ring_id = ?", (ring_id,)).fetchone()
            rep.journaled_up_to = int(row[0] or 0)
            if rep.journaled_up_to >= cursor - 1 or time.monotonic() >= deadline:
                break
            if keepalive is not None:
                keepalive()
            time.sleep(poll_s)
        rep.missing = max(0, cursor - 1 - rep.journaled_up_to)
        rows = conn.execute(
            "SELECT instrument, side, px, qty, fee, client_id, trade_id, venue_ts, local_ts FROM fills "
            "WHERE ring_id = ? AND ring_seq < ? ORDER BY ring_seq", (ring_id, cursor)).fetchall()
    except sqlite3.Error as exc:
        rep.error = f"journal {path}: {exc}"
        log.error("risk: journal query failed", extra=rep.as_dict())
        return rep
    finally:
        conn.close()
    for inst, side, px, qty, fee, client_id, trade_id, venue_ts, local_ts in rows:
        f = engine.on_fill(int(inst), int(side), int(px), int(qty), int(fee), int(client_id) & ((1 << 64) - 1),
                           int(trade_id or 0) & ((1 << 64) - 1), int(venue_ts or local_ts))
        if f is None:
            rep.duplicates += 1
        else:
            rep.fills += 1
    if rep.missing:
        log.error("risk: the journal lacks events the previous risk process consumed; position may be off "
                  "until the venue reconcile", extra=rep.as_dict())
    else:
        log.warning("risk: recovered fills from the journal", extra=rep.as_dict())
    return rep


__all__ = ["Recovery", "recover_fills"]
