"""Binance USD-M book sync: differential test on the real capture, and the state machine
on gaps, stale snapshots, ticker mismatches, crossed books, disconnects and publishing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmshm.instruments import InstrumentSpec
from mmshm.records import MARKET_EVENT, MdKind, MdStatus
from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook, FeedSequence
from mmshm.venues.capture import load_capture

SPEC = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_qty="0.001")


_A, _B, _M = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, (1 << 64) - 1


def level_hash(p: int, q: int) -> int:
    """A non-linear 64-bit fingerprint of one level (summed per side, order-free)."""
    return (((p * _A) & _M) ^ q) * _B & _M


def side_hash(px: np.ndarray, qty: np.ndarray) -> int:
    """Sum of level_hash over a side of the book under test, vectorised (uint64 wraps)."""
    with np.errstate(over="ignore"):
        h = ((px.astype(np.uint64) * np.uint64(_A)) ^ qty.astype(np.uint64)) * np.uint64(_B)
    return int(h.sum(dtype=np.uint64))


class RefSide(dict):
    """price -> qty, plus a running fingerprint so a full comparison per diff stays cheap."""

    def __init__(self) -> None:
        super().__init__()
        self.h = 0

    def set(self, p: int, q: int) -> None:
        old = self.pop(p, None)
        if old is not None:
            self.h = (self.h - level_hash(p, old)) & _M
        if q:
            self[p] = q
            self.h = (self.h + level_hash(p, q)) & _M


class RefBook:
    """Plain-Python reference: dicts of ints and Binance's documented procedure, written
    independently of the code under test (json.loads + InstrumentSpec conversions)."""

    def __init__(self) -> None:
        self.bids = RefSide()
        self.asks = RefSide()
        self.buffer: list[dict] = []
        self.last_u: int | None = None
        self.lid: int | None = None
        self._px: dict[str, int] = {}
        self._qty: dict[str, int] = {}

    def _set(self, side: RefSide, levels) -> None:
        for p, q in levels:
            pt = self._px.get(p)
            if pt is None:
                pt = self._px[p] = SPEC.price_to_ticks(p)
            ql = self._qty.get(q)
            if ql is None:
                ql = self._qty[q] = SPEC.qty_to_lots(q)
            side.set(pt, ql)

    def top(self) -> tuple[int, int, int, int]:
        b = max(self.bids)
        a = min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def on_message(self, msg: dict) -> list[int]:
        """Returns the u of every diff applied."""
        applied = []
        if "lastUpdateId" in msg:
            self.bids, self.asks = RefSide(), RefSide()
            self._set(self.bids, msg["bids"])
            self._set(self.asks, msg["asks"])
            self.lid = msg["lastUpdateId"]
            for d in self.buffer:
                applied += self._diff(d)
            self.buffer = []
            return applied
        d = msg.get("data", msg)
        if d.get("e") != "depthUpdate":
            return applied
        if self.lid is None:
            self.buffer.append(d)
            return applied
        return self._diff(d)

    def _diff(self, d: dict) -> list[int]:
        if self.last_u is None:
            if d["u"] < self.lid:
                return []
            assert d["U"] <= self.lid <= d["u"]
        else:
            assert d["pu"] == self.last_u, "the capture has no gaps"
        self._set(self.bids, d["b"])
        self._set(self.asks, d["a"])
        self.last_u = d["u"]
        return [d["u"]]


def book_dicts(book) -> tuple[dict, dict]:
    bp, bq = book.side_levels(1)
    ap, aq = book.side_levels(2)
    return dict(zip(bp.tolist(), bq.tolist())), dict(zip(ap.tolist(), aq.tolist()))


def assert_same_book(book, ref: RefBook, full: bool) -> None:
    """Identical levels: counts and fingerprints every time, the full dicts when ``full``."""
    assert (book.n_bids, book.n_asks) == (len(ref.bids), len(ref.asks))
    assert side_hash(*book.side_levels(1)) == ref.bids.h
    assert side_hash(*book.side_levels(2)) == ref.asks.h
    if full:
        assert book_dicts(book) == (dict(ref.bids), dict(ref.asks))


@pytest.mark.timeout(120)
def test_capture_differential_against_reference(binance_capture):
    stamps, frames = load_capture(binance_capture)
    sut = BinanceUsdmBook(SPEC, 0, max_levels=20_000)       # deep enough to hold every level
    bounded = BinanceUsdmBook(SPEC, 1, max_levels=1000)      # the default bound
    ref = RefBook()
    tickers: dict[int, tuple] = {}
    sut_top_at_u: dict[int, tuple] = {}
    ref_top_at_u: dict[int, tuple] = {}
    events = []
    compared = 0
    for ts, frame in zip(stamps, frames):
        n = sut.on_frame(frame, ts)
        if n:
            events.extend(sut.events[:n].copy())
        bounded.on_frame(frame, ts)
        msg = json.loads(frame)
        d = msg.get("data", msg)
        if d.get("e") == "bookTicker":
            tickers[d["u"]] = (SPEC.price_to_ticks(d["b"]), SPEC.qty_to_lots(d["B"]),
                               SPEC.price_to_ticks(d["a"]), SPEC.qty_to_lots(d["A"]))
        applied = ref.on_message(msg)
        if applied:
            assert sut.last_update_id == applied[-1] and sut.in_sync
            assert_same_book(sut.book, ref, full=compared % 200 == 0)
            compared += 1
            u = applied[-1]
            sut_top_at_u[u] = sut.book.best()
            if u in tickers:                      # the reference's own top where a ticker can check it
                ref_top_at_u[u] = ref.top()
            # the bounded book agrees with the exact one on the levels it publishes
            for side in (1, 2):
                a, b = bounded.book.side_levels(side, 20), sut.book.side_levels(side, 20)
                assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert_same_book(sut.book, ref, full=True)
    c = sut.counters
    assert c["applied"] == 6547 and c["gaps"] == 0 and c["snapshots"] == 1 and compared > 6500
    assert sut.book.levels_dropped == 0
    # every bookTicker with the u of an applied diff (before or after it) matches the book
    same = sorted(set(tickers) & set(sut_top_at_u))
    assert len(same) == 629
    assert all(sut_top_at_u[u] == tickers[u] for u in same)
    assert all(ref_top_at_u[u] == tickers[u] for u in ref_top_at_u)
    assert c["ticker_checks"] == 629 and c["ticker_mismatches"] == 0
    assert bounded.counters["ticker_checks"] == 629 and bounded.counters["ticker_mismatches"] == 0
    # events: one STATUS LIVE, then BOOK_TOP whenever the top changed, trades; md_seq 1, 2, ...
    assert [int(e["md_seq"]) for e in events] == list(range(1, len(events) + 1))
    statuses = [int(e["status"]) for e in events if e["kind"] == MdKind.STATUS]
    assert statuses == [MdStatus.LIVE]
    tops = [(int(e["bid_px"]), int(e["bid_qty"]), int(e["ask_px"]), int(e["ask_qty"]))
            for e in events if e["kind"] == MdKind.BOOK_TOP]
    expected = []
    for u in sorted(sut_top_at_u):
        if not expected or expected[-1] != sut_top_at_u[u]:
            expected.append(sut_top_at_u[u])
    assert tops == expected
    assert sum(1 for e in events if e["kind"] == MdKind.TRADE) == 21313
    assert sut.row[0]["bid_px"][0] == ref.top()[0] and sut.row[0]["n_bids"] == 20


# ----------------------------------------------------------------- state machine

def depth(U: int, u: int, pu: int, bids=(), asks=(), E: int = 1_700_000_000_000) -> bytes:
    return json.dumps({"stream": "btcusdt@depth@0ms", "data": {
        "e": "depthUpdate", "E": E, "T": E, "s": "BTCUSDT", "U": U, "u": u, "pu": pu,
        "b": [list(x) for x in bids], "a": [list(x) for x in asks]}}).encode()


def snapshot(lid: int, bids, asks) -> bytes:
    return json.dumps({"lastUpdateId": lid, "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}).encode()


def ticker(u: int, b: str, bq: str, a: str, aq: str) -> bytes:
    return json.dumps({"e": "bookTicker", "u": u, "s": "BTCUSDT", "b": b, "B": bq, "a": a, "A": aq,
                       "T": 1, "E": 1}).encode()


class Driver:
    def __init__(self, **kw) -> None:
        self.requests = 0
        self.seq = FeedSequence()
        self.md = BinanceUsdmBook(SPEC, 2, request_snapshot=self._req, sequence=self.seq, **kw)
        self.events: list[np.void] = []

    def _req(self) -> None:
        self.requests += 1

    def frame(self, f: bytes, ts: int = 5) -> int:
        n = self.md.on_frame(f, ts)
        self.events.extend(self.md.events[:n].copy())
        return n

    def start(self, ts: int = 1) -> int:
        n = self.md.start(ts)
        self.events.extend(self.md.events[:n].copy())
        return n

    def snap(self, f: bytes, ts: int = 5) -> int:
        n = self.md.on_snapshot(f, ts)
        self.events.extend(self.md.events[:n].copy())
        return n

    def kinds(self) -> list[tuple[int, int]]:
        out = [(int(e["kind"]), int(e["status"])) for e in self.events]
        self.events.clear()
        return out


SNAP = snapshot(100, [("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "3.000")])
TOP, STATUS, TRADE = int(MdKind.BOOK_TOP), int(MdKind.STATUS), int(MdKind.TRADE)
LIVE, STALE, SYNCING = int(MdStatus.LIVE), int(MdStatus.STALE), int(MdStatus.SYNCING)


def live_driver() -> Driver:
    d = Driver()
    d.start(1)
    assert d.requests == 1 and d.kinds() == [(STATUS, SYNCING)]
    d.frame(depth(90, 99, 89, bids=[("100.0", "1.500")]))       # before the snapshot: buffered
    d.frame(depth(100, 103, 99, bids=[("100.0", "1.500")]))     # straddles lastUpdateId=100
    assert d.md.status == SYNCING and d.kinds() == []
    d.snap(SNAP)
    assert d.md.status == LIVE and d.md.last_update_id == 103
    assert d.kinds() == [(STATUS, LIVE), (TOP, LIVE)]
    assert d.md.book.best() == (1000, 1500, 1001, 1000)
    assert d.md.counters["stale_diffs"] == 1
    return d


def test_sync_then_gap_goes_stale_at_once_and_resyncs():
    d = live_driver()
    assert d.frame(depth(104, 105, 103, asks=[("100.1", "0.500")])) == 1
    assert d.kinds() == [(TOP, LIVE)]
    # a missing diff (pu 106 != 105): STALE immediately, snapshot requested
    assert d.frame(depth(107, 110, 106, bids=[("100.0", "9.000")])) == 1
    assert d.kinds() == [(STATUS, STALE)] and d.md.status == STALE and d.requests == 2
    assert d.md.counters["gaps"] == 1 and d.md.counters["resyncs"] == 1
    assert d.md.book.best_bid_qty == 1500                       # the broken diff was not applied
    d.frame(depth(111, 112, 110, asks=[("100.1", "0.700")]))     # buffered while stale
    assert d.kinds() == []
    d.snap(snapshot(109, [("100.0", "2.000")], [("100.1", "0.600")]))
    assert d.md.status == LIVE and d.md.last_update_id == 112
    assert d.md.book.best() == (1000, 9000, 1001, 700)
    assert d.kinds() == [(STATUS, LIVE), (TOP, LIVE)]


def test_late_snapshot_while_in_sync_is_ignored():
    d = live_driver()
    assert d.snap(snapshot(101, [("90.0", "1.000")], [("110.0", "1.000")])) == 0
    assert d.md.in_sync and d.md.book.best() == (1000, 1500, 1001, 1000)
    # a newer one is taken, and the stream continues from it by the first-diff rule
    d.snap(snapshot(104, [("100.0", "7.000")], [("100.1", "1.000")]))
    d.frame(depth(104, 105, 103, asks=[("100.1", "0.500")]))
    assert d.md.in_sync and d.md.book.best() == (1000, 7000, 1001, 500) and d.md.status == LIVE


def test_snapshot_older_than_buffer_asks_again():
    d = Driver()
    d.start(1)
    d.kinds()
    d.frame(depth(150, 160, 149))
    d.snap(SNAP)                                  # lid 100 < U 150: cannot bridge
    assert d.md.counters["snapshot_too_old"] == 1 and d.requests == 2 and not d.md.in_sync
    assert d.md.status == STALE
    d.snap(snapshot(155, [("100.0", "1.000")], [("100.1", "1.000")]))
    assert d.md.in_sync and d.md.status == LIVE and d.md.last_update_id == 160


def test_first_live_diff_after_snapshot_and_repeats():
    d = Driver()
    d.start(1)
    d.snap(SNAP)                                  # no buffered diffs yet
    assert d.md.status == SYNCING and not d.md.in_sync
    d.frame(depth(95, 99, 94))                    # u < lastUpdateId: dropped
    assert not d.md.in_sync and d.md.counters["stale_diffs"] == 1
    d.frame(depth(99, 101, 98, bids=[("100.0", "4.000")]))
    assert d.md.in_sync and d.md.book.best_bid_qty == 4000
    d.frame(depth(99, 101, 98, bids=[("100.0", "5.000")]))   # a repeat of an applied diff: ignored
    assert d.md.in_sync and d.md.book.best_bid_qty == 4000 and d.md.counters["stale_diffs"] == 2


def test_ticker_mismatch_is_a_break():
    d = live_driver()
    d.frame(ticker(103, "100.0", "1.500", "100.1", "1.000"))   # same u, same top: fine
    assert d.md.counters["ticker_checks"] == 1 and d.md.in_sync
    d.frame(ticker(104, "100.0", "1.500", "100.1", "1.000"))   # ahead: waits for u=104
    assert d.md.core.pending_tickers == 1
    d.frame(depth(104, 104, 103, asks=[("100.1", "0.500")]))   # book says 0.5, ticker said 1.0
    assert d.md.counters["ticker_mismatches"] == 1 and d.md.status == STALE and not d.md.in_sync
    assert (TOP, LIVE) in d.kinds() and d.requests == 2


def test_crossed_book_is_stale_until_uncrossed():
    d = live_driver()
    d.frame(depth(104, 104, 103, bids=[("100.2", "1.000")]))   # bid above the best ask
    assert d.md.status == STALE and d.md.in_sync and d.md.counters["crossed"] == 1
    assert d.kinds() == [(STATUS, STALE), (TOP, STALE)]
    d.frame(depth(105, 105, 104, bids=[("100.2", "0")]))
    assert d.md.status == LIVE and d.kinds() == [(STATUS, LIVE), (TOP, LIVE)]


def test_trades_disconnect_and_silence():
    d = live_driver()
    t = json.dumps({"e": "trade", "E": 2, "T": 2, "s": "BTCUSDT", "t": 9, "p": "100.1", "q": "0.010", "m": True}).encode()
    assert d.frame(t) == 1
    e = d.events[-1]
    assert (e["kind"], e["trade_px"], e["trade_qty"], e["side"], e["instrument"]) == (TRADE, 1001, 10, 2, 2)
    d.kinds()
    assert d.md.mark_stale(9) == 1 and d.md.status == STALE
    d.frame(depth(104, 104, 103, asks=[("100.1", "0.500")]))   # the next applied diff clears it
    assert d.md.status == LIVE
    d.kinds()
    assert d.md.on_disconnect(10) == 1 and d.md.status == int(MdStatus.DISCONNECTED) and not d.md.in_sync
    assert d.start(11) == 1 and d.kinds()[-1] == (STATUS, SYNCING)
    assert d.md.on_snapshot(b'{"lastUpdateId":1}', 12) == 0              # unusable snapshot: ask again
    assert d.requests == 3


def test_md_seq_shared_between_instruments():
    seq = FeedSequence()
    a = BinanceUsdmBook(SPEC, 0, sequence=seq)
    b = BinanceUsdmBook(SPEC, 1, sequence=seq)
    t = json.dumps({"e": "trade", "E": 2, "T": 2, "s": "BTCUSDT", "t": 9, "p": "100.1", "q": "0.010", "m": True}).encode()
    a.on_frame(t, 1)
    b.on_frame(t, 1)
    a.on_frame(t, 1)
    assert seq.value == 3 and a.events[0]["md_seq"] == 3 and b.events[0]["md_seq"] == 2


def test_publishes_into_rings(instance):
    from mmshm.records import BOOK_ROW
    from mmshm.shm import BroadcastReader, BroadcastWriter, SeqlockTable

    w = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=1 << 10)
    t = SeqlockTable.create(instance, "book", BOOK_ROW, rows=4)
    r = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="test", start="oldest")
    try:
        d = Driver()
        d.md.bind_output(w, t)
        d.start(1)
        d.frame(depth(100, 103, 99, bids=[("100.0", "1.500")]))
        d.snap(SNAP)
        d.frame(depth(104, 105, 103, asks=[("100.1", "0.500")]))
        d.frame(depth(107, 110, 106))                                  # gap -> STALE
        got = []
        while (ev := r.poll()) is not None:
            got.append((int(ev["kind"]), int(ev["status"]), int(ev["md_seq"])))
        assert got == [(STATUS, SYNCING, 1), (STATUS, LIVE, 2), (TOP, LIVE, 3), (TOP, LIVE, 4), (STATUS, STALE, 5)]
        row = t.read(2)
        assert row["status"] == STALE and row["bid_px"][0] == 1000 and row["ask_qty"][0] == 500
        assert d.md.core.published == 5 and not d.md.row_dirty
    finally:
        r.close()
        w.unlink(); w.close()
        t.unlink(); t.close()
