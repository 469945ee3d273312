"""Hypothesis: over random books, positions, volatility paths and parameters, the native
cycle keeps best own bid < best own ask, never crosses the opposite best, stays within
position and order limits, and agrees exactly with the Python statement of the cycle."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmshm.records import BOOK_ROW, CONTROL_ROW, TARGET_ROW, MdStatus, Mode
from mmshm.strategy import TARGET_FLAG_PULL, InstrumentSpec, Model, QuoterParams, native_quoter, row_buffer
from mmshm.strategy.cycle import PyQuoter

S = 1_000_000_000

params_st = st.builds(
    QuoterParams,
    model=st.sampled_from(list(Model)),
    half_spread_bp=st.floats(0.01, 50),
    inventory_skew_bp=st.floats(0, 100),
    gamma=st.floats(1e-4, 5),
    horizon_s=st.floats(0.1, 600),
    arrival_a=st.floats(0.01, 100),
    arrival_k=st.floats(0.01, 10),
    min_half_spread_bp=st.floats(0.001, 1),
    max_half_spread_bp=st.floats(1, 1000),
    levels=st.integers(1, 5),
    level_spacing_bp=st.floats(0, 20),
    level_sizes=st.lists(st.integers(1, 50), min_size=5, max_size=5).map(tuple),
    imbalance_weight_bp=st.floats(0, 20),
    leadlag_weight=st.floats(0, 1),
    vol_prior_bp=st.floats(0.01, 200),
    min_qty_pad=st.floats(0, 1),
)


@st.composite
def market(draw):
    bb = draw(st.integers(1, 10**9))
    spread = draw(st.integers(1, max(1, bb // 100)))
    n = draw(st.integers(1, 20))
    bids = [max(1, bb - i) for i in range(n)]
    asks = [bb + spread + i for i in range(n)]
    bq = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    aq = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
    moves = draw(st.lists(st.integers(-50, 50), min_size=0, max_size=8))
    return bids, bq, asks, aq, moves


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=params_st, mkt=market(), position=st.integers(-1000, 1000),
       max_pos=st.integers(0, 1000), max_order=st.integers(0, 100),
       mode=st.sampled_from([Mode.NORMAL, Mode.NORMAL, Mode.NORMAL, Mode.WIDEN, Mode.REDUCE_ONLY,
                             Mode.HALT, Mode.FLATTEN]),
       min_qty=st.integers(1, 5),
       min_notional=st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 10**9)),
       qptl=st.floats(1e-3, 1e3))
def test_own_quotes_never_cross_and_respect_limits(params, mkt, position, max_pos, max_order, mode,
                                                   min_qty, min_notional, qptl) -> None:
    spec = InstrumentSpec(min_qty=min_qty, min_notional=min_notional, quote_per_tick_lot=qptl)
    nq, pq = native_quoter(params, spec), PyQuoter(params, spec)
    book, book_b = row_buffer(BOOK_ROW)
    cg, cg_b = row_buffer(CONTROL_ROW)
    ci, ci_b = row_buffer(CONTROL_ROW)
    out, out_b = row_buffer(TARGET_ROW)
    ref, _ = row_buffer(TARGET_ROW)
    bids, bq, asks, aq, moves = mkt
    ci[0]["mode"] = mode
    ci[0]["max_position"] = max_pos
    ci[0]["max_order_qty"] = max_order
    b = book[0]
    b["status"] = MdStatus.LIVE
    b["n_bids"] = b["n_asks"] = len(bids)
    t = 10 * S
    for step, mv in enumerate([0] + moves):     # a short price path feeds the volatility
        b["bid_px"][: len(bids)] = [max(1, x + mv) for x in bids]
        b["ask_px"][: len(asks)] = [max(2, x + mv) for x in asks]
        b["bid_qty"][: len(bq)] = bq
        b["ask_qty"][: len(aq)] = aq
        b["publish_mono"] = t
        t += S // 4
        r = nq.cycle(book_b, cg_b, ci_b, position, t, out_b)
        assert r == pq.cycle(b, cg[0], ci[0], position, t, ref[0])
        assert out.tobytes() == ref.tobytes()
        o = out[0]
        nb, na = int(o["n_bids"]), int(o["n_asks"])
        if r:
            assert o["flags"] & TARGET_FLAG_PULL and nb == 0 and na == 0
            continue
        best_bid, best_ask = int(b["bid_px"][0]), int(b["ask_px"][0])
        bpx, apx = [int(x) for x in o["bid_px"][:nb]], [int(x) for x in o["ask_px"][:na]]
        if nb and na:
            assert bpx[0] < apx[0]
        assert all(x <= best_ask - 1 and x >= 1 for x in bpx)
        assert all(x >= best_bid + 1 for x in apx)
        assert all(bpx[i] > bpx[i + 1] for i in range(nb - 1))
        assert all(apx[i] < apx[i + 1] for i in range(na - 1))
        assert mode < Mode.HALT
        bsum, asum = int(o["bid_qty"][:nb].sum()), int(o["ask_qty"][:na].sum())
        assert position + bsum <= max(max_pos, position) and position - asum >= min(-max_pos, position)
        assert all(0 < q <= max_order for q in o["bid_qty"][:nb]) and all(0 < q <= max_order for q in o["ask_qty"][:na])
        if mode == Mode.REDUCE_ONLY:
            assert (nb == 0 or position < 0) and (na == 0 or position > 0)
            assert bsum <= max(0, -position) and asum <= max(0, position)
