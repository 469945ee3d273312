"""`mmshm book` reads the book the replay published into shared memory."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmshm.instruments import InstrumentSpec, InstrumentTable
from mmshm.records import BOOK_ROW, MdStatus
from mmshm.shm import SeqlockTable

pytestmark = pytest.mark.timeout(60)


def _publish_book(instance: str) -> tuple[object, object]:
    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")
    instruments = InstrumentTable([spec]).write_segment(instance)
    books = SeqlockTable.create(instance, "book", BOOK_ROW, rows=1)
    row = __import__("numpy").zeros((), BOOK_ROW)
    row["status"] = MdStatus.LIVE
    row["update_id"] = 42
    row["n_bids"], row["n_asks"] = 2, 1
    row["bid_px"][:2] = [618002, 618001]
    row["bid_qty"][:2] = [2507, 15]
    row["ask_px"][:1] = [618003]
    row["ask_qty"][:1] = [2510]
    books.write(0, row)
    return instruments, books


def test_book_json_and_ladder(instance: str) -> None:
    segs = _publish_book(instance)
    try:
        out = subprocess.run([sys.executable, "-m", "mmshm", "book", "--instance", instance, "--json"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        book = json.loads(out.stdout)
        assert book["symbol"] == "BTCUSDT" and book["status"] == "LIVE" and book["update_id"] == 42
        assert book["bids"] == [["61800.2", "2.507"], ["61800.1", "0.015"]]
        assert book["asks"] == [["61800.3", "2.510"]]

        ladder = subprocess.run([sys.executable, "-m", "mmshm", "book", "--instance", instance, "--levels", "1"],
                                capture_output=True, text=True, timeout=30)
        assert ladder.returncode == 0, ladder.stderr
        lines = ladder.stdout.splitlines()
        assert "61800.3" in lines[2] and "61800.2" in lines[4] and "61800.1" not in ladder.stdout
    finally:
        for seg in segs:
            seg.unlink()
            seg.close()


def test_book_without_feed_is_a_clear_error(instance: str) -> None:
    out = subprocess.run([sys.executable, "-m", "mmshm", "book", "--instance", instance],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 3
    assert "is the feed running" in out.stderr
