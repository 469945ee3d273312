"""The L2 order book (Cython: ``mmshm._native.book``) and helpers to read book rows.

``L2Book`` keeps one instrument's book in int64 ticks/lots with a bounded number of
levels per side; see ``cython_src/book.pyx`` for the layout and the rules. The feed fills
one ``BOOK_ROW`` per instrument (top ``BOOK_DEPTH`` levels) in the ``book`` seqlock
table; :func:`row_levels` and :func:`row_to_dict` turn such a row back into levels and
exact decimal strings for tools (``mmshm book``) and tests.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mmshm._native.book import ASK, BID, CROSSED, LOCKED, TOP_CHANGED, L2Book
from mmshm.instruments import InstrumentSpec
from mmshm.records import MdStatus


def row_levels(row: np.void) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(bids, asks) of a BOOK_ROW as lists of (ticks, lots), best first."""
    nb, na = int(row["n_bids"]), int(row["n_asks"])
    bids = list(zip(row["bid_px"][:nb].tolist(), row["bid_qty"][:nb].tolist()))
    asks = list(zip(row["ask_px"][:na].tolist(), row["ask_qty"][:na].tolist()))
    return bids, asks


def row_to_dict(row: np.void, spec: InstrumentSpec) -> dict[str, Any]:
    """A BOOK_ROW as JSON-ready data with exact decimal strings (prices/qty per the spec)."""
    bids, asks = row_levels(row)
    status = int(row["status"])
    return {
        "symbol": spec.symbol,
        "status": MdStatus(status).name if status in MdStatus._value2member_map_ else status,
        "update_id": int(row["update_id"]),
        "md_seq": int(row["md_seq"]),
        "venue_ts": int(row["venue_ts"]),
        "local_ts": int(row["local_ts"]),
        "bids": [[spec.ticks_to_str(p), spec.lots_to_str(q)] for p, q in bids],
        "asks": [[spec.ticks_to_str(p), spec.lots_to_str(q)] for p, q in asks],
    }


__all__ = ["ASK", "BID", "CROSSED", "LOCKED", "TOP_CHANGED", "L2Book", "row_levels", "row_to_dict"]
