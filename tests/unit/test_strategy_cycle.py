"""The native quote cycle: pulls, control modes, limits, rounding, output row; equal to PyQuoter."""
from __future__ import annotations

import numpy as np
import pytest

from mmshm.records import BOOK_ROW, CONTROL_ROW, TARGET_ROW, MdStatus, Mode, Side
from mmshm.strategy import (CONTROL_FLAG_PAUSED, CONTROL_FLAG_PULL, TARGET_FLAG_PULL,
                            TARGET_FLAG_REDUCE_ONLY, TARGET_FLAG_WIDENED, InstrumentSpec, Model,
                            PullReason, QuoterParams, native_quoter, row_buffer)
from mmshm.strategy.cycle import PyQuoter

S = 1_000_000_000
T0 = 100 * S


class Rig:
    """A book, two control rows and two target rows wired to a native and a Python quoter."""

    def __init__(self, params: QuoterParams | None = None, spec: InstrumentSpec | None = None) -> None:
        self.params = params or QuoterParams()
        self.spec = spec or InstrumentSpec(min_qty=1)
        self.nq = native_quoter(self.params, self.spec, 3)
        self.pq = PyQuoter(self.params, self.spec, 3)
        self.book, self.book_b = row_buffer(BOOK_ROW)
        self.cg, self.cg_b = row_buffer(CONTROL_ROW)
        self.ci, self.ci_b = row_buffer(CONTROL_ROW)
        self.out, self.out_b = row_buffer(TARGET_ROW)
        self.ref, _ = row_buffer(TARGET_ROW)
        self.set_book([100_000, 99_999, 99_998], [5, 5, 5], [100_010, 100_011, 100_012], [5, 5, 5])
        self.ci[0]["max_position"] = 20
        self.ci[0]["max_order_qty"] = 5
        self.ci[0]["limit_scale_bp"] = 10_000

    def set_book(self, bpx, bqty, apx, aqty, status=MdStatus.LIVE, md_seq=42, pub=T0) -> None:
        b = self.book[0]
        for f in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
            b[f][:] = 0
        b["status"] = status
        b["n_bids"], b["n_asks"] = len(bpx), len(apx)
        b["bid_px"][: len(bpx)] = bpx
        b["bid_qty"][: len(bqty)] = bqty
        b["ask_px"][: len(apx)] = apx
        b["ask_qty"][: len(aqty)] = aqty
        b["md_seq"] = md_seq
        b["publish_mono"] = pub

    def cycle(self, position: int = 0, now: int = T0 + 1000) -> int:
        r = self.nq.cycle(self.book_b, self.cg_b, self.ci_b, position, now, self.out_b)
        r2 = self.pq.cycle(self.book[0], self.cg[0], self.ci[0], position, now, self.ref[0])
        assert r == r2
        assert self.out.tobytes() == self.ref.tobytes(), (self.out, self.ref)
        return r

    @property
    def row(self):
        return self.out[0]


def test_quotes_a_ladder_with_md_seq_and_stamps() -> None:
    rig = Rig()
    assert rig.cycle() == PullReason.NONE
    r = rig.row
    assert r["instrument"] == 3 and r["md_seq"] == 42 and r["md_publish_mono"] == T0
    assert r["quote_mono"] == T0 + 1000 and r["flags"] == 0
    assert r["n_bids"] == 3 and r["n_asks"] == 3
    bids, asks = list(r["bid_px"][:3]), list(r["ask_px"][:3])
    assert bids == sorted(bids, reverse=True) and len(set(bids)) == 3
    assert asks == sorted(asks) and len(set(asks)) == 3
    assert bids[0] < asks[0]
    assert bids[0] <= 100_009 and asks[0] >= 100_001
    assert list(r["bid_qty"][:3]) == [1, 1, 2]


@pytest.mark.parametrize("setup,reason", [
    (lambda rig: rig.set_book([100], [1], [101], [1], status=MdStatus.STALE), PullReason.BOOK_NOT_LIVE),
    (lambda rig: rig.set_book([100], [1], [], []), PullReason.BOOK_EMPTY),
    (lambda rig: rig.set_book([101], [1], [101], [1]), PullReason.BOOK_CROSSED),
    (lambda rig: rig.set_book([100], [1], [101], [1], pub=T0 - 6 * S), PullReason.BOOK_OLD),
    (lambda rig: rig.cg[0].__setitem__("mode", Mode.HALT), PullReason.MODE_HALT),
    (lambda rig: rig.ci[0].__setitem__("mode", Mode.FLATTEN), PullReason.MODE_HALT),
    (lambda rig: rig.cg[0].__setitem__("flags", CONTROL_FLAG_PAUSED), PullReason.PAUSED),
    (lambda rig: rig.ci[0].__setitem__("flags", CONTROL_FLAG_PULL), PullReason.RISK_PULL),
    (lambda rig: rig.ci[0].__setitem__("max_position", 0), PullReason.NO_SIDE),
])
def test_pull_conditions(setup, reason) -> None:
    rig = Rig()
    rig.cycle()
    setup(rig)
    assert rig.cycle() == reason
    r = rig.row
    assert r["flags"] & TARGET_FLAG_PULL and r["n_bids"] == 0 and r["n_asks"] == 0
    assert not r["bid_px"].any() and not r["ask_qty"].any()
    assert r["md_seq"] == 42


