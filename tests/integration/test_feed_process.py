"""The feed process against the local stand-in (the real capture) and the simulated venue.

Each test runs the real ``python -m mmshm.procs.feed`` (``spawn``, ``MMSHM_IDLE=sleep``,
unique instance) and reads what it publishes from shared memory. ``FeedHarness`` spawns ``python -m mmshm.procs.feed`` for the test's instance, reads the
``md`` ring as an untethered reader, the ``book`` table and the feed's process-table row,
and runs the ticker check on what it read: whenever the capture has a bookTicker with the
same ``u`` as a published BOOK_TOP event, the event's best bid/ask and quantities must
equal the ticker's.
"""
from __future__ import annotations

import functools
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import orjson

from mmshm.agent.counters import named_counters
from mmshm.agent.proctable import ProcessTable
from mmshm.instruments import InstrumentSpec
from mmshm.records import BOOK_ROW, MARKET_EVENT, MdKind, MdStatus
from mmshm.shm import BroadcastReader, SeqlockTable
from mmshm.shm import segment as segmod
from mmshm.venues.capture import load_capture
from tests.conftest import PYTHON

BTC = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.10", "0.001")


@functools.lru_cache(maxsize=2)
def capture_tickers(path: str) -> dict[int, tuple[int, int, int, int]]:
    """u -> (bid px, bid qty, ask px, ask qty) in ticks/lots for every bookTicker of the capture."""
    _, frames = load_capture(path)
    out = {}
    for f in frames:
        if b"@bookTicker" not in f[:40]:
            continue
        d = orjson.loads(f)["data"]
        out[int(d["u"])] = (BTC.price_to_ticks(d["b"]), BTC.qty_to_lots(d["B"]),
                            BTC.price_to_ticks(d["a"]), BTC.qty_to_lots(d["A"]))
    return out


@dataclass
class Seen:
    """What the harness read from the md ring."""

    statuses: list[tuple[int, int]] = field(default_factory=list)   # (md_seq, MdStatus)
    tops: int = 0
    trades: int = 0
    matches: list[int] = field(default_factory=list)                 # md_seq of matching tickers
    mismatches: list[tuple] = field(default_factory=list)
    last_top: np.void | None = None
    last_seq: int = 0


