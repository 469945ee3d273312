"""The quoter process's wiring: waiting for segments, the ``signals`` table, the duty cycle.

procs/quoter.py stays a thin program; everything it needs beyond the QuoteEngine lives
here so it can be tested in-process:

- :func:`wait_attach`: segments created by other processes (feed: ``md``, ``book``,
  ``instruments``; risk: ``control``) may not exist yet when the supervisor starts us.
  We wait with a deadline and a clear message instead of dying at once and being
  restarted in a tight loop.
- :class:`SignalsTable`: the ``signals`` seqlock table (``SIGNAL_ROW``, row = instrument),
  created and written only by the quoter, read by risk (cascade trigger), ``mmshm status``
  and the exporter. Floats, no fixed-point scale.
- :class:`QuoterProcessAgent`: :class:`QuoterAgent` plus what a process needs and the
  in-process agent does not: a requote timer (a stale book or a new control mode must
  pull quotes even when no market event arrives), local pulls (SIGUSR2 pause, SIGUSR1
  halt, a dead risk process), signals publication, the feed→quote latency histogram
  and the process-table counters (names in ``mmshm.agent.counters``; scales below).

Counter scales (quoter row; values of the primary = first quoted instrument):
``imbalance_e6``, ``cascade_e6``: value × 1e6; ``leadlag_bp_e6``, ``sigma_bp_e6``,
``spread_bp_e6``: bp × 1e6; ``fair_value_ticks``: ticks, rounded; ``pull_reason``:
``PullReason`` of the last cycle (0 = quoting).
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from mmshm.agent.counters import counter_index
from mmshm.records import BOOK_ROW, CONTROL_ROW, SIGNAL_ROW, TARGET_ROW
from mmshm.shm import SeqlockBusy, SeqlockTable
from mmshm.shm import segment as segmod
from mmshm.strategy.agent import QuoterAgent
from mmshm.strategy.engine import QuoteEngine
from mmshm.strategy.params import TARGET_FLAG_PULL, PullReason
from mmshm.strategy.status import quoted_spread_bp

log = logging.getLogger("mmshm.quoter")

SIGNALS_SEGMENT = "signals"
ROLE = "quoter"

T = TypeVar("T")


class SegmentWaitTimeout(RuntimeError):
    """A segment another process creates did not appear in time."""


def wait_attach(open_fn: Callable[[], T], what: str, timeout_s: float, poll_s: float = 0.1,
                logger: logging.Logger = log, sleep: Callable[[float], object] = time.sleep) -> T:
    """``open_fn()`` until it stops raising ``SegmentNotFound``, at most ``timeout_s``.

    Other errors (``SegmentMismatch``: a different layout) are raised at once: waiting
    cannot fix them.
    """
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        try:
            obj = open_fn()
        except segmod.SegmentNotFound as exc:
            if time.monotonic() >= deadline:
                raise SegmentWaitTimeout(f"{what} did not appear within {timeout_s:g} s ({exc})") from None
            if not waited:
                logger.info("waiting for segment", extra={"segment": what, "timeout_s": timeout_s})
                waited = True
            sleep(poll_s)
            continue
        if waited:
            logger.info("segment attached", extra={"segment": what})
        return obj


def posix_inode(instance: str, name: str) -> int | None:
    """Inode of ``/dev/shm/mmshm-<instance>-<name>`` (None if absent): tells a segment that
    was unlinked and created again from the one we have mapped."""
    try:
        return os.stat("/dev/shm/" + segmod.segment_name(instance, name).lstrip("/")).st_ino
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- signals table

class SignalsTable:
    """The quoter's ``signals`` seqlock table: one ``SIGNAL_ROW`` per instrument row."""

    def __init__(self, table: SeqlockTable, owner: bool) -> None:
        self.table = table
        self.owner = owner
        self._row = np.zeros(1, dtype=SIGNAL_ROW)

    @classmethod
    def create(cls, instance: str, rows: int) -> "SignalsTable":
        """Create (or take over from a dead quoter) as the single writer."""
        return cls(SeqlockTable.create(instance, SIGNALS_SEGMENT, SIGNAL_ROW, rows), owner=True)

    @classmethod
    def attach(cls, instance: str) -> "SignalsTable":
        return cls(SeqlockTable.attach(instance, SIGNALS_SEGMENT, SIGNAL_ROW), owner=False)

    @property
    def rows(self) -> int:
        return int(self.table.rows)

    def write(self, instrument: int, sig: dict, md_seq: int, spread_bp: float | None, now_mono: int) -> None:
        """One row from ``Quoter.signals()`` plus the last target's md_seq and quoted spread."""
        r = self._row[0]
        r["instrument"] = instrument
        r["reason"] = int(sig.get("reason", 0))
        r["md_seq"] = md_seq
        r["updated_mono"] = now_mono
        for k in ("fair_value", "sigma_bp", "imbalance", "leadlag_bp", "cascade", "res_bp", "half_bp",
                  "arrival_a", "arrival_k"):
            r[k] = float(sig.get(k, 0.0))
        r["spread_bp"] = math.nan if spread_bp is None else spread_bp
        self.table.write(instrument, self._row)

    def read(self, instrument: int) -> np.void | None:
        """The row of ``instrument`` (None if never written)."""
        row = self.table.read(instrument)
        return row if int(row["version"]) else None

    def close(self, unlink: bool = False) -> None:
        if unlink and self.owner:
            self.table.unlink()
        self.table.close()


