"""The native EventRouter (``QuoteEngine.route``) against the per-event Python routing it
replaces in the quoter process (``QuoteEngine.on_market_event``): on random batches of
book tops, trades, status and unknown events for quoted, reference and unknown
instruments, the same instruments to requote (with the newest publish stamp), the same
quoter state (cascade, lead-lag: every signal), the same A/k fit samples in the same
order, and the same event/ignored counts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mmshm.records import BOOK_ROW, CONTROL_ROW, MARKET_EVENT, TARGET_ROW, MdStatus
from mmshm.strategy import InstrumentSpec, Model, QuoterParams, row_buffer
from mmshm.strategy.engine import QuoteEngine, Quoting

pytestmark = pytest.mark.timeout(120)

QUOTED = (0, 2)          # 0 follows reference 3; 1 and 4 are nobody's
BOOK_BID, BOOK_ASK = 100_000, 100_010


def _engine() -> QuoteEngine:
    params = QuoterParams(model=Model.GLFT, leadlag_weight=0.5, max_book_age_ms=0.0)
    spec = InstrumentSpec(min_qty=1)
    eng = QuoteEngine([Quoting(0, params, spec, reference=3), Quoting(2, params, spec)])
    _cycle(eng, 1)                          # a book, so trades have a mid to be measured from
    return eng


def _cycle(eng: QuoteEngine, now: int) -> None:
    """One quote cycle of every quoter on the same book: what the routed events changed
    (cascade flow, lead-lag) shows in the signals only through a cycle."""
    book, book_b = row_buffer(BOOK_ROW)
    b = book[0]
    b["status"] = MdStatus.LIVE
    b["n_bids"] = b["n_asks"] = 1
    b["bid_px"][0], b["bid_qty"][0] = BOOK_BID, 5
    b["ask_px"][0], b["ask_qty"][0] = BOOK_ASK, 7
    b["publish_mono"] = now
    _, ctrl = row_buffer(CONTROL_ROW)
    _, out = row_buffer(TARGET_ROW)
    for q in eng.quoters.values():
        q.cycle(book_b, ctrl, ctrl, 0, now, out)


event = st.tuples(
    st.integers(1, 4),                                    # kind: BOOK_TOP, TRADE, STATUS, unknown
    st.integers(0, 4),                                    # instrument
    st.integers(0, 2),                                    # side
    st.integers(BOOK_BID - 50, BOOK_ASK + 50),            # price (bid / trade)
    st.integers(0, 20),                                   # qty
    st.integers(1, 10**6),                                # publish_mono step
)


def _batch(events: list[tuple]) -> np.ndarray:
    buf = np.zeros(len(events), MARKET_EVENT)
    t = 10**9
    for k, (kind, inst, side, px, qty, dt) in enumerate(events):
        t += dt
        e = buf[k]
        e["kind"], e["instrument"], e["side"], e["publish_mono"] = kind, inst, side, t
        e["bid_px"], e["ask_px"] = px, px + 3
        e["trade_px"], e["trade_qty"] = px, qty
    return buf


def _state(eng: QuoteEngine) -> dict:
    out = {}
    for inst, q in eng.quoters.items():
        sig = q.signals()
        out[inst] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in sig.items()}
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(event, min_size=0, max_size=40), min_size=1, max_size=4))
def test_route_matches_per_event_routing(batches) -> None:
    py, native = _engine(), _engine()
    py_samples: list[tuple[int, float, int]] = []
    nat_samples: list[tuple[int, float, int]] = []
    py.fitters = {i: _Recorder(i, py_samples) for i in py.fitters}
    native.fitters = {i: _Recorder(i, nat_samples) for i in native.fitters}
    for events in batches:
        buf = _batch(events)
        want: dict[int, int] = {}
        for k in range(len(buf)):
            inst = py.on_market_event(buf[k])
            if inst >= 0:
                want[inst] = int(buf[k]["publish_mono"])
        got = native.route(buf.view(np.uint8), len(buf))
        assert dict(got) == want
        assert [i for i, _ in got] == sorted(want)        # one entry per instrument, slot order
        native.fit_trades()
        assert nat_samples == py_samples
        now = int(buf[-1]["publish_mono"]) + 1 if len(buf) else 10**9
        _cycle(py, now)
        _cycle(native, now)
        assert _state(native) == _state(py)
        assert (native.events, native.ignored) == (py.events, py.ignored)


class _Recorder:
    """Stands in for an ArrivalFitter: records what it is given, in order."""

    def __init__(self, inst: int, into: list) -> None:
        self.inst, self.into = inst, into

    def add_trade(self, d: float, now: int) -> None:
        self.into.append((self.inst, d, now))

    def fit(self, now: int):
        return None


def test_route_refuses_a_short_buffer_and_counts_overflowing_trades() -> None:
    eng = _engine()
    buf = _batch([(2, 0, 1, BOOK_BID, 1, 1)] * 3)
    with pytest.raises(ValueError, match="do not fit"):
        eng.route(buf.view(np.uint8), 4)
    from mmshm._native.quoter import EventRouter
    r = EventRouter(eng.quoters, eng.followers, max_trades=2)
    r.route(buf.view(np.uint8), 3)
    assert r.n_trades == 2 and r.trades_dropped == 1
    with pytest.raises(ValueError, match="not quoted"):
        EventRouter(eng.quoters, {3: [1]})


def test_a_batch_moves_the_follower_and_samples_the_trade() -> None:
    """The comparison above is not vacuous: routed trades and reference tops change what
    the next cycles compute."""
    eng, untouched = _engine(), _engine()
    samples: list = []
    eng.fitters = {i: _Recorder(i, samples) for i in eng.fitters}
    buf = _batch([(2, 0, 2, BOOK_BID - 5, 3, 5), (1, 2, 0, BOOK_BID, 0, 5), (3, 4, 0, 0, 0, 5)])
    got = eng.route(buf.view(np.uint8), len(buf))
    assert got == [(2, int(buf[1]["publish_mono"]))]     # 2's own top; 4 is nobody's
    assert eng.fit_trades() == 1 and samples[0][0] == 0 and samples[0][1] > 0
    assert eng.ignored == 1                              # the STATUS of instrument 4
    for k, px in enumerate((BOOK_BID, BOOK_BID + 40, BOOK_BID + 80)):    # the reference leads up
        ref = _batch([(1, 3, 0, px, 0, 10**7)])
        ref["publish_mono"] += k * 10**8
        assert eng.route(ref.view(np.uint8), 1) == []    # a reference top requotes nobody itself
        _cycle(eng, int(ref[0]["publish_mono"]) + 1)
        _cycle(untouched, int(ref[0]["publish_mono"]) + 1)
    after, before = eng.quoters[0].signals(), untouched.quoters[0].signals()
    assert after["leadlag_bp"] > before["leadlag_bp"] == 0.0
    assert after["cascade_through"] > before["cascade_through"]     # a sell through our bid