class FeedHarness:
    def __init__(self, spawn: Callable, instance: str, tickers: dict | None = None) -> None:
        self.spawn = spawn
        self.instance = instance
        self.tickers = tickers or {}
        self.proc = None
        self.md: BroadcastReader | None = None
        self.book: SeqlockTable | None = None
        self.seen = Seen()
        self._buf = np.zeros(1024, MARKET_EVENT)

    # ------------------------------------------------------------------ process
    def start(self, *sets: str, args: tuple[str, ...] = (), env: dict | None = None) -> "FeedHarness":
        argv = [PYTHON, "-m", "mmshm.procs.feed", "--profile", "ci", *args]
        for s in sets:
            argv += ["--set", s]
        self.proc = self.spawn(argv, env=env)
        return self

    def stop(self, timeout: float = 10.0) -> tuple[int, str]:
        """SIGTERM; returns (exit code, its output: JSON log lines on stdout, then stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        self.pump()
        return self.proc.returncode, out.decode() + err.decode()

    def close(self) -> None:
        for seg in (self.md, self.book):
            if seg is not None:
                seg.close()

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"feed exited with {self.proc.returncode}: {(out + err).decode()[-3000:]}")

    # ------------------------------------------------------------------ shared memory
    def attach(self, timeout: float = 15.0) -> "FeedHarness":
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                # From the oldest event: on a loaded machine the feed may already have published
                # SYNCING/LIVE before we attach, and "latest" would never see them.
                self.md = BroadcastReader.attach(self.instance, "md", MARKET_EVENT, reader="test",
                                                 start="oldest")
                self.book = SeqlockTable.attach(self.instance, "book", BOOK_ROW)
                return self
            except segmod.SegmentNotFound:
                if time.monotonic() > deadline:
                    raise AssertionError("the feed did not create md/book in time") from None
                time.sleep(0.02)

    def counters(self) -> dict[str, int]:
        try:
            table = ProcessTable.attach(self.instance)
        except segmod.SegmentNotFound:
            return {}
        try:
            for r in table.read_all():
                if int(r["pid"]) == self.proc.pid and bytes(r["role"]).rstrip(b"\0") == b"feed":
                    return dict(named_counters("feed", r["counters"]), state=int(r["state"]),
                                heartbeats=int(r["heartbeat_count"]))
            return {}
        finally:
            table.close()

    def book_row(self, i: int = 0) -> np.void:
        return self.book.read(i)

    def pump(self) -> int:
        """Read everything new from md and run the ticker check on it."""
        if self.md is None:
            return 0
        total = 0
        s = self.seen
        while True:
            n = self.md.poll_batch(self._buf)
            if not n:
                return total
            total += n
            for ev in self._buf[:n]:
                kind = int(ev["kind"])
                seq = int(ev["md_seq"])
                s.last_seq = seq
                if kind == MdKind.STATUS:
                    s.statuses.append((seq, int(ev["status"])))
                elif kind == MdKind.TRADE:
                    s.trades += 1
                elif kind == MdKind.BOOK_TOP:
                    s.tops += 1
                    s.last_top = ev.copy()
                    t = self.tickers.get(int(ev["update_id"]))
                    if t is not None and int(ev["status"]) == MdStatus.LIVE:
                        got = (int(ev["bid_px"]), int(ev["bid_qty"]), int(ev["ask_px"]), int(ev["ask_qty"]))
                        if got == t:
                            s.matches.append(seq)
                        else:
                            s.mismatches.append((int(ev["update_id"]), got, t))

    def wait(self, what: str, pred: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            if pred():
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; counters={self.counters()} "
                                     f"statuses={self.seen.statuses[-10:]} tops={self.seen.tops} "
                                     f"matches={len(self.seen.matches)}")
            time.sleep(0.01)

    # ------------------------------------------------------------------ conveniences
    def status(self) -> int | None:
        return self.seen.statuses[-1][1] if self.seen.statuses else None

    def statuses_after(self, seq: int) -> list[int]:
        return [st for q, st in self.seen.statuses if q > seq]

    def matches_after(self, seq: int) -> int:
        return sum(1 for q in self.seen.matches if q > seq)

    def wait_live(self, timeout: float = 15.0) -> None:
        self.wait("LIVE", lambda: self.status() == MdStatus.LIVE, timeout)


# ---------------------------------------------------------------------------- fixtures

import json  # noqa: E402

import pytest  # noqa: E402

from mmshm.records import ProcState  # noqa: E402
from mmshm.venues.standin import CaptureSource  # noqa: E402
from mmshm.venues.standin.thread import StandinThread  # noqa: E402

#: Short timeouts so every fault plays out in about a second.
STALE_AFTER_S = 0.5
FAST = ("feed.reconnect_backoff_base_s=0.05", "feed.reconnect_backoff_max_s=0.2",
        f"feed.stale_after_s={STALE_AFTER_S}", "feed.ping_interval_s=5")
#: BOOK_TOP events whose u matches a capture bookTicker, required after each recovery.
MATCHES_AFTER = 5


#: Replay pace of the 344 s capture: ~17 s of data, ~36 ticker checks a second. Served
#: flat out (~4 s) the file could end before a loaded machine had even started the feed,
#: leaving it reconnecting to a silent stand-in and the test waiting for LIVE.
CAPTURE_SPEED = 20.0


@pytest.fixture
def standin(binance_capture):
    with StandinThread(CaptureSource(binance_capture, speed=CAPTURE_SPEED)) as s:
        yield s


@pytest.fixture
def notify_socket(tmp_path):
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    import socket

    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield path, sock
    finally:
        sock.close()


def notifications(sock) -> list[str]:
    out = []
    while True:
        try:
            out.extend(sock.recv(65536).decode().splitlines())
        except BlockingIOError:
            return out


@pytest.fixture
def feed(spawn, instance, standin, binance_capture, notify_socket):
    h = FeedHarness(spawn, instance, capture_tickers(str(binance_capture)))
    h.notify = notify_socket[1]
    h.start("venue.name=binance-usdm", f"venue.ws_url={standin.ws_url}", f"venue.rest_url={standin.rest_url}",
            *FAST, env={"NOTIFY_SOCKET": notify_socket[0]})
    h.attach()
    try:
        yield h
    finally:
        h.close()


def final_details(stderr: str) -> dict:
    """The ``feed stopped`` log line's fields (counters, drops, per-instrument details)."""
    for line in reversed(stderr.splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "feed stopped":
            return rec
    raise AssertionError(f"no 'feed stopped' line in:\n{stderr[-3000:]}")


def synced(h: FeedHarness) -> int:
    """Wait until the feed is LIVE and the ticker check has held a few times; returns md_seq then."""
    h.wait_live()
    h.wait("ticker matches", lambda: len(h.seen.matches) >= MATCHES_AFTER)
    return h.seen.last_seq


def recovered(h: FeedHarness, since: int, via: tuple[int, ...]) -> None:
    """After ``since``: the book left LIVE through one of ``via`` and is LIVE again, and the
    ticker check held MATCHES_AFTER more times."""
    h.wait("book left LIVE", lambda: any(st in via for st in h.statuses_after(since)))
    left = next(q for q, st in h.seen.statuses if q > since and st in via)
    h.wait("LIVE again", lambda: any(st == MdStatus.LIVE for st in h.statuses_after(left)))
    back = next(q for q, st in h.seen.statuses if q > left and st == MdStatus.LIVE)
    h.wait("ticker matches after recovery", lambda: h.matches_after(back) >= MATCHES_AFTER)


def settled(h: FeedHarness, **expected: int) -> dict:
    """The feed's counters once they show ``expected`` (they are refreshed every 50 ms)."""
    h.wait(f"counters {expected}", lambda: all(h.counters().get(k) == v for k, v in expected.items()), 5.0)
    return h.counters()


def stop_clean(h: FeedHarness) -> dict:
    code, err = h.stop()
    assert code == 0, err[-3000:]
    assert h.status() == MdStatus.DISCONNECTED          # published on SIGTERM
    assert not h.seen.mismatches, h.seen.mismatches[:5]
    rec = final_details(err)
    inst = rec["details"]["instruments"]["BTCUSDT"]
    assert inst["ticker_mismatches"] == 0 and inst["ticker_checks"] > 0
    return rec


# ---------------------------------------------------------------------------- tests

@pytest.mark.timeout(60)
def test_feed_syncs_and_publishes(feed, instance):
    from mmshm.instruments import InstrumentTable

    synced(feed)
    c = settled(feed, snapshots=1)
    assert c["state"] == ProcState.RUNNING and c["heartbeats"] > 0
    assert c["md_events"] > 0 and c["msg_depth"] > 0 and c["msg_ticker"] > 0 and c["msg_trade"] > 0
    assert c["snapshots"] == 1 and c["md_gaps"] == 0 and c["reconnects"] == 0 and c["drops"] == 0
    assert feed.seen.trades > 0
    # (SYNCING may precede our reader's attach; LIVE is what we waited for)
    assert [st for _, st in feed.seen.statuses][-1] == MdStatus.LIVE
    table = InstrumentTable.read_segment(instance)
    assert [(s.venue, s.symbol, s.tick, s.lot) for s in table] == [("binance-usdm", "BTCUSDT", "0.1", "0.001")]
    row = feed.book_row()
    assert row["status"] == MdStatus.LIVE and row["n_bids"] > 0 and row["n_asks"] > 0
    assert row["bid_px"][0] < row["ask_px"][0]
    # sd_notify: READY=1 once the book is synchronised
    feed.wait("READY=1", lambda: "READY=1" in feed.__dict__.setdefault("notes", []) or
              bool(feed.notes.extend(notifications(feed.notify))) or "READY=1" in feed.notes)
    # SIGUSR2 / SIGUSR1: PAUSED, then HALTED in the row; market data keeps flowing
    import signal as sig
    feed.proc.send_signal(sig.SIGUSR2)
    feed.wait("PAUSED", lambda: feed.counters().get("state") == ProcState.PAUSED)
    feed.proc.send_signal(sig.SIGUSR1)
    feed.wait("HALTED", lambda: feed.counters().get("state") == ProcState.HALTED)
    n = feed.counters()["md_events"]
    feed.wait("events while halted", lambda: feed.counters()["md_events"] > n)
    rec = stop_clean(feed)
    feed.notes.extend(notifications(feed.notify))
    assert "STOPPING=1" in feed.notes
    assert rec["counters"]["md_events"] >= c["md_events"]
    after = feed.counters()
    assert after == {} or after["state"] == ProcState.STOPPED


@pytest.mark.timeout(60)
@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "tcp-drop"])
def test_feed_recovers_from_closed_connection(feed, standin, abrupt):
    since = synced(feed)
    standin.close_after(200, abrupt=abrupt)
    recovered(feed, since, (MdStatus.DISCONNECTED,))
    c = settled(feed, reconnects=1, snapshots=2)
    assert c["md_gaps"] == 0 and c["book_resyncs"] == 0 and c["drops"] == 0
    # DISCONNECTED -> SYNCING (fresh snapshot) -> LIVE
    assert feed.statuses_after(since)[:3] == [MdStatus.DISCONNECTED, MdStatus.SYNCING, MdStatus.LIVE]
    stop_clean(feed)