def test_reduce_only_quotes_only_the_reducing_side_up_to_the_position() -> None:
    rig = Rig()
    rig.ci[0]["mode"] = Mode.REDUCE_ONLY
    assert rig.cycle(position=3) == 0
    r = rig.row
    assert r["n_bids"] == 0 and r["n_asks"] >= 1 and r["flags"] & TARGET_FLAG_REDUCE_ONLY
    assert r["ask_qty"].sum() <= 3
    assert rig.cycle(position=-2) == 0 and rig.row["n_asks"] == 0 and rig.row["bid_qty"].sum() <= 2
    assert rig.cycle(position=0) == PullReason.NO_SIDE


def test_position_room_and_order_limit() -> None:
    rig = Rig(QuoterParams(level_sizes=(4, 4, 4)))
    rig.ci[0]["max_position"] = 10
    rig.ci[0]["max_order_qty"] = 3
    assert rig.cycle(position=6) == 0
    r = rig.row
    assert r["bid_qty"].sum() <= 4 and all(q <= 3 for q in r["bid_qty"])
    assert r["ask_qty"].sum() <= 16


def test_widen_mode_uses_control_widen_bp() -> None:
    rig = Rig()
    rig.cycle()
    base = rig.row["ask_px"][0] - rig.row["bid_px"][0]
    rig.cg[0]["mode"] = Mode.WIDEN
    rig.cg[0]["widen_bp"] = 10
    rig.cycle()
    assert rig.row["flags"] & TARGET_FLAG_WIDENED
    assert rig.row["ask_px"][0] - rig.row["bid_px"][0] >= base + 18


def test_min_notional_pads_small_levels() -> None:
    # one tick·lot = 10 units; 100_000 ticks -> 1e6 per lot; min notional 2.5e6 -> 3 lots, padded to 4
    rig = Rig(QuoterParams(level_sizes=(1, 1, 1), min_qty_pad=0.1),
              InstrumentSpec(min_qty=1, min_notional=2_500_000, quote_per_tick_lot=10.0))
    rig.ci[0]["max_position"] = 100
    rig.ci[0]["max_order_qty"] = 10
    assert rig.cycle() == 0
    assert list(rig.row["bid_qty"][:3]) == [4, 4, 4]


def test_long_inventory_skews_quotes_down() -> None:
    rig = Rig(QuoterParams(model=Model.AS, gamma=0.05))
    rig.cycle(position=0)
    flat_bid, flat_ask = rig.row["bid_px"][0], rig.row["ask_px"][0]
    rig.cycle(position=10)
    assert rig.row["bid_px"][0] < flat_bid and rig.row["ask_px"][0] <= flat_ask


@pytest.mark.parametrize("model", list(Model))
def test_every_model_quotes_and_matches_python(model) -> None:
    rig = Rig(QuoterParams(model=model))
    rng = np.random.default_rng(int(model))
    mid = 100_005
    for i in range(300):
        mid += int(rng.integers(-2, 3))
        rig.set_book([mid - 1, mid - 2], [int(rng.integers(1, 9)), 3], [mid + 1, mid + 2], [int(rng.integers(1, 9)), 3],
                     md_seq=i, pub=T0 + i * S // 10)
        t = T0 + i * S // 10 + 500
        if i % 3 == 0:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            d1 = rig.nq.on_trade(side, mid + (1 if side == Side.BUY else -1), 2, t)
            d2 = rig.pq.on_trade(side, mid + (1 if side == Side.BUY else -1), 2, t)
            assert d1 == d2 or (np.isnan(d1) and np.isnan(d2))
        if i % 5 == 0:
            rig.nq.on_reference(2 * mid - 3, 2 * mid + 3, t)
            rig.pq.on_reference(2 * mid - 3, 2 * mid + 3, t)
        assert rig.cycle(position=int(rng.integers(-15, 16)), now=t) in (0, PullReason.CASCADE)
    assert rig.nq.signals() == rig.pq.signals()


def test_set_arrival_validates() -> None:
    rig = Rig(QuoterParams(model=Model.GLFT))
    rig.nq.set_arrival(3.0, 0.7)
    assert rig.nq.signals()["arrival_k"] == 0.7
    with pytest.raises(ValueError):
        rig.nq.set_arrival(0.0, 1.0)


def test_corrupt_level_counts_are_clamped_to_the_row() -> None:
    rig = Rig()
    rig.book[0]["n_bids"] = rig.book[0]["n_asks"] = 65_535
    assert rig.cycle() == 0                     # equal to PyQuoter, and no read past the row
    assert -1.0 <= rig.nq.signals()["imbalance"] <= 1.0


def test_short_buffers_are_refused() -> None:
    rig = Rig()
    with pytest.raises(ValueError, match="shorter"):
        rig.nq.cycle(rig.book_b[:10], rig.cg_b, rig.ci_b, 0, T0, rig.out_b)


def test_prices_are_rounded_once_bids_down_asks_up() -> None:
    import math
    from mmshm.strategy import FairValue
    rig = Rig(QuoterParams(fair_value=FairValue.MID, half_spread_bp=1.37, inventory_skew_bp=0.0,
                           level_spacing_bp=0.73, levels=3))
    rig.set_book([100_000], [5], [100_011], [5])
    assert rig.cycle() == 0
    mid = 100_005.5
    want_b = [math.floor(mid * (1 + (-1.37 - i * 0.73) * 1e-4)) for i in range(3)]
    want_a = [math.ceil(mid * (1 + (1.37 + i * 0.73) * 1e-4)) for i in range(3)]
    assert list(rig.row["bid_px"][:3]) == want_b and list(rig.row["ask_px"][:3]) == want_a
    assert want_b[0] < mid * (1 - 1.37e-4) < want_b[0] + 1      # down, not to nearest
