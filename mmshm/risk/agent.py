"""RiskAgent: the risk process's duty cycle as an Agent (procs/risk.py only wires segments).

Each ``do_work``: drain the orders ring (lossless, required reader ``risk``) into the
engine, and every ``evaluate_interval_s`` refresh the book tops from the book table, run
the triggers and rewrite every control row (which also refreshes ``heartbeat_mono``, so
readers can tell a live risk from a dead one). Control rows are written once at start so
the quoter and executor never run without limits.
"""
from __future__ import annotations

import numpy as np

from typing import Callable

from mmshm.records import BOOK_ROW, ORDER_EVENT
from mmshm.risk.engine import RiskEngine


#: CONTROL_ROW fields the quoter and executor act on: a change of one rings their doorbells
#: (a rewrite that only refreshes the heartbeat wakes nobody).
CONTROL_FIELDS_ACTED_ON = ("mode", "reason", "limit_scale_bp", "max_position", "max_order_qty",
                           "position", "widen_bp", "flags")


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
        self.ring: Callable[[], None] | None = None   # rings the quoter's and executor's doorbells
        self._acted_on = b""

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
        self.write_control(self._rows)
        self.evaluations += 1

    def write_control(self, rows: np.ndarray) -> None:
        """Write every control row; ring the readers' doorbells if what they act on changed."""
        for r in range(len(rows)):
            self.control.write(r, rows[r:r + 1])
        if self.ring is not None:
            acted_on = b"".join(rows[f].tobytes() for f in CONTROL_FIELDS_ACTED_ON)
            if acted_on != self._acted_on:
                self._acted_on = acted_on
                self.ring()

    def on_close(self) -> None:
        pass