@pytest.mark.timeout(60)
def test_feed_resyncs_after_dropped_diff(feed, standin):
    since = synced(feed)
    standin.drop_diff()
    recovered(feed, since, (MdStatus.STALE,))
    c = settled(feed, md_gaps=1, book_resyncs=1, snapshots=2)
    assert c["reconnects"] == 0 and c["drops"] == 0
    stop_clean(feed)


@pytest.mark.timeout(60)
def test_feed_counts_malformed_frame(feed, standin):
    since = synced(feed)
    standin.malformed("truncated")
    feed.wait("malformed drop counted", lambda: feed.counters().get("drop_malformed") == 1)
    standin.malformed("garbage")
    feed.wait("second malformed drop", lambda: feed.counters().get("drop_malformed") == 2)
    seq = feed.seen.last_seq
    feed.wait("ticker matches after the bad frames", lambda: feed.matches_after(seq) >= MATCHES_AFTER)
    c = feed.counters()
    assert c["drops"] == 2 and c["md_gaps"] == 0 and c["reconnects"] == 0 and c["book_resyncs"] == 0
    assert feed.statuses_after(since) == []            # a bad frame alone does not break the book
    rec = stop_clean(feed)
    assert rec["drops"] == {"malformed": 2}


@pytest.mark.timeout(60)
def test_feed_goes_stale_on_stall_and_recovers(feed, standin):
    since = synced(feed)
    standin.stall(STALE_AFTER_S * 2.5)
    feed.wait("STALE", lambda: MdStatus.STALE in feed.statuses_after(since))
    feed.pump()
    # No data, yet the loop is alive: the heartbeat keeps going (the watchdog tells idle from hung).
    beats = feed.counters()["heartbeats"]
    feed.wait("heartbeats while stalled", lambda: feed.counters()["heartbeats"] > beats + 2, 2.0)
    # Quiet now: the book row is the state of the last published top, and says STALE.
    row = feed.book_row()
    top = feed.seen.last_top
    assert row["status"] == MdStatus.STALE
    assert (row["bid_px"][0], row["bid_qty"][0], row["ask_px"][0], row["ask_qty"][0]) == \
        (top["bid_px"], top["bid_qty"], top["ask_px"], top["ask_qty"])
    t = feed.tickers.get(int(row["update_id"]))
    if t is not None:
        assert (row["bid_px"][0], row["bid_qty"][0], row["ask_px"][0], row["ask_qty"][0]) == t
    recovered(feed, since, (MdStatus.STALE,))
    c = settled(feed, stale=1)
    assert c["reconnects"] == 0 and c["md_gaps"] == 0 and c["snapshots"] == 1
    stop_clean(feed)


