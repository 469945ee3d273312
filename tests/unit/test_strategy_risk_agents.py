"""QuoterAgent and RiskAgent over real segments in one process: md ring + book table in,
targets out; orders ring in, control rows out; the two meet through the control table."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from mmshm.records import (BOOK_ROW, CONTROL_ROW, FEE_SCALE, MARKET_EVENT, ORDER_EVENT, TARGET_ROW, MdKind,
                           MdStatus, Mode, OrderEventKind, Side)
from mmshm.risk import InstrumentRisk, RiskEngine, RiskParams, SimClock
from mmshm.risk.agent import RiskAgent
from mmshm.shm import BroadcastReader, BroadcastWriter, GatedReader, GatedWriter, SeqlockTable
from mmshm.strategy import TARGET_FLAG_PULL, InstrumentSpec, QuoterParams
from mmshm.strategy.agent import QuoterAgent
from mmshm.strategy.engine import QuoteEngine, Quoting


@pytest.fixture
def segs(instance):
    s = {
        "md_w": BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=1 << 10),
        "orders_w": GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=1 << 10, required=("risk",)),
        "book": SeqlockTable.create(instance, "book", BOOK_ROW, 1),
        "control": SeqlockTable.create(instance, "control", CONTROL_ROW, 2),
        "targets": SeqlockTable.create(instance, "targets", TARGET_ROW, 1),
    }
    s["md"] = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="quoter")
    s["orders"] = GatedReader.attach(instance, "orders", ORDER_EVENT, reader="risk")
    yield s
    for k, v in s.items():
        if k.endswith("_w") or k in ("book", "control", "targets"):
            v.unlink()
        v.close()


def _book(seq: int, bid: int, ask: int) -> tuple[np.ndarray, np.ndarray]:
    b = np.zeros(1, BOOK_ROW)
    b["status"], b["n_bids"], b["n_asks"], b["md_seq"] = MdStatus.LIVE, 1, 1, seq
    b["bid_px"][0, 0], b["ask_px"][0, 0], b["bid_qty"][0, 0], b["ask_qty"][0, 0] = bid, ask, 3, 3
    e = np.zeros(1, MARKET_EVENT)
    e["kind"], e["md_seq"], e["status"] = MdKind.BOOK_TOP, seq, MdStatus.LIVE
    e["bid_px"], e["ask_px"], e["bid_qty"], e["ask_qty"] = bid, ask, 3, 3
    return b, e


def test_quoter_and_risk_agents_through_segments(segs) -> None:
    clock = SimClock()
    risk = RiskAgent(RiskEngine(RiskParams(), [InstrumentRisk(0, "X", Fraction(FEE_SCALE // 10_000),
                                                              max_position=10, max_order_qty=3)], clock),
                     segs["orders"], segs["book"], segs["control"], evaluate_interval_s=0.0)
    quoter = QuoterAgent(QuoteEngine([Quoting(0, QuoterParams(max_book_age_ms=0.0), InstrumentSpec())]),
                         segs["md"], segs["book"], segs["control"], segs["targets"])
    risk.on_start()
    quoter.on_start()
    assert segs["targets"].read(0)["flags"] & TARGET_FLAG_PULL        # no book yet: pulled
    assert quoter.do_work() == 0

    b, e = _book(1, 100_000, 100_010)
    segs["book"].write(0, b)
    segs["md_w"].publish(e)
    assert quoter.do_work() == 1
    t = segs["targets"].read(0)
    assert t["md_seq"] == 1 and t["n_bids"] == 3 and t["n_asks"] == 3 and t["flags"] == 0

    # a fill: risk books it, its control row now carries position 3, the quoter skews for it
    f = np.zeros(1, ORDER_EVENT)
    f["kind"], f["side"], f["fill_px"], f["fill_qty"], f["client_id"], f["trade_id"] = \
        OrderEventKind.FILL, Side.BUY, 100_000, 3, 1, 1
    assert segs["orders_w"].try_publish(f)
    clock.advance(0.001)
    assert risk.do_work() >= 1
    assert segs["control"].read(1)["position"] == 3
    b, e = _book(2, 100_000, 100_010)
    segs["book"].write(0, b)
    segs["md_w"].publish(e)
    quoter.do_work()
    t2 = segs["targets"].read(0)
    assert t2["md_seq"] == 2 and t2["bid_qty"].sum() <= 7          # room: 10 - 3

    risk.engine.halt()                                             # mmshm halt
    risk.do_work()
    assert segs["control"].read(0)["mode"] == Mode.HALT
    segs["md_w"].publish(e)
    quoter.do_work()
    assert segs["targets"].read(0)["flags"] & TARGET_FLAG_PULL