def signals_dict(row) -> dict[str, float]:
    """A SIGNAL_ROW as the dict ``Quoter.signals()`` returns (risk, status)."""
    out = {k: float(row[k]) for k in ("fair_value", "sigma_bp", "imbalance", "leadlag_bp", "cascade", "res_bp",
                                      "half_bp", "spread_bp", "arrival_a", "arrival_k")}
    out["reason"] = int(row["reason"])
    return out


# --------------------------------------------------------------------------- the agent

_STALE_REASONS = (PullReason.BOOK_NOT_LIVE, PullReason.BOOK_OLD)


class QuoterProcessAgent(QuoterAgent):
    """The quoter process's duty cycle (see the module docstring).

    ``control_max_age_s``: a control row 0 whose ``heartbeat_mono`` is older than this
    means risk is dead or gone: every quote is pulled (counted ``risk_stale``) and the
    control segment is re-attached if it was replaced. ``reopen_control`` returns a new
    control table (None if it does not exist).
    """

    name = "quoter"

    def __init__(self, engine: QuoteEngine, md, books, control, targets, signals: SignalsTable | None = None,
                 latency=None, *, requote_interval_s: float = 0.02, signals_interval_s: float = 0.1,
                 control_max_age_s: float = 2.0, latency_publish_s: float = 0.5,
                 reopen_control: Callable[[], SeqlockTable | None] | None = None, batch: int = 64,
                 clock: Callable[[], int] = time.monotonic_ns,
                 ring_targets: Callable[[], None] | None = None) -> None:
        super().__init__(engine, md, books, control, targets, batch)
        # wakes the executor sleeping on its doorbell once targets were written (None: nobody)
        self.ring_targets = ring_targets
        self.signals_table = signals
        self.latency = latency
        self.requote_ns = int(requote_interval_s * 1e9)
        self.signals_ns = int(signals_interval_s * 1e9)
        self.control_max_age_ns = int(control_max_age_s * 1e9)
        self.latency_publish_ns = int(latency_publish_s * 1e9)
        self.reopen_control = reopen_control
        self.clock = clock
        self.runner = None
        self.counters = None
        self.instruments = sorted(engine.quoters)
        self.primary = self.instruments[0]
        self._next_requote = 0
        self._next_signals = 0
        self._next_latency = 0
        self._next_reopen = 0
        self._ctrl = np.zeros(1, dtype=CONTROL_ROW)
        self._book = np.zeros(1, dtype=BOOK_ROW)
        self._pull = np.zeros(1, dtype=TARGET_ROW)
        self._last_mode = (-1, -1)
        self.local_pull = ""           # why quotes are pulled locally ("" = not)
        self.control_stale = False
        self.stats = {"quotes": 0, "pulls": 0, "stale_book": 0, "control_changes": 0, "risk_stale": 0,
                      "local_pulls": 0, "timer_requotes": 0}
        self._slots: dict[str, int] = {}

    # ------------------------------------------------------------------ runner
    def bind_runner(self, runner) -> None:
        self.runner = runner
        self.counters = runner.counters
        if self.counters is not None:
            self._slots = {name: counter_index(ROLE, name) for name in (
                "quotes", "md_gaps", "drops", "stale_book", "pulls", "pull_reason", "imbalance_e6",
                "leadlag_bp_e6", "cascade_e6", "sigma_bp_e6", "spread_bp_e6", "fair_value_ticks", "md_lost",
                "control_changes", "risk_stale", "fits")}

    def on_start(self) -> None:
        now = self.clock()
        self._check_control(now)
        for inst in self.instruments:
            self._quote(inst, now)
        self._publish_signals(now)

    # ------------------------------------------------------------------ duty cycle
    def do_work(self) -> int:
        n = self.md.poll_batch(self._buf)
        now = self.clock()
        work = n
        if n:
            dirty = self.engine.route(self._raw, n)
            for inst, pub in dirty:
                self._quote(inst, now)
                if self.latency is not None and pub > 0:
                    self.latency.record(self.clock() - pub)
            if dirty and self.ring_targets is not None:
                self.ring_targets()
            self.engine.fit_trades()            # after the ring: the executor is already on it
            self.engine.maybe_fit(now)
        if now >= self._next_requote:
            self._next_requote = now + self.requote_ns
            self._check_control(now)
            for inst in self.instruments:
                self._quote(inst, now)
            if self.ring_targets is not None:
                self.ring_targets()
            self.stats["timer_requotes"] += 1
            work += 1
        if now >= self._next_signals:
            self._next_signals = now + self.signals_ns
            self._publish_signals(now)
        if self.latency is not None and now >= self._next_latency:
            self._next_latency = now + self.latency_publish_ns
            self.latency.publish(now)
        return work

    def _quote(self, inst: int, now: int) -> None:
        """One requote of ``inst``: the native step, or a local pull when we must not quote."""
        why = self._local_pull_reason()
        if why:
            if why != self.local_pull:
                log.warning("pulling every quote", extra={"why": why})
            self.local_pull = why
            self._write_pull(inst, now)
            self.stats["local_pulls"] += 1
            self.stats["pulls"] += 1
            return
        if self.local_pull:
            log.warning("quoting again", extra={"was": self.local_pull})
            self.local_pull = ""
        r = self.engine.requote(inst, self.books, self.control, self.targets)
        self.requotes += 1
        if r:
            self.pulls += 1
            self.stats["pulls"] += 1
            if r in _STALE_REASONS:
                self.stats["stale_book"] += 1
        else:
            self.stats["quotes"] += 1

    def _local_pull_reason(self) -> str:
        r = self.runner
        if r is not None:
            if r.halted:
                return "halted (SIGUSR1)"
            if r.paused:
                return "paused (SIGUSR2)"
        if self.control_stale:
            return "risk control rows stale"
        return ""

    def _write_pull(self, inst: int, now: int) -> None:
        """A pull-all target row for ``inst`` carrying the book's md_seq (what it saw)."""
        t = self._pull[0]
        t["instrument"] = inst
        t["n_bids"] = t["n_asks"] = 0
        t["flags"] = TARGET_FLAG_PULL
        try:
            self.books.read_into(inst, self._book)
            t["md_seq"] = self._book[0]["md_seq"]
            t["md_publish_mono"] = self._book[0]["publish_mono"]
        except SeqlockBusy:
            pass                      # keep the last md_seq seen: a pull needs no book
        t["quote_mono"] = now
        t["bid_px"] = t["bid_qty"] = t["ask_px"] = t["ask_qty"] = 0
        self.targets.write(inst, self._pull)

    def _check_control(self, now: int) -> None:
        """Risk alive (row 0 heartbeat fresh)? Count mode/flag changes; re-attach a replaced table."""
        try:
            self.control.read_into(0, self._ctrl)
        except SeqlockBusy:
            return
        c = self._ctrl[0]
        hb = int(c["heartbeat_mono"])
        stale = self.control_max_age_ns > 0 and (hb == 0 or now - hb > self.control_max_age_ns)
        if stale and not self.control_stale:
            self.stats["risk_stale"] += 1
            log.error("risk control rows are stale: pulling quotes", extra={
                "heartbeat_age_s": (now - hb) / 1e9 if hb else None})
        self.control_stale = stale
        mode = (int(c["mode"]), int(c["flags"]))
        if mode != self._last_mode:
            if self._last_mode[0] >= 0:
                self.stats["control_changes"] += 1
                log.info("control changed", extra={"mode": mode[0], "flags": mode[1]})
            self._last_mode = mode
        if stale and self.reopen_control is not None and now >= self._next_reopen:
            self._next_reopen = now + 1_000_000_000
            try:
                fresh = self.reopen_control()
            except Exception as exc:      # noqa: BLE001 - a bad re-attach keeps the old mapping
                log.error("control re-attach failed", extra={"error": str(exc)})
                fresh = None
            if fresh is not None:
                old, self.control = self.control, fresh
                old.close()
                log.warning("control table re-attached")

    def _publish_signals(self, now: int) -> None:
        sig0 = None
        for inst in self.instruments:
            q = self.engine.quoters[inst]
            sig = q.signals()
            target = q.last_target()
            spread = quoted_spread_bp(target)
            if inst == self.primary:
                sig0 = (sig, spread)
            if self.signals_table is not None and inst < self.signals_table.rows:
                self.signals_table.write(inst, sig, int(target["md_seq"]), spread, now)
        self._publish_counters(sig0)

    def _publish_counters(self, sig0) -> None:
        c = self.counters
        if c is None:
            return
        s, st = self._slots, self.stats
        c[s["quotes"]] = st["quotes"]
        c[s["pulls"]] = st["pulls"]
        c[s["stale_book"]] = st["stale_book"]
        c[s["control_changes"]] = st["control_changes"]
        c[s["risk_stale"]] = st["risk_stale"]
        c[s["drops"]] = self.engine.ignored
        c[s["fits"]] = self.engine.fits
        c[s["md_gaps"]] = int(getattr(self.md, "gaps", 0))
        c[s["md_lost"]] = int(getattr(self.md, "lost", 0))
        if sig0 is not None:
            sig, spread = sig0
            c[s["pull_reason"]] = int(sig.get("reason", 0))
            c[s["imbalance_e6"]] = _fixed(sig.get("imbalance", 0.0), 1e6)
            c[s["leadlag_bp_e6"]] = _fixed(sig.get("leadlag_bp", 0.0), 1e6)
            c[s["cascade_e6"]] = _fixed(sig.get("cascade", 0.0), 1e6)
            c[s["sigma_bp_e6"]] = _fixed(sig.get("sigma_bp", 0.0), 1e6)
            c[s["spread_bp_e6"]] = _fixed(spread if spread is not None else 0.0, 1e6)
            c[s["fair_value_ticks"]] = _fixed(sig.get("fair_value", 0.0), 1.0)

    def pull_all(self) -> None:
        """Write a pull-all row for every instrument (clean stop: the executor cancels)."""
        now = self.clock()
        for inst in self.instruments:
            self._write_pull(inst, now)
        if self.ring_targets is not None:
            self.ring_targets()

    def on_close(self) -> None:
        try:
            self.pull_all()
        finally:
            if self.latency is not None:
                self.latency.publish(self.clock())