@pytest.mark.timeout(60)
def test_feed_paper_mode_against_sim_venue(spawn, instance):
    """`mmshm venue` (synthetic market) as the paper-mode venue, URLs passed the way `mmshm up` does."""
    from mmshm.instruments import InstrumentTable
    from mmshm.monitor.latency import open_table, read_histograms

    venue = spawn([PYTHON, "-m", "mmshm", "venue", "--port", "0", "--seed", "5", "--symbols", "BTCUSDT,ETHUSDT"])
    line = venue.stdout.readline()
    assert line, venue.stderr.read().decode()
    info = json.loads(line)
    h = FeedHarness(spawn, instance)
    h.start("mode=paper", "venue.name=sim", "venue.symbols=[\"BTCUSDT\",\"ETHUSDT\"]",
            f"venue.ws_url=ws://127.0.0.1:{info['port']}", f"venue.rest_url={info['rest']}", *FAST)
    try:
        h.attach()
        h.wait("both books LIVE", lambda: all(h.book_row(i)["status"] == MdStatus.LIVE for i in (0, 1)))
        h.wait("tops and trades", lambda: h.seen.tops > 10 and h.seen.trades > 0, timeout=20)
        h.wait("latency counters", lambda: h.counters().get("lat_max_us", 0) > 0, timeout=10)
        c = h.counters()
        assert c["md_gaps"] == 0 and c["drops"] == 0 and c["snapshots"] == 2 and c["reconnects"] == 0
        # The synthetic market stamps E/T with wall time when served live: latency is loopback-sized.
        assert 0 < c["lat_p50_us"] < 5_000_000
        table = InstrumentTable.read_segment(instance)
        assert [(s.venue, s.symbol) for s in table] == [("sim", "BTCUSDT"), ("sim", "ETHUSDT")]
        rows = [h.book_row(i) for i in (0, 1)]
        assert all(r["bid_px"][0] < r["ask_px"][0] for r in rows)
        assert [int(r["instrument"]) for r in rows] == [0, 1]
        lat = open_table(instance)
        try:
            hist = {x["stage"]: x for x in read_histograms(lat)}
        finally:
            lat.close()
        assert hist["venue_to_feed"]["count"] > 0
        stop_clean_sim = h.stop()
        assert stop_clean_sim[0] == 0, stop_clean_sim[1][-3000:]
        assert h.status() == MdStatus.DISCONNECTED
    finally:
        h.close()


