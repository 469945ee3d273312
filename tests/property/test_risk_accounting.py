"""Hypothesis: under random fills (with duplicates), position is the sum of signed fills,
no fill is counted twice, and realized + unrealized equals the mark-to-market of the cash
flows exactly (the PnL accounting identity)."""
from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmshm.records import FEE_SCALE, Side
from mmshm.risk import InstrumentRisk, RiskEngine, RiskParams, SimClock

fill_st = st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 10**7), st.integers(1, 10**4),
                    st.integers(-10**6, 10**6), st.integers(0, 30))   # side, px, qty, fee, trade id


@pytest.mark.timeout(60)
@settings(max_examples=200, deadline=None)
@given(fills=st.lists(fill_st, max_size=60), value=st.fractions(Fraction(1, 1000), Fraction(10**6)),
       mark=st.integers(1, 10**7))
def test_pnl_identity_and_dedup(fills, value, mark) -> None:
    eng = RiskEngine(RiskParams(initial_equity=10**6 * FEE_SCALE),
                     [InstrumentRisk(0, "X", value, max_position=10**9)], SimClock())
    seen: set[int] = set()
    pos = 0
    cash = Fraction(0)
    fees = 0
    for side, px, qty, fee, tid in fills:
        applied = eng.on_fill(0, side, px, qty, fee, 1, tid)
        assert (applied is not None) == (tid not in seen)
        if tid in seen:
            continue
        seen.add(tid)
        sign = 1 if side == Side.BUY else -1
        pos += sign * qty
        cash -= sign * px * qty * value
        fees += fee
    p = eng.positions[0]
    assert p.position == pos
    assert p.fees == fees
    assert p.fills == len(seen) and eng.positions.duplicates == len(fills) - len(seen)
    assert p.cost >= 0 and (p.cost == 0) == (pos == 0)
    eng.on_book(0, mark, mark + 2)
    mtm = cash + pos * Fraction(2 * mark + 2, 2) * value
    assert p.realized + p.unrealized() == mtm
    assert eng.equity() == 10**6 * FEE_SCALE + mtm - fees
