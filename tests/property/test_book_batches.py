"""Property test of the book's batched diff path (a gap buffer per side) against a plain
sequential reference, counters included, on long runs of venue-shaped diffs: levels sorted
best to worst (as Binance sends them) or in any order, duplicates, removals of absent
levels, and full sides that refuse and evict many times (so the storage window slides and
compacts)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mmshm._native.book import ASK, BID, L2Book


class CountingRef:
    """Levels set one by one with the bound rule, counting what the book counts."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.sides: dict[int, dict[int, int]] = {BID: {}, ASK: {}}
        self.dropped = 0
        self.missing = 0

    def set(self, side: int, px: int, qty: int) -> None:
        d = self.sides[side]
        if px in d:
            if qty:
                d[px] = qty
            else:
                del d[px]
            return
        if qty == 0:
            self.missing += 1
            return
        if len(d) == self.cap:
            self.dropped += 1
            worst = min(d) if side == BID else max(d)
            if (px < worst) if side == BID else (px > worst):
                return
            del d[worst]
        d[px] = qty

    def levels(self, side: int) -> list[tuple[int, int]]:
        return sorted(self.sides[side].items(), reverse=(side == BID))


level = st.tuples(st.integers(1, 80), st.sampled_from([0, 0, 1, 2, 3, 7]))
batch = st.tuples(st.lists(level, max_size=40), st.lists(level, max_size=40), st.booleans(), st.booleans())


@pytest.mark.timeout(60)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cap=st.integers(1, 20), batches=st.lists(batch, min_size=1, max_size=40))
def test_batched_diffs_match_sequential_reference(cap, batches):
    book, ref = L2Book(cap), CountingRef(cap)
    for bids, asks, sort_bids, sort_asks in batches:
        if sort_bids:                                   # best (highest bid) first
            bids = sorted(bids, key=lambda lv: -lv[0])
        if sort_asks:                                   # best (lowest ask) first
            asks = sorted(asks, key=lambda lv: lv[0])
        book.apply_diff(np.array([p for p, _ in bids], np.int64), np.array([q for _, q in bids], np.int64),
                        np.array([p for p, _ in asks], np.int64), np.array([q for _, q in asks], np.int64))
        for p, q in bids:
            ref.set(BID, p, q)
        for p, q in asks:
            ref.set(ASK, p, q)
        for side in (BID, ASK):
            px, qty = book.side_levels(side)
            assert list(zip(px.tolist(), qty.tolist())) == ref.levels(side)
        assert (book.levels_dropped, book.missing_removes) == (ref.dropped, ref.missing)


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=None)
@given(cap=st.integers(1, 10), ops=st.lists(st.tuples(st.sampled_from([BID, ASK]), level), max_size=80))
def test_single_levels_return_codes(cap, ops):
    book, ref = L2Book(cap), CountingRef(cap)
    for side, (p, q) in ops:
        before = (ref.dropped, ref.missing)
        ref.set(side, p, q)
        expected = 1 if ref.dropped != before[0] else (2 if ref.missing != before[1] else 0)
        assert book.set_level(side, p, q) == expected
    for side in (BID, ASK):
        px, qty = book.side_levels(side)
        assert list(zip(px.tolist(), qty.tolist())) == ref.levels(side)
