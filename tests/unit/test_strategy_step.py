"""Quoter.step over real seqlock tables: book + control rows in, target row out, in one call."""
from __future__ import annotations

import numpy as np
import pytest

from mmshm.records import BOOK_ROW, CONTROL_ROW, TARGET_ROW, MdStatus, Mode
from mmshm.shm import SeqlockTable
from mmshm.strategy import TARGET_FLAG_PULL, InstrumentSpec, PullReason, QuoterParams, native_quoter


@pytest.fixture
def tables(instance):
    books = SeqlockTable.create(instance, "book", BOOK_ROW, 2)
    control = SeqlockTable.create(instance, "control", CONTROL_ROW, 3)
    targets = SeqlockTable.create(instance, "targets", TARGET_ROW, 2)
    yield books, control, targets
    for t in (books, control, targets):
        t.unlink()
        t.close()


def _book(bid: int, ask: int, md_seq: int) -> np.ndarray:
    b = np.zeros(1, BOOK_ROW)
    b["instrument"] = 1
    b["status"] = MdStatus.LIVE
    b["n_bids"] = b["n_asks"] = 1
    b["bid_px"][0, 0], b["ask_px"][0, 0] = bid, ask
    b["bid_qty"][0, 0] = b["ask_qty"][0, 0] = 5
    b["md_seq"] = md_seq
    return b


def test_step_reads_book_and_control_and_writes_targets(tables) -> None:
    books, control, targets = tables
    q = native_quoter(QuoterParams(max_book_age_ms=0.0), InstrumentSpec(), instrument=1)
    ctrl = np.zeros(3, CONTROL_ROW)
    ctrl[2]["max_position"], ctrl[2]["max_order_qty"] = 10, 5
    for i in range(3):
        control.write(i, ctrl[i:i + 1])
    books.write(1, _book(100_000, 100_010, 77))
    assert q.step(books, control, targets, 0) == PullReason.NONE
    t = targets.read(1)
    assert t["instrument"] == 1 and t["md_seq"] == 77 and t["n_bids"] == 3 and t["n_asks"] == 3
    assert t["bid_px"][0] < t["ask_px"][0] <= 100_100
    assert q.last_target()["md_seq"] == 77
    ctrl[2]["position"] = 10                   # risk's view: at the limit, only asks
    control.write(2, ctrl[2:3])
    assert q.step(books, control, targets) == PullReason.NONE
    t = targets.read(1)
    assert t["n_bids"] == 0 and t["n_asks"] == 3
    ctrl[0]["mode"] = Mode.HALT                # global HALT pulls every instrument
    control.write(0, ctrl[0:1])
    books.write(1, _book(100_001, 100_011, 78))
    assert q.step(books, control, targets, 0) == PullReason.MODE_HALT
    t = targets.read(1)
    assert t["flags"] & TARGET_FLAG_PULL and t["n_bids"] == 0 and t["md_seq"] == 78


def test_step_refuses_wrong_tables_and_rows(tables) -> None:
    books, control, targets = tables
    q = native_quoter(QuoterParams(), InstrumentSpec(), instrument=1)
    with pytest.raises(ValueError, match="tables"):
        q.step(control, books, targets, 0)
    far = native_quoter(QuoterParams(), InstrumentSpec(), instrument=5)
    with pytest.raises(ValueError, match="out of range"):
        far.step(books, control, targets, 0)
