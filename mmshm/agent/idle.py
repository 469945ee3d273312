"""Idle strategies (Aeron's IdleStrategy): what a duty cycle does when it found no work.

- ``BusySpinIdle``: never gives the core away. Production on an isolated, pinned core.
- ``SpinThenYieldIdle``: spins a while, then ``sched_yield`` so a shared core stays usable.
- ``BackoffIdle``: spins, yields, then sleeps with exponential backoff up to a maximum and
  goes back to spinning as soon as work shows up. Laptops, CI and shared cores. Given a
  :class:`~mmshm.agent.doorbell.Doorbell`, it sleeps on the bell instead: a producer's
  ring ends the sleep at once, so the park is only the timeout for unrung work.
- ``SleepingIdle``: a fixed sleep (the watchdog, exporters, anything that polls slowly).
- ``NoOpIdle``: does nothing at all (tests that drive the loop themselves).

Every strategy is called as ``idle(work_count)`` once per duty cycle: work > 0 resets it.
``make_idle`` picks one from the config or ``MMSHM_IDLE`` (busy|yield|sleep).
"""
from __future__ import annotations

import inspect
import os
import time
from typing import Protocol

#: Processes of a full instance (feed, quoter, executor, risk, watchdog, recorder, exporter).
DEFAULT_PROCESS_COUNT = 7

ENV_IDLE = "MMSHM_IDLE"


class IdleStrategy(Protocol):
    name: str

    def idle(self, work_count: int) -> None:
        """Called after every duty cycle with the work it did."""

    def reset(self) -> None:
        """Forget any backoff state (next idle starts from the cheapest step)."""


class NoOpIdle:
    name = "noop"

    def idle(self, work_count: int) -> None:
        pass

    def reset(self) -> None:
        pass


class BusySpinIdle:
    """Keeps the core: the lowest latency, for a pinned process on an isolated CPU."""

    name = "busy"

    def idle(self, work_count: int) -> None:
        pass

    def reset(self) -> None:
        pass


class SpinThenYieldIdle:
    """Spin ``max_spins`` idle cycles, then ``sched_yield`` on every idle cycle after that."""

    name = "yield"

    def __init__(self, max_spins: int = 100) -> None:
        if max_spins < 0:
            raise ValueError(f"max_spins must be >= 0, got {max_spins}")
        self.max_spins = max_spins
        self.spins = 0
        self.yields = 0

    def idle(self, work_count: int) -> None:
        if work_count > 0:
            self.spins = 0
            return
        if self.spins < self.max_spins:
            self.spins += 1
            return
        self.yields += 1
        os.sched_yield()

    def reset(self) -> None:
        self.spins = 0


class BackoffIdle:
    """Spin, then yield, then sleep from ``min_park_ns`` doubling up to ``max_park_ns``.

    ``park_ns`` is the sleep the next parked idle cycle will take; it is reset as soon as
    a cycle reports work, so a burst after a quiet period is served at spin latency
    from its second message on.
    """

    name = "sleep"

    def __init__(
        self,
        max_spins: int = 10,
        max_yields: int = 5,
        min_park_ns: int = 50_000,
        max_park_ns: int = 1_000_000,
        sleep=time.sleep,
        bell=None,
    ) -> None:
        if max_spins < 0 or max_yields < 0:
            raise ValueError("max_spins and max_yields must be >= 0")
        if not 0 < min_park_ns <= max_park_ns:
            raise ValueError(f"need 0 < min_park_ns <= max_park_ns, got {min_park_ns}, {max_park_ns}")
        self.max_spins = max_spins
        self.max_yields = max_yields
        self.min_park_ns = min_park_ns
        self.max_park_ns = max_park_ns
        self._sleep = sleep
        self.bell = bell    # a Doorbell: parks end when a producer rings (see mmshm.agent.doorbell)
        self.spins = 0
        self.yields = 0
        self.park_ns = min_park_ns
        self.parks = 0  # total sleeps taken (observability)

    def idle(self, work_count: int) -> None:
        if work_count > 0:
            self.reset()
            return
        if self.spins < self.max_spins:
            self.spins += 1
        elif self.yields < self.max_yields:
            self.yields += 1
            os.sched_yield()
        else:
            self.parks += 1
            if self.bell is not None:
                # drains first: a ring since the cycle's look returns at once (one spare look)
                self.bell.wait(self.park_ns / 1e9)
            else:
                self._sleep(self.park_ns / 1e9)
            self.park_ns = min(self.park_ns * 2, self.max_park_ns)

    def reset(self) -> None:
        self.spins = 0
        self.yields = 0
        self.park_ns = self.min_park_ns


class SleepingIdle:
    """Sleep a fixed ``period_ns`` on every idle cycle (slow pollers: watchdog, exporter)."""

    name = "fixed-sleep"

    def __init__(self, period_ns: int = 1_000_000, sleep=time.sleep) -> None:
        if period_ns <= 0:
            raise ValueError(f"period_ns must be > 0, got {period_ns}")
        self.period_ns = period_ns
        self._sleep = sleep

    def idle(self, work_count: int) -> None:
        if work_count <= 0:
            self._sleep(self.period_ns / 1e9)

    def reset(self) -> None:
        pass


_KINDS = {
    "busy": "busy", "busy-spin": "busy", "busyspin": "busy", "spin": "busy",
    "yield": "yield", "spin-then-yield": "yield",
    "sleep": "sleep", "backoff": "sleep", "backoff-sleep": "sleep",
    "noop": "noop",
}


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask, cgroup-aware enough for systemd)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def default_idle_kind(n_processes: int | None = None, cpus: int | None = None) -> str:
    """``sleep`` when there are fewer CPUs than mmshm processes, else ``yield``.

    Busy-spin is never a default: it burns a whole core per process and starves
    neighbours on a shared box, so it has to be asked for explicitly.
    """
    n = DEFAULT_PROCESS_COUNT if n_processes is None else n_processes
    c = usable_cpus() if cpus is None else cpus
    return "sleep" if c < n else "yield"


def resolve_idle_kind(kind: str | None = None, n_processes: int | None = None) -> str:
    """The strategy that will run (busy|yield|sleep|noop): ``$MMSHM_IDLE``, else ``kind``,
    else the machine's default.

    The environment wins over the ``kind`` argument so tests and CI can force
    ``MMSHM_IDLE=sleep`` on processes whose config asks for busy-spin.
    """
    chosen = os.environ.get(ENV_IDLE) or kind or default_idle_kind(n_processes)
    normal = _KINDS.get(chosen.strip().lower())
    if normal is None:
        source = ENV_IDLE if os.environ.get(ENV_IDLE) else "idle strategy"
        raise ValueError(f"unknown {source} {chosen!r}: expected one of busy, yield, sleep")
    return normal


def make_idle(kind: str | None = None, n_processes: int | None = None, **options) -> IdleStrategy:
    """The idle strategy :func:`resolve_idle_kind` picks; ``options`` go to the strategy's
    constructor (e.g. ``max_park_ns`` or ``bell`` for sleep) when it takes them."""
    normal = resolve_idle_kind(kind, n_processes)
    cls = {"busy": BusySpinIdle, "yield": SpinThenYieldIdle, "sleep": BackoffIdle, "noop": NoOpIdle}[normal]
    # Options meant for the configured kind are dropped when the environment overrides it.
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})
