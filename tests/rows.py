"""Shared-memory rows for tests, built from plain tuples."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from mmshm.records import BOOK_ROW, TARGET_ROW


def target_row(bids: Iterable[tuple[int, int]] = (), asks: Iterable[tuple[int, int]] = (), *, flags: int = 0,
               md_seq: int = 0, instrument: int = 0) -> np.void:
    """A TARGET_ROW with (price ticks, qty lots) levels per side, as given (not sorted)."""
    r = _with_levels(TARGET_ROW, bids, asks)
    r["instrument"], r["md_seq"], r["flags"] = instrument, md_seq, flags
    return r


def book_row(bids: Iterable[tuple[int, int]] = (), asks: Iterable[tuple[int, int]] = ()) -> np.void:
    """A BOOK_ROW with (price ticks, qty lots) levels per side, as given (not sorted)."""
    return _with_levels(BOOK_ROW, bids, asks)


def _with_levels(dtype: np.dtype, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> np.void:
    """A zeroed row of ``dtype`` (TARGET_ROW, BOOK_ROW: the same level fields) with the levels."""
    bids, asks = list(bids), list(asks)
    r = np.zeros(1, dtype)[0]
    r["n_bids"], r["n_asks"] = len(bids), len(asks)
    for i, (p, q) in enumerate(bids):
        r["bid_px"][i], r["bid_qty"][i] = p, q
    for i, (p, q) in enumerate(asks):
        r["ask_px"][i], r["ask_qty"][i] = p, q
    return r
