"""Wake an asyncio loop within tens of microseconds when shared-memory rows change.

WHY: the executor is an asyncio program on uvloop, whose timers have millisecond
granularity, so ``asyncio.sleep(<1 ms)`` cannot poll the targets table faster than about
once a millisecond: a new target waited ~0.5-1 ms on average before the executor saw it.
Spinning the loop instead would run the whole service pass (control, verdicts, commands,
every instrument) thousands of times a second on a shared core.

:class:`RowWatcher` is a small daemon thread that only reads seqlock row *versions* (a
few nanoseconds each in the Cython table), sleeps a short fixed park between reads
(``time.sleep`` releases the GIL, so the loop runs freely meanwhile) and, when any
version differs from the previous read, calls ``wake()``: the executor passes
``loop.call_soon_threadsafe(...)``, whose self-pipe/eventfd write makes epoll return at
once. The loop stays parked in epoll (timeout ~1 ms for its time-based checks) while
nothing changes, and reacts within about one park after a change.

No wake-up is lost: the watcher compares against its own previous read, so every change
after the loop's last pass produces a wake, and the loop clears its "poked" mark *before*
it reads the rows (see ``ExecutorService.loop``).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable

log = logging.getLogger("mmshm.execution.watcher")


class RowWatcher:
    """A daemon thread calling ``wake()`` whenever ``versions()`` returns something new.

    ``versions`` runs on the watcher thread: it must only read (row versions of attached
    tables) and must not touch a segment that may be closed meanwhile; :meth:`stop` (which
    joins the thread) has to be called before those segments are closed.
    ``park_ns`` is the sleep between two reads (the reaction time, plus the kernel's timer
    slack). A ``wake`` raising ``RuntimeError`` (the loop is closed) ends the thread.
    """

    def __init__(self, versions: Callable[[], Hashable], wake: Callable[[], None], park_ns: int,
                 *, name: str = "mmshm-row-watcher", sleep: Callable[[float], None] = time.sleep) -> None:
        if park_ns <= 0:
            raise ValueError(f"park_ns must be > 0, got {park_ns}")
        self._versions = versions
        self._wake = wake
        self.park_ns = int(park_ns)
        self._sleep = sleep
        self._running = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.wakes = 0         # wake() calls (observability)
        self.polls = 0         # versions() reads
        self.errors = 0        # versions() raised (logged once; the loop's own pass still runs)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._running = True
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and join it (at most ``timeout`` s; it ends within one park)."""
        self._running = False
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        park_s = self.park_ns / 1e9
        last: Hashable = None
        sleep = self._sleep
        while self._running:
            self.polls += 1
            try:
                now = self._versions()
            except Exception as exc:  # noqa: BLE001 - the loop's timed pass still covers everything
                self.errors += 1
                if self.errors == 1:
                    log.warning("row watcher could not read versions (the loop's timed pass still runs)",
                                extra={"error": f"{type(exc).__name__}: {exc}"})
                now = last
            if now != last:
                last = now
                self.wakes += 1
                try:
                    self._wake()
                except RuntimeError:   # event loop closed: nothing left to wake
                    break
            sleep(park_s)
        self._running = False


__all__ = ["RowWatcher"]
