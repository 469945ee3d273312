"""QuoteEngine: the quoter process's logic for several instruments, minus the process.

procs/quoter.py owns the segments and the duty cycle; per batch of market events it calls
``route(raw, n)`` (natively what ``on_market_event(ev)`` does per event) and, for each
instrument that returns, ``requote(instrument, ...)``
(one native ``Quoter.step``: seqlock book/control read, cycle, target write). Public
trades feed the cascade detector and the online A/k fit; ``maybe_fit(now)`` installs a
new fit at most every ``fit_interval_s``. A reference (leading) venue's book tops feed
the lead-lag signal of the instruments that follow it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mmshm.records import MdKind
from mmshm.strategy.intensity import ArrivalFitter
from mmshm.strategy.params import InstrumentSpec, QuoterParams


@dataclass(frozen=True)
class Quoting:
    """One quoted instrument: its parameters, its spec and (optionally) the instrument
    index of the reference venue's book that leads it (same md ring)."""
    instrument: int
    params: QuoterParams
    spec: InstrumentSpec
    reference: int | None = None
    fitter: dict = field(default_factory=dict)   # ArrivalFitter keyword overrides


class QuoteEngine:
    """Native quoters per instrument, driven by MARKET_EVENT records."""

    def __init__(self, quoting: Sequence[Quoting], fit_interval_s: float = 10.0) -> None:
        from mmshm._native.quoter import EventRouter, Quoter

        if not quoting:
            raise ValueError("nothing to quote")
        self.quoters = {q.instrument: Quoter(q.params, q.spec, q.instrument) for q in quoting}
        if len(self.quoters) != len(quoting):
            raise ValueError("an instrument is quoted twice")
        self.fitters = {q.instrument: ArrivalFitter(**q.fitter) for q in quoting}
        self.followers: dict[int, list[int]] = {}
        for q in quoting:
            if q.reference is not None:
                if q.reference == q.instrument:
                    raise ValueError(f"instrument {q.instrument} cannot lead itself")
                self.followers.setdefault(q.reference, []).append(q.instrument)
        # the same routing as on_market_event, for a whole md batch in one C loop
        self.router = EventRouter(self.quoters, self.followers)
        self.fit_interval_ns = int(fit_interval_s * 1e9)
        self.last_fit_ns = 0
        self.fits = 0
        self.events = 0
        self.ignored = 0

    def on_market_event(self, ev) -> int:
        """Account one MARKET_EVENT; returns the instrument to requote, or -1."""
        self.events += 1
        kind = int(ev["kind"])
        inst = int(ev["instrument"])
        now = int(ev["publish_mono"])
        if kind == MdKind.BOOK_TOP:
            for f in self.followers.get(inst, ()):
                self.quoters[f].on_reference(int(ev["bid_px"]), int(ev["ask_px"]), now)
            return inst if inst in self.quoters else -1
        q = self.quoters.get(inst)
        if q is None:
            self.ignored += 1
            return -1
        if kind == MdKind.TRADE:
            d = q.on_trade(int(ev["side"]), int(ev["trade_px"]), int(ev["trade_qty"]), now)
            if math.isfinite(d):
                self.fitters[inst].add_trade(d, now)
            return -1
        if kind == MdKind.STATUS:
            return inst          # requote: a book that is no longer LIVE pulls
        self.ignored += 1
        return -1

    def route(self, raw: np.ndarray, n: int) -> list[tuple[int, int]]:
        """Account the first ``n`` MARKET_EVENT records of ``raw`` (their bytes:
        ``buf.view(np.uint8)``) natively, as ``on_market_event`` does one by one; returns
        ``[(instrument, publish_mono of its newest event)]`` to requote. The trades' fit
        samples wait for :meth:`fit_trades` (after the requote: the fit is not urgent)."""
        r = self.router
        ignored = r.ignored
        dirty = r.route(raw, n)
        self.events += n
        self.ignored += r.ignored - ignored
        if not dirty:
            return []
        return [(inst, int(r.dirty_pub[k])) for k, inst in enumerate(r.instruments) if r.dirty[k]]

    def fit_trades(self) -> int:
        """Hand the last :meth:`route`'s trade samples to the A/k fitters; returns how many."""
        r = self.router
        n = r.n_trades
        for k in range(n):
            self.fitters[r.instruments[r.trade_slot[k]]].add_trade(float(r.trade_d[k]), int(r.trade_ns[k]))
        r.n_trades = 0
        return n

    def requote(self, instrument: int, books, control, targets, position: int | None = None,
                now_ns: int = 0) -> int:
        """One native step for ``instrument`` (position None = risk's, from the control row)."""
        return self.quoters[instrument].step(books, control, targets, position, now_ns)

    def maybe_fit(self, now_ns: int) -> dict[int, tuple[float, float]]:
        """Refit A and k at most every fit_interval_s; returns the fits installed."""
        if now_ns - self.last_fit_ns < self.fit_interval_ns:
            return {}
        self.last_fit_ns = now_ns
        out = {}
        for inst, fitter in self.fitters.items():
            fit = fitter.fit(now_ns)
            if fit is not None:
                self.quoters[inst].set_arrival(*fit)
                out[inst] = fit
                self.fits += 1
        return out

    def signals(self) -> dict[int, dict]:
        """Per instrument: every signal and model value (dashboard, status line, risk's cascade)."""
        return {i: q.signals() for i, q in self.quoters.items()}
