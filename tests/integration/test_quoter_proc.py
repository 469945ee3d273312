"""The quoter PROCESS (procs/quoter.py) against segments the test writes as the feed and
risk would: it waits for them, quotes within the invariants, carries md_seq, pulls on a
STALE book, an old book, a HALT or paused control row, a dead risk (stale heartbeat),
SIGUSR2 and SIGUSR1, publishes its signals table and named counters, and removes its
tables on SIGTERM after writing pull-all targets."""
from __future__ import annotations

import math
import os
import signal
import sys
import time

import numpy as np
import pytest

from mmshm.agent.counters import named_counters
from mmshm.agent.proctable import ProcessTable
from mmshm.instruments import InstrumentSpec, InstrumentTable
from mmshm.records import (BOOK_ROW, CONTROL_ROW, MARKET_EVENT, SIGNAL_ROW, TARGET_ROW, MdKind, MdStatus, Mode,
                           Side)
from mmshm.shm import BroadcastWriter, SegmentNotFound, SeqlockTable
from mmshm.strategy import CONTROL_FLAG_PAUSED, TARGET_FLAG_PULL

PY = sys.executable
ARGS = ["--set", "venue.name=binance-usdm", "--set", "venue.symbols=BTCUSDT", "--set", "logging.level=WARNING"]


def _spec() -> InstrumentSpec:
    return InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_qty="0.001",
                                        min_notional="5")


class Feed:
    """md ring, book table and instruments table, written here as procs/feed.py would."""

    def __init__(self, instance: str) -> None:
        self.instruments = InstrumentTable([_spec()]).write_segment(instance)
        self.md = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=1 << 10)
        self.book = SeqlockTable.create(instance, "book", BOOK_ROW, 8)
        self.seq = 0

    def top(self, bid: int, ask: int, status: MdStatus = MdStatus.LIVE, qty: int = 500) -> int:
        """Book row 0 with 5 levels a tick apart, then a BOOK_TOP (or STATUS) event; returns md_seq."""
        self.seq += 1
        now = time.monotonic_ns()
        b = np.zeros(1, BOOK_ROW)
        b["status"], b["n_bids"], b["n_asks"], b["md_seq"], b["publish_mono"] = status, 5, 5, self.seq, now
        b["local_ts"] = time.time_ns()
        b["bid_px"][0, :5] = [bid - i for i in range(5)]
        b["ask_px"][0, :5] = [ask + i for i in range(5)]
        b["bid_qty"][0, :5] = qty
        b["ask_qty"][0, :5] = qty
        self.book.write(0, b)
        e = np.zeros(1, MARKET_EVENT)
        e["kind"] = MdKind.BOOK_TOP if status == MdStatus.LIVE else MdKind.STATUS
        e["md_seq"], e["status"], e["publish_mono"] = self.seq, status, now
        e["bid_px"], e["ask_px"], e["bid_qty"], e["ask_qty"] = bid, ask, qty, qty
        self.md.publish(e)
        return self.seq

    def trade(self, px: int, qty: int, side: Side) -> None:
        self.seq += 1
        e = np.zeros(1, MARKET_EVENT)
        e["kind"], e["md_seq"], e["side"], e["publish_mono"] = MdKind.TRADE, self.seq, side, time.monotonic_ns()
        e["trade_px"], e["trade_qty"] = px, qty
        self.md.publish(e)

    def close(self) -> None:
        for s in (self.instruments, self.md, self.book):
            s.unlink()
            s.close()


class Control:
    """risk's control table, written here as procs/risk.py would."""

    def __init__(self, instance: str) -> None:
        self.table = SeqlockTable.create(instance, "control", CONTROL_ROW, 9)
        self.rows = np.zeros(2, CONTROL_ROW)
        self.rows["limit_scale_bp"] = 10_000
        self.rows["max_position"][1] = 100
        self.rows["max_order_qty"][1] = 20
        self.write()

    def write(self, mode: Mode = Mode.NORMAL, flags: int = 0) -> None:
        self.rows["mode"] = mode
        self.rows["flags"] = flags
        self.rows["heartbeat_mono"] = time.monotonic_ns()
        for r in range(2):
            self.table.write(r, self.rows[r:r + 1])

    def close(self) -> None:
        self.table.unlink()
        self.table.close()


