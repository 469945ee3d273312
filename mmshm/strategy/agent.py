"""QuoterAgent: the quoter process's duty cycle as an Agent (procs/quoter.py wires segments).

Each ``do_work`` drains the md ring in batches; the QuoteEngine routes a batch in one
native call and each instrument whose book changed is requoted once per batch (the latest book wins:
quoting every intermediate book of a burst only creates orders that are already stale).
The A/k fit is refreshed on its own interval.
"""
from __future__ import annotations

import time

import numpy as np

from mmshm.records import MARKET_EVENT
from mmshm.strategy.engine import QuoteEngine


class QuoterAgent:
    name = "quoter"

    def __init__(self, engine: QuoteEngine, md, books, control, targets, batch: int = 64) -> None:
        self.engine = engine
        self.md = md                # BroadcastReader of MARKET_EVENT (or any .poll_batch(out) -> n)
        self.books = books          # SeqlockTable BOOK_ROW (read)
        self.control = control      # SeqlockTable CONTROL_ROW (read)
        self.targets = targets      # SeqlockTable TARGET_ROW (written here only)
        self._buf = np.zeros(batch, dtype=MARKET_EVENT)
        self._raw = self._buf.view(np.uint8)   # the same records as bytes, for engine.route
        self.requotes = 0
        self.pulls = 0

    def on_start(self) -> None:
        for inst in self.engine.quoters:      # start from a pulled state until the first book
            self.engine.requote(inst, self.books, self.control, self.targets)

    def do_work(self) -> int:
        n = self.md.poll_batch(self._buf)
        if n == 0:
            return 0
        for inst, _ in self.engine.route(self._raw, n):
            if self.engine.requote(inst, self.books, self.control, self.targets):
                self.pulls += 1
            self.requotes += 1
        self.engine.fit_trades()
        self.engine.maybe_fit(time.monotonic_ns())
        return n

    def on_close(self) -> None:
        pass
