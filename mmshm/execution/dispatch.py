"""Per-instrument apply tasks for the executor: one request batch in flight per instrument.

Why: ``ExecutionSession.on_targets`` awaits the venue's answers (a WebSocket API round trip
is 1-3 ms). Awaited inside the executor's loop, it kept the loop from even reading a newer
target row, and instruments waited for each other. Here every instrument gets at most one
asyncio task that applies its target rows one after another; the loop only submits.

- **No hop before the socket.** ``apply`` is called inline from :meth:`submit` (the
  executor's session writes its frames there and then); only the wait for the answers
  becomes a task. A row that waited behind a busy instrument is applied in that task.
- **One per instrument, never two.** The diff is computed against the working orders; a
  second ``on_targets`` for the same instrument while the first awaits could plan against
  orders whose requests the first has not registered yet (``asyncio.gather`` starts its
  jobs on the next loop turn) and place a duplicate. So a second row waits.
- **Latest row wins.** While an instrument's task is busy, a submitted row replaces any row
  already waiting (only the newest target matters); the task applies it as soon as the
  answer of the previous one is in, against up-to-date working orders.
- **Different instruments run concurrently.**
- **Halt safety.** :meth:`block` stops an instrument: waiting rows are dropped and nothing
  new starts until :meth:`unblock`. :meth:`drain` blocks, then *awaits* the in-flight tasks
  (bounded) and only cancels what is still running at the deadline, so a halt's
  cancel-all never races one of our own requests. Awaiting is preferred: a cancelled task
  may have written its frame already (the order then stays PENDING_* and is settled by the
  pending-timeout query or the cancel-all's reconciliation; the caller is told which
  instruments were cut so it can keep cancelling them).
- **Errors are never lost.** An exception from ``apply`` is logged with its instrument and
  counted (``counters["errors"]``); the task goes on with the next waiting row.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, Iterable, TypeVar

log = logging.getLogger("mmshm.execution.dispatch")

T = TypeVar("T")

#: ``apply(instrument, item, follow_up)``: called synchronously; it sends what it can at once
#: and returns an awaitable of the rest (the answers), or None when nothing is in flight.
#: An ``async def`` works too (then everything happens when the task awaits it).
#: ``follow_up`` is True for a row that waited behind a previous apply of the same
#: instrument (the caller re-checks its risk mode).
ApplyFn = Callable[[int, T, bool], Awaitable[None] | None]


@dataclass(slots=True)
class DrainReport:
    """What :meth:`ApplyDispatcher.drain` did, per instrument."""
    finished: list[int] = field(default_factory=list)    # in-flight applies awaited to the end
    cancelled: list[int] = field(default_factory=list)   # still running at the deadline: cancelled
    dropped: int = 0                                      # waiting rows discarded

    @property
    def clean(self) -> bool:
        return not self.cancelled


class ApplyDispatcher(Generic[T]):
    """At most one apply task per instrument, latest-row coalescing; see the module docstring.

    ``counters``: ``started`` (tasks created), ``applied`` (items handed to ``apply``),
    ``coalesced`` (items that waited behind a busy instrument), ``replaced`` (waiting items
    overwritten by a newer one before they ran), ``dropped`` (items discarded because the
    instrument was blocked), ``errors`` (``apply`` raised), ``cancelled`` (tasks cancelled).
    """

    def __init__(self, n_instruments: int, apply: ApplyFn, *, name: str = "apply") -> None:
        self._apply = apply
        self.name = name
        self._tasks: list[asyncio.Task | None] = [None] * n_instruments
        self._answers: list[Awaitable[None] | None] = [None] * n_instruments   # what each task awaits
        self._waiting: list[T | None] = [None] * n_instruments
        self._blocked: list[bool] = [False] * n_instruments
        self.counters = {"started": 0, "applied": 0, "coalesced": 0, "replaced": 0, "dropped": 0,
                         "errors": 0, "cancelled": 0}

    def __len__(self) -> int:
        return len(self._tasks)

    # ------------------------------------------------------------------ state
    def busy(self, inst: int) -> bool:
        """An apply of ``inst`` is running (its requests may be on the wire)."""
        t = self._tasks[inst]
        return t is not None and not t.done()

    def in_flight(self) -> list[int]:
        return [i for i in range(len(self._tasks)) if self.busy(i)]

    def waiting(self, inst: int) -> T | None:
        return self._waiting[inst]

    def blocked(self, inst: int) -> bool:
        return self._blocked[inst]

    # ------------------------------------------------------------------ submit
    def submit(self, inst: int, item: T) -> bool:
        """Apply ``item`` for ``inst`` now (``apply`` runs inline; a task awaits what it
        returns), or as soon as the running apply ends.

        Returns True if it was applied now, False if the item waits (or was dropped
        because the instrument is blocked).
        """
        if self._blocked[inst]:
            self.counters["dropped"] += 1
            return False
        if self.busy(inst):
            if self._waiting[inst] is not None:
                self.counters["replaced"] += 1
            self._waiting[inst] = item
            self.counters["coalesced"] += 1
            return False
        answers = self._call(inst, item, False)
        if answers is not None:
            self._start(inst, answers)
        return True

    def _call(self, inst: int, item: T, follow_up: bool) -> Awaitable[None] | None:
        """``apply`` itself (synchronous part); an exception is logged and counted."""
        self.counters["applied"] += 1
        try:
            return self._apply(inst, item, follow_up)
        except Exception:  # noqa: BLE001 - one bad apply must not stop the instrument's quoting
            self._error(inst)
            return None

    def _error(self, inst: int) -> None:
        self.counters["errors"] += 1
        log.exception(f"{self.name} failed", extra={"instrument": inst, "errors": self.counters["errors"]})

    def _start(self, inst: int, answers: Awaitable[None]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(inst, answers), name=f"{self.name}-{inst}")
        self._tasks[inst] = task
        self._answers[inst] = answers
        self.counters["started"] += 1
        task.add_done_callback(lambda t, i=inst: self._done(i, t))

    async def _run(self, inst: int, answers: Awaitable[None] | None) -> None:
        """Await the answers, then apply whatever row arrived meanwhile, until none waits."""
        while answers is not None:
            self._answers[inst] = answers
            try:
                await answers
            except Exception:  # noqa: BLE001 - one bad apply must not stop the instrument's quoting
                self._error(inst)
            answers = None
            while answers is None:
                item = None if self._blocked[inst] else self._waiting[inst]
                self._waiting[inst] = None
                if item is None:
                    return
                answers = self._call(inst, item, True)

    def _done(self, inst: int, task: asyncio.Task) -> None:
        """Done callback: free the slot; a row that arrived in a gap (a task cancelled before
        it ever ran leaves its item waiting) is applied here."""
        if self._tasks[inst] is not task:
            return
        self._tasks[inst] = None
        answers, self._answers[inst] = self._answers[inst], None
        if hasattr(answers, "close"):
            answers.close()                     # a coroutine the cancelled task never awaited
        if task.cancelled():
            self.counters["cancelled"] += 1
        elif task.exception() is not None:      # _run catches Exception; this is a BaseException
            self.counters["errors"] += 1
            log.error(f"{self.name} task died", extra={"instrument": inst,
                                                        "error": repr(task.exception())})
        item = self._waiting[inst]
        if item is not None and not self._blocked[inst]:
            self._waiting[inst] = None
            answers = self._call(inst, item, True)
            if answers is not None:
                self._start(inst, answers)

    # ------------------------------------------------------------------ halt
    def block(self, insts: Iterable[int]) -> int:
        """No new apply for ``insts`` until :meth:`unblock`; waiting rows dropped (returned)."""
        dropped = 0
        for i in insts:
            self._blocked[i] = True
            if self._waiting[i] is not None:
                self._waiting[i] = None
                dropped += 1
        self.counters["dropped"] += dropped
        return dropped

    def unblock(self, inst: int) -> None:
        self._blocked[inst] = False

    async def drain(self, insts: Iterable[int], timeout_s: float, cancel_wait_s: float = 1.0) -> DrainReport:
        """Block ``insts``, await their in-flight applies up to ``timeout_s``, cancel the rest.

        Returns once every task of ``insts`` has ended (or, for a task that ignores its
        cancellation, after ``cancel_wait_s`` more; it is then reported as cancelled).
        """
        insts = list(insts)
        rep = DrainReport(dropped=self.block(insts))
        running = {self._tasks[i]: i for i in insts if self.busy(i)}
        if not running:
            return rep
        if timeout_s > 0:
            done, pending = await asyncio.wait(list(running), timeout=timeout_s)
        else:
            done, pending = set(), set(running)
        rep.finished = sorted(running[t] for t in done)
        if pending:
            for t in pending:
                t.cancel()
            rep.cancelled = sorted(running[t] for t in pending)
            log.error(f"{self.name}: in-flight requests still unanswered at the halt deadline; cancelled",
                      extra={"instruments": rep.cancelled, "timeout_s": timeout_s})
            await asyncio.wait(pending, timeout=cancel_wait_s)
        return rep


__all__ = ["ApplyDispatcher", "DrainReport"]
