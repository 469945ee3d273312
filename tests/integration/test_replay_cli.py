"""`mmshm replay` as a real process: --book-top --json on the capture, and publishing
into the rings read by another attachment."""
from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import PYTHON
from mmshm.records import MARKET_EVENT, MdKind, MdStatus

DEC = re.compile(r"^[0-9]+\.[0-9]+$")


@pytest.mark.timeout(90)
def test_book_top_json(spawn, binance_capture):
    proc = spawn([PYTHON, "-m", "mmshm", "replay", str(binance_capture), "--book-top", "--json"])
    out, err = proc.communicate(timeout=80)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert len(lines) > 5000
    us = [r["u"] for r in lines]
    assert us == sorted(us) and len(set(us)) == len(us)
    for r in lines:
        assert set(r) == {"u", "local_ns", "bid_px", "bid_qty", "ask_px", "ask_qty"}
        assert all(DEC.match(r[k]) for k in ("bid_px", "bid_qty", "ask_px", "ask_qty"))
        assert float(r["bid_px"]) < float(r["ask_px"])
    assert lines[0] != lines[1]
    # every printed top that a bookTicker with the same u also reports agrees with it
    from mmshm.venues.capture import CaptureReader

    printed = {r["u"]: r for r in lines}
    checked = 0
    for _, frame in CaptureReader(binance_capture):
        if b'"bookTicker"' not in frame:
            continue
        d = json.loads(frame)["data"]
        r = printed.get(d["u"])
        if r is not None:
            checked += 1
            assert (r["bid_px"], r["bid_qty"], r["ask_px"], r["ask_qty"]) == (
                f'{float(d["b"]):.1f}', d["B"], f'{float(d["a"]):.1f}', d["A"])
    assert checked > 100
    summary = json.loads(err.decode().strip().splitlines()[-1])
    assert summary["ticker_checks"] == 629 and summary["ticker_mismatches"] == 0 and summary["gaps"] == 0


def test_help_and_errors(tmp_path):
    out = subprocess.run([PYTHON, "-m", "mmshm", "replay", "--help"], capture_output=True, timeout=60)
    assert out.returncode == 0 and b"--book-top" in out.stdout and b"--json" in out.stdout
    missing = subprocess.run([PYTHON, "-m", "mmshm", "replay", str(tmp_path / "nope.gz"), "--book-top"],
                             capture_output=True, timeout=60)
    assert missing.returncode == 2 and b"no such file" in missing.stderr
    f = tmp_path / "x.txt"
    f.write_bytes(b'1 {"e":"trade","s":"NOPEUSDT","p":"1","q":"1","t":1,"T":1,"m":true}\n')
    nospec = subprocess.run([PYTHON, "-m", "mmshm", "replay", str(f), "--book-top"], capture_output=True, timeout=60)
    assert nospec.returncode == 2 and b"NOPEUSDT" in nospec.stderr
    ok = subprocess.run([PYTHON, "-m", "mmshm", "replay", str(f), "--book-top", "--tick", "1", "--lot", "1"],
                        capture_output=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stderr)["trades"] == 1


@pytest.mark.timeout(90)
def test_publish_into_rings(spawn, instance, binance_capture):
    from mmshm.instruments import InstrumentTable
    from mmshm.records import BOOK_ROW
    from mmshm.shm import BroadcastReader, SeqlockTable

    proc = spawn([PYTHON, "-m", "mmshm", "replay", str(binance_capture), "--instance", instance,
                  "--linger", "20"])
    reader = None
    deadline = time.monotonic() + 40
    while reader is None:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            reader = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="test", start="oldest")
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    try:
        events = []
        while len(events) < 26985 and time.monotonic() < deadline:
            ev = reader.poll()
            if ev is None:
                time.sleep(0.01)
                continue
            events.append((int(ev["md_seq"]), int(ev["kind"]), int(ev["status"])))
        assert len(events) == 26985 and reader.gaps == 0
        assert [s for s, _, _ in events] == list(range(1, 26986))
        assert sum(1 for _, k, _ in events if k == MdKind.TRADE) == 21313
        assert [st for _, k, st in events if k == MdKind.STATUS] == [MdStatus.LIVE]
        table = InstrumentTable.read_segment(instance)
        assert table[0].symbol == "BTCUSDT" and table[0].tick == "0.1" and table[0].lot == "0.001"
        book = SeqlockTable.attach(instance, "book", BOOK_ROW)
        try:
            row = book.read(0)
            assert row["status"] == MdStatus.LIVE and row["n_bids"] == 20 and row["bid_px"][0] < row["ask_px"][0]
        finally:
            book.close()
    finally:
        reader.close()