@pytest.mark.timeout(60)
def test_feed_reconnects_with_backoff_through_an_outage(feed, standin):
    since = synced(feed)
    standin.outage(0.8)          # connection dropped; WebSocket and REST answer 503 meanwhile
    recovered(feed, since, (MdStatus.DISCONNECTED,))
    c = settled(feed, reconnects=1, snapshots=2)
    assert c["md_gaps"] == 0
    rec = stop_clean(feed)
    conn = rec["details"]["connection"]
    assert conn["failures"] >= 1 and conn["connects"] == 2     # refused attempts, backed off, then back


@pytest.mark.timeout(60)
def test_feed_replays_a_capture(spawn, instance, binance_capture):
    """venue.name = replay: the capture through the same book sync into the segments, then STALE."""
    h = FeedHarness(spawn, instance)
    h.start("venue.name=replay", f"venue.replay_file={binance_capture}", "venue.replay_pace=fast")
    try:
        h.attach()
        h.wait("STALE at the end of the file", lambda: h.book_row()["status"] == MdStatus.STALE, 30)
        c = settled(h, msg_ticker=66089, msg_trade=21313, md_gaps=0, drops=0, snapshots=1)
        assert c["md_events"] >= 26982          # tops + trades + status changes
        code, out = h.stop()
        assert code == 0, out[-3000:]
        inst = final_details(out)["details"]["instruments"]["BTCUSDT"]
        assert inst["ticker_checks"] == 629 and inst["ticker_mismatches"] == 0 and inst["gaps"] == 0
    finally:
        h.close()


@pytest.mark.timeout(60)
def test_restarted_feed_takes_over_segments_readers_stay_attached(feed, standin):
    """SIGTERM leaves md/book/instruments for readers; the next feed takes them over (epoch
    bumped) and a reader attached to the old ring keeps reading the new one."""
    synced(feed)
    stop_clean(feed)
    gaps, m0 = feed.md.gaps, len(feed.seen.matches)
    feed.start("venue.name=binance-usdm", f"venue.ws_url={standin.ws_url}", f"venue.rest_url={standin.rest_url}",
               *FAST)
    feed.wait("LIVE from the restarted feed", lambda: feed.status() == MdStatus.LIVE and feed.md.gaps > gaps)
    feed.wait("ticker matches from the new feed", lambda: len(feed.seen.matches) >= m0 + MATCHES_AFTER)
    assert settled(feed, snapshots=1, reconnects=0)["state"] == ProcState.RUNNING
    stop_clean(feed)