def wait_for(pred, timeout: float = 10.0, what: str = "condition", proc=None, tick=None):
    """Poll ``pred()`` until truthy (calling ``tick()`` each round, e.g. a risk heartbeat)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tick is not None:
            tick()
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate(timeout=5)
            pytest.fail(f"process exited {proc.returncode} while waiting for {what}:\n{err.decode()[-3000:]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def attach_targets(instance: str, proc) -> SeqlockTable:
    def get():
        try:
            return SeqlockTable.attach(instance, "targets", TARGET_ROW)
        except SegmentNotFound:
            return None
    return wait_for(get, what="targets table", proc=proc)


def check_invariants(t, bid: int, ask: int) -> None:
    nb, na = int(t["n_bids"]), int(t["n_asks"])
    assert nb > 0 and na > 0
    bids, asks = t["bid_px"][:nb], t["ask_px"][:na]
    assert bids[0] < asks[0]                                # own bid < own ask
    assert (bids < ask).all() and (asks > bid).all()         # post-only: never crosses the opposite best
    assert (np.diff(bids) < 0).all() and (np.diff(asks) > 0).all()
    assert (t["bid_qty"][:nb] > 0).all() and (t["ask_qty"][:na] > 0).all()


def quoting(tbl: SeqlockTable, md_seq: int | None = None):
    t = tbl.read(0)
    ok = not (int(t["flags"]) & TARGET_FLAG_PULL) and int(t["n_bids"]) > 0
    if md_seq is not None:
        ok = ok and int(t["md_seq"]) == md_seq
    return t if ok else None


def pulled(tbl: SeqlockTable):
    t = tbl.read(0)
    return t if int(t["flags"]) & TARGET_FLAG_PULL and t["n_bids"] == 0 and t["n_asks"] == 0 else None


def proc_counters(instance: str, role: str) -> dict[str, int]:
    table = ProcessTable.attach(instance)
    try:
        for p in table.read_all():
            if bytes(p["role"]).rstrip(b"\0").decode() == role and int(p["pid"]):
                return named_counters(role, p["counters"])
    finally:
        table.close()
    return {}


@pytest.mark.timeout(60)
def test_quoter_process_quotes_pulls_and_stops(spawn, instance) -> None:
    # started before any segment exists: it waits for them
    q = spawn([PY, "-m", "mmshm.procs.quoter", *ARGS, "--wait-s", "20", "--set", "quoter.max_book_age_ms=1500"])
    time.sleep(0.3)
    assert q.poll() is None
    feed = Feed(instance)
    ctl = Control(instance)
    try:
        bid, ask = 600_000, 600_005                     # 60000.0 / 60000.5 in 0.1 ticks
        seq = feed.top(bid, ask)
        targets = attach_targets(instance, q)
        beat = lambda: ctl.write()                      # noqa: E731 - risk's heartbeat
        t = wait_for(lambda: quoting(targets, seq), what="first quotes", proc=q, tick=beat)
        check_invariants(t, bid, ask)
        assert int(t["md_publish_mono"]) > 0 and int(t["quote_mono"]) >= int(t["md_publish_mono"])

        # a tighter book and some trades: requoted from the new md_seq, still within the invariants
        for i in range(20):
            feed.trade(bid + 2, 3, Side.BUY if i % 2 else Side.SELL)
        seq = feed.top(bid + 2, bid + 3)
        t = wait_for(lambda: quoting(targets, seq), what="requote", proc=q, tick=beat)
        check_invariants(t, bid + 2, bid + 3)

        # the feed marks the book STALE: pulled, carrying the md_seq it saw
        seq = feed.top(bid, ask, MdStatus.STALE)
        t = wait_for(lambda: pulled(targets), what="pull on STALE", proc=q, tick=beat)
        assert int(t["md_seq"]) == seq
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes after LIVE", proc=q, tick=beat)

        # no event for longer than max_book_age_ms: the timer requote pulls an old book
        wait_for(lambda: pulled(targets), timeout=5, what="pull on an old book", proc=q, tick=beat)
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes again", proc=q, tick=beat)

        # risk says HALT (no market event needed), then pause via control flags
        halt = lambda: ctl.write(Mode.HALT)             # noqa: E731
        wait_for(lambda: pulled(targets), what="pull on HALT", proc=q, tick=halt)
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes after NORMAL", proc=q, tick=beat)
        paused = lambda: ctl.write(Mode.NORMAL, CONTROL_FLAG_PAUSED)   # noqa: E731
        wait_for(lambda: pulled(targets), what="pull on control pause", proc=q, tick=paused)
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes after unpause", proc=q, tick=beat)

        # risk dead: its heartbeat stops, the quoter pulls on its own
        wait_for(lambda: pulled(targets), timeout=6, what="pull on a stale control heartbeat", proc=q)
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes with risk back", proc=q, tick=beat)

        # SIGUSR2 toggles a local pause; SIGUSR1 latches a local halt until SIGHUP
        q.send_signal(signal.SIGUSR2)
        wait_for(lambda: pulled(targets), what="pull on SIGUSR2", proc=q, tick=beat)
        q.send_signal(signal.SIGUSR2)
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes after SIGUSR2", proc=q, tick=beat)
        q.send_signal(signal.SIGUSR1)
        wait_for(lambda: pulled(targets), what="pull on SIGUSR1", proc=q, tick=beat)
        q.send_signal(signal.SIGHUP)
        seq = feed.top(bid, ask)
        wait_for(lambda: quoting(targets, seq), what="quotes after SIGHUP", proc=q, tick=beat)

        # signals table and named counters
        sig = SeqlockTable.attach(instance, "signals", SIGNAL_ROW)
        try:
            row = wait_for(lambda: (lambda r: r if int(r["version"]) and int(r["md_seq"]) == seq else None)(
                sig.read(0)), what="signals row", proc=q, tick=beat)
            assert 600_000 <= row["fair_value"] <= 600_005
            assert row["sigma_bp"] > 0 and -1 <= row["imbalance"] <= 1 and math.isfinite(row["cascade"])
            assert 0 < row["spread_bp"] < 100
        finally:
            sig.close()
        c = wait_for(lambda: (lambda d: d if d.get("quotes", 0) > 0 and d.get("stale_book", 0) > 0 else None)(
            proc_counters(instance, "quoter")), what="counters", proc=q, tick=beat)
        assert c["pulls"] > 0 and c["spread_bp_e6"] > 0 and c["fair_value_ticks"] > 0

        # SIGTERM: pull-all written, tables removed, exit 0
        q.send_signal(signal.SIGTERM)
        assert q.wait(timeout=10) == 0
        assert pulled(targets) is not None
        targets.close()
        assert not os.path.exists(f"/dev/shm/mmshm-{instance}-targets")
        assert not os.path.exists(f"/dev/shm/mmshm-{instance}-signals")
    finally:
        ctl.close()
        feed.close()


@pytest.mark.timeout(30)
def test_quoter_process_gives_up_without_segments(spawn, instance) -> None:
    q = spawn([PY, "-m", "mmshm.procs.quoter", *ARGS, "--wait-s", "0.5"])
    assert q.wait(timeout=20) == 2
    assert b"did not appear" in q.stderr.read()


@pytest.mark.timeout(90)
def test_quoter_and_risk_on_the_binance_capture(spawn, instance, binance_capture, tmp_path) -> None:
    """`mmshm replay` publishes the real capture as the feed would (at its recorded pace); risk and
    the quoter run on it: every target checked against the book row of the same md_seq
    keeps bid < ask and never crosses, and the signals move."""
    common = [*ARGS, "--set", f"risk.postmortem_dir={tmp_path}", "--set", f"state_dir={tmp_path}",
              "--set", "risk.max_position_lots=100",
              "--set", "quoter.max_book_age_ms=1000"]
    feed = spawn([PY, "-m", "mmshm", "replay", str(binance_capture), "--instance", instance, "--pace", "1",
                  "--linger", "30"])
    risk = spawn([PY, "-m", "mmshm.procs.risk", *common, "--wait-s", "30"])
    q = spawn([PY, "-m", "mmshm.procs.quoter", *common, "--wait-s", "30"])
    targets = attach_targets(instance, q)
    book = SeqlockTable.attach(instance, "book", BOOK_ROW)
    sig = SeqlockTable.attach(instance, "signals", SIGNAL_ROW)
    try:
        checked = 0
        seqs = set()
        end = time.monotonic() + 40
        while (checked < 30 or len(seqs) < 10) and time.monotonic() < end:
            for p in (feed, risk, q):
                assert p.poll() is None, p.stderr.read().decode()[-2000:]
            t = targets.read(0)
            b = book.read(0)
            if int(t["md_seq"]) == int(b["md_seq"]) and not int(t["flags"]) & TARGET_FLAG_PULL and t["n_bids"]:
                check_invariants(t, int(b["bid_px"][0]), int(b["ask_px"][0]))
                checked += 1
                seqs.add(int(t["md_seq"]))
            time.sleep(0.01)
        assert checked >= 30 and len(seqs) >= 10, (checked, len(seqs))
        s = sig.read(0)
        assert s["sigma_bp"] > 0 and s["imbalance"] != 0 and s["fair_value"] > 0
        # the capture is BTCUSDT around 56k-57k USDT: the fair value is in ticks of 0.1
        assert 500_000 < s["fair_value"] < 700_000
        # the feed -> quote stage is in the latency table (published every 0.5 s)
        from mmshm.monitor.latency import LATENCY_ROW, read_histograms
        lat = SeqlockTable.attach(instance, "latency", LATENCY_ROW)
        try:
            h = wait_for(lambda: [x for x in read_histograms(lat) if x["stage"] == "feed_to_quote" and x["count"]],
                         what="feed_to_quote histogram", proc=q)[0]
            assert h["pid"] == q.pid and sum(h["buckets"]) == h["count"] and h["max_s"] > 0
        finally:
            lat.close()
        # the feed stops: the book ages past max_book_age_ms and every quote is pulled
        feed.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: pulled(targets), timeout=10, what="pull on an aging book", proc=q)
        finally:
            feed.send_signal(signal.SIGCONT)
    finally:
        book.close()
        sig.close()
        targets.close()


@pytest.mark.timeout(60)
def test_quoter_sleeps_on_its_doorbell_and_rings_the_executors(spawn, instance) -> None:
    """idle.bells: the quoter parks on its doorbell and nothing else wakes it (its park is
    60 s), so every new quote below was caused by a ring; after writing targets it rings the
    executor's doorbell (held here, as the executor would). The test stands in for the feed
    (a book change, then a ring) and risk (a control row)."""
    from mmshm.agent.doorbell import BellRinger, Doorbell

    feed = Feed(instance)
    ctl = Control(instance)
    ctl.write()
    executor_bell = Doorbell(instance, "executor")
    quoter_bell = BellRinger(instance, "quoter")
    q = spawn([PY, "-m", "mmshm.procs.quoter", *ARGS, "--wait-s", "20", "--requote-ms", "60000",
               "--control-max-age-s", "0", "--set", "idle.quoter=sleep", "--set", "idle.bells=true",
               "--set", "idle.max_park_ns=60000000000", "--set", "idle.hot_max_park_ns=60000000000",
               "--set", "idle.min_park_ns=60000000000",
               "--set", "idle.spins=0", "--set", "idle.yields=0"], env={**os.environ, "MMSHM_IDLE": "sleep"})
    try:
        targets = attach_targets(instance, q)
        wait_for(lambda: (quoter_bell.ring(), quoter_bell.rung)[1], what="the quoter's bell bound", proc=q)
        quoter_bell.rung = 0
        bid = 600_000
        for i in range(5):
            executor_bell.drain()                       # (before the publish: its ring may come at once)
            seq = feed.top(bid + i, bid + i + 5)
            quoter_bell.ring()                          # the feed rings after it published
            t = wait_for(lambda: quoting(targets, seq), what=f"quotes for md_seq {seq} after a ring", proc=q)
            check_invariants(t, bid + i, bid + i + 5)
            assert executor_bell.wait(30.0), "the quoter wrote targets but did not ring the executor"
        assert quoter_bell.rung == 5
        q.send_signal(signal.SIGTERM)
        assert q.wait(timeout=10) == 0
    finally:
        executor_bell.close()
        quoter_bell.close()
        ctl.close()
        feed.close()
