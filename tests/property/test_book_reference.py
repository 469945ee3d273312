"""Property tests: the Cython book against a plain dict reference with the same bound,
and the parser against hostile input and exact decimal round trips."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from mmshm._native.binance_parse import K_DEPTH, K_TRADE, BinanceParser
from mmshm._native.book import ASK, BID, CROSSED, LOCKED, L2Book
from mmshm.instruments import InstrumentSpec


class BoundedRef:
    """dict per side; levels are applied one by one in venue order and after each one only
    the best ``cap`` levels are kept (the book's rule: a full side refuses a worse level
    and evicts its worst for a better one)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.sides = {BID: {}, ASK: {}}

    def set(self, side: int, px: int, qty: int) -> None:
        d = self.sides[side]
        if qty == 0:
            d.pop(px, None)
            return
        d[px] = qty
        if len(d) > self.cap:
            del d[min(d) if side == BID else max(d)]

    def bound(self) -> None:
        """Nothing left to do: set() keeps the bound after every level."""

    def levels(self, side: int) -> list[tuple[int, int]]:
        d = self.sides[side]
        return sorted(d.items(), reverse=(side == BID))


op = st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 60), st.integers(0, 5))
snap = st.lists(st.tuples(st.integers(1, 60), st.integers(0, 5)), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cap=st.integers(1, 12),
       steps=st.lists(st.one_of(st.tuples(st.just("diff"), st.lists(op, max_size=25)),
                                st.tuples(st.just("snap"), st.tuples(snap, snap))), max_size=25))
def test_book_matches_bounded_reference(cap, steps):
    book, ref = L2Book(cap), BoundedRef(cap)
    for kind, payload in steps:
        if kind == "snap":
            bids, asks = payload
            book.load_snapshot([p for p, _ in bids], [q for _, q in bids], [p for p, _ in asks], [q for _, q in asks])
            ref = BoundedRef(cap)
            for p, q in bids:
                ref.set(BID, p, q)
            for p, q in asks:
                ref.set(ASK, p, q)
            ref.bound()
        else:
            bp = [(p, q) for s, p, q in payload if s == BID]
            ap = [(p, q) for s, p, q in payload if s == ASK]
            flags = book.apply_diff([p for p, _ in bp], [q for _, q in bp], [p for p, _ in ap], [q for _, q in ap])
            for p, q in bp:
                ref.set(BID, p, q)
            for p, q in ap:
                ref.set(ASK, p, q)
            ref.bound()
            rb, ra = ref.levels(BID), ref.levels(ASK)
            crossed = bool(rb and ra and rb[0][0] > ra[0][0])
            locked = bool(rb and ra and rb[0][0] == ra[0][0])
            assert bool(flags & CROSSED) == crossed and bool(flags & LOCKED) == locked
        for side in (BID, ASK):
            px, qty = book.side_levels(side)
            assert list(zip(px.tolist(), qty.tolist())) == ref.levels(side)
        rb, ra = ref.levels(BID), ref.levels(ASK)
        assert book.best() == ((rb[0] if rb else (0, 0)) + (ra[0] if ra else (0, 0)))
        if rb and ra:
            assert book.spread_ticks() == ra[0][0] - rb[0][0]
            tb = sum(q for _, q in rb[:3])
            ta = sum(q for _, q in ra[:3])
            assert np.isclose(book.imbalance(3), (tb - ta) / (tb + ta))


@settings(max_examples=100, deadline=None)
@given(cap=st.integers(1, 8), ops=st.lists(op, max_size=60))
def test_single_levels_match_bounded_reference(cap, ops):
    book, ref = L2Book(cap), BoundedRef(cap)
    for side, p, q in ops:
        book.set_level(side, p, q)
        ref.set(side, p, q)
        ref.bound()
        for sd in (BID, ASK):
            px, qty = book.side_levels(sd)
            assert list(zip(px.tolist(), qty.tolist())) == ref.levels(sd)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parser_survives_random_bytes(data):
    p = BinanceParser(-1, 1, -3, 1, symbol="BTCUSDT", max_levels=4)
    k = p.parse(data)
    assert k >= 0 and int(p.messages.sum()) == 1 and int(p.drops.sum()) == (1 if k == 0 else 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["e", "E", "T", "U", "u", "pu", "b", "a", "B", "A", "p", "q", "t", "m", "s",
                                        "lastUpdateId", "bids", "asks", "data", "stream", "x"]),
                       json_values | st.sampled_from(["depthUpdate", "trade", "aggTrade", "bookTicker"]),
                       max_size=10))
def test_parser_survives_hostile_json(obj):
    p = BinanceParser(-1, 1, -3, 1, max_levels=4)
    assert p.parse(json.dumps(obj).encode()) >= 0


@settings(max_examples=300, deadline=None)
@given(tick_m=st.sampled_from([1, 2, 5, 25]), pexp=st.integers(-8, 2), lot_m=st.sampled_from([1, 5]),
       qexp=st.integers(-8, 2), ticks=st.integers(1, 10**12), lots=st.integers(1, 10**12),
       pad=st.integers(0, 25))
def test_decimal_strings_to_units_exactly(tick_m, pexp, lot_m, qexp, ticks, lots, pad):
    spec = InstrumentSpec(symbol="X", venue="binance-usdm", tick_mantissa=tick_m, price_exp=pexp,
                          lot_mantissa=lot_m, qty_exp=qexp)
    px, qty = spec.ticks_to_str(ticks), spec.lots_to_str(lots)
    if pad and "." in px:
        px += "0" * pad
    assert spec.price_to_ticks(px) == ticks and spec.qty_to_lots(qty) == lots
    p = BinanceParser(pexp, tick_m, qexp, lot_m)
    frame = json.dumps({"e": "trade", "E": 1, "T": 1, "t": 1, "p": px, "q": qty, "m": False}).encode()
    assert p.parse(frame) == K_TRADE, p.drop_reason
    assert (p.trade_px, p.trade_qty) == (ticks, lots)
    depth = json.dumps({"e": "depthUpdate", "E": 1, "U": 1, "u": 1, "pu": 0, "b": [[px, qty]], "a": []}).encode()
    assert p.parse(depth) == K_DEPTH and (p.bids_px[0], p.bids_qty[0]) == (ticks, lots)
