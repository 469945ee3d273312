"""Shared-memory rows for tests, built from plain tuples."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from mmshm.records import TARGET_ROW


def target_row(bids: Iterable[tuple[int, int]] = (), asks: Iterable[tuple[int, int]] = (), *, flags: int = 0,
               md_seq: int = 0, instrument: int = 0) -> np.void:
    """A TARGET_ROW with (price ticks, qty lots) levels per side, as given (not sorted)."""
    bids, asks = list(bids), list(asks)
    r = np.zeros(1, TARGET_ROW)[0]
    r["instrument"], r["md_seq"], r["flags"] = instrument, md_seq, flags
    r["n_bids"], r["n_asks"] = len(bids), len(asks)
    for i, (p, q) in enumerate(bids):
        r["bid_px"][i], r["bid_qty"][i] = p, q
    for i, (p, q) in enumerate(asks):
        r["ask_px"][i], r["ask_qty"][i] = p, q
    return r
