"""Operator signals, turned into flags that the runner acts on between duty cycles.

- SIGTERM / SIGINT: graceful stop (the runner runs the stop hook, e.g. cancel-all).
- SIGUSR1: emergency halt (latched; the runner calls the halt hook once).
- SIGUSR2: pause/resume toggle (quoting stops; data keeps flowing).
- SIGHUP: reload (the runner calls the reload hook).

Handlers only flip flags and bump counters: nothing that allocates, locks or talks to
the venue runs inside a handler, so a signal can never land in the middle of a half-done
order or a seqlock write and do work there.
"""
from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class SignalFlags:
    """Requests raised by signals (or by code: tests, CLI in-process) for the runner."""

    stop: bool = False
    halt: bool = False
    paused: bool = False
    #: Number of reload requests not yet handled.
    reload_pending: int = 0
    #: How many of each signal arrived (observability).
    received: dict[str, int] = field(default_factory=dict)
    #: Signal number of the first stop request (for the exit log line).
    stop_signal: int | None = None
    #: Bumped by every request: the runner compares one int per cycle instead of every flag.
    events: int = 0
    #: Called after a signal set the flags: ends an idle wait the signal would not end by
    #: itself (a park on a doorbell: Python retries an interrupted poll, PEP 475).
    wake: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def request_stop(self, signum: int | None = None) -> None:
        if not self.stop:
            self.stop_signal = signum
        self.stop = True
        self.events += 1

    def request_halt(self) -> None:
        self.halt = True
        self.events += 1

    def clear_halt(self) -> None:
        self.halt = False
        self.events += 1

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.events += 1

    def request_reload(self) -> None:
        self.reload_pending += 1
        self.events += 1

    def take_reload(self) -> bool:
        """True once per pending reload request."""
        if self.reload_pending:
            self.reload_pending -= 1
            return True
        return False

    # The handler: flags only.
    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        self.received[name] = self.received.get(name, 0) + 1
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.request_stop(signum)
        elif signum == signal.SIGUSR1:
            self.request_halt()
        elif signum == signal.SIGUSR2:
            self.toggle_pause()
        elif signum == signal.SIGHUP:
            self.request_reload()
        if self.wake is not None:
            self.wake()


HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)

Handler = Callable[[int, object], object] | int | None


def install(flags: SignalFlags, signals: tuple[int, ...] = HANDLED) -> dict[int, Handler]:
    """Point ``signals`` at ``flags``; return the previous handlers for ``restore``.

    Only the main thread may install handlers (a Python rule); from another thread this
    raises ``RuntimeError`` rather than silently leaving the process deaf to SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("signal handlers can only be installed from the main thread")
    previous: dict[int, Handler] = {}
    for signum in signals:
        previous[signum] = signal.signal(signum, flags._handle)
    return previous


def restore(previous: dict[int, Handler]) -> None:
    """Put back the handlers ``install`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
