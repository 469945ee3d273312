"""RiskAgent: the risk process's duty cycle as an Agent (procs/risk.py only wires segments).

Each ``do_work``: drain the orders ring (lossless, required reader ``risk``) into the
engine, and every ``evaluate_interval_s`` refresh the book tops from the book table, run
the triggers and rewrite every control row (which also refreshes ``heartbeat_mono``, so
readers can tell a live risk from a dead one). Control rows are written once at start so
the quoter and executor never run without limits.
"""
from __future__ import annotations

import numpy as np

from mmshm.records import BOOK_ROW, ORDER_EVENT
from mmshm.risk.engine import RiskEngine


class RiskAgent:
    name = "risk"

    def __init__(self, engine: RiskEngine, orders, books, control, evaluate_interval_s: float = 0.01,
                 batch: int = 256) -> None:
        self.engine = engine
        self.orders = orders        # GatedReader of ORDER_EVENT (or any .poll_batch(out) -> n)
        self.books = books          # SeqlockTable of BOOK_ROW, row = instrument
        self.control = control      # SeqlockTable of CONTROL_ROW, written here only
        self.interval_ns = int(evaluate_interval_s * 1e9)
        self._buf = np.zeros(batch, dtype=ORDER_EVENT)
        self._book = np.zeros(1, dtype=BOOK_ROW)
        self._rows = engine.control_rows()
        self._next_ns = 0
        self._book_versions: dict[int, int] = {}
        self.events = 0
        self.evaluations = 0
        self.book_busy = 0

    def on_start(self) -> None:
        self.evaluate()

    def do_work(self) -> int:
        work = 0
        n = self.orders.poll_batch(self._buf)
        for i in range(n):
            self.engine.on_order_event(self._buf[i])
        work += n
        self.events += n
        now = self.engine.clock.monotonic_ns()
        if now >= self._next_ns:
            self._next_ns = now + self.interval_ns
            self.evaluate()
            work += 1
        return work

    def evaluate(self) -> None:
        """Read book tops, run triggers, write all control rows."""
        from mmshm.shm import SeqlockBusy

        for i in self.engine.specs:
            if self.books.version(i) == self._book_versions.get(i):
                continue                 # unchanged row: a dead feed's last LIVE book must not look fresh
            try:
                self.books.read_into(i, self._book)
            except SeqlockBusy:
                self.book_busy += 1      # no fresh top: staleness keeps counting
                continue
            v = int(self._book[0]["version"])
            if v:
                self._book_versions[i] = v
                self.engine.on_book_row(self._book[0])
        self.engine.evaluate()
        self.engine.control_rows(self._rows)
        for r in range(len(self._rows)):
            self.control.write(r, self._rows[r:r + 1])
        self.evaluations += 1

    def on_close(self) -> None:
        pass