def _fixed(v: float, scale: float) -> int:
    """Fixed-point int64 of ``v * scale`` (NaN/inf -> 0; clamped to int64)."""
    if not math.isfinite(v):
        return 0
    x = round(v * scale)
    return max(-(1 << 63), min((1 << 63) - 1, x))


# --------------------------------------------------------------------------- instruments

def select_instruments(specs: Sequence, symbols: Iterable[str], venue: str) -> list[int]:
    """Indices of ``symbols`` in the instrument table: (venue, symbol) first, else the
    first instrument with that symbol. ``KeyError`` naming what is missing."""
    out = []
    missing = []
    for sym in symbols:
        idx = next((i for i, s in enumerate(specs) if s.symbol == sym and s.venue == venue), None)
        if idx is None:
            idx = next((i for i, s in enumerate(specs) if s.symbol == sym), None)
        if idx is None:
            missing.append(sym)
        elif idx not in out:
            out.append(idx)
    if missing:
        have = ", ".join(f"{s.venue}:{s.symbol}" for s in specs) or "none"
        raise KeyError(f"instruments {missing} not in the instruments table (have: {have})")
    return out


def find_reference(specs: Sequence, ref: str) -> int:
    """Index of ``VENUE:SYMBOL`` (or a bare symbol) in the instrument table."""
    venue, _, sym = ref.rpartition(":")
    for i, s in enumerate(specs):
        if s.symbol == sym and (not venue or s.venue == venue):
            return i
    raise KeyError(f"reference instrument {ref!r} not in the instruments table")


__all__ = ["QuoterProcessAgent", "SIGNALS_SEGMENT", "SegmentWaitTimeout", "SignalsTable", "find_reference",
           "posix_inode", "select_instruments", "signals_dict", "wait_attach"]
