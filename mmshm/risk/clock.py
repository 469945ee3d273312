"""Injected clocks: risk never reads the system time directly, so tests run in simulated time."""
from __future__ import annotations

import time
from typing import Protocol

NS = 1_000_000_000
DAY_NS = 86_400 * NS


class Clock(Protocol):
    def realtime_ns(self) -> int: ...
    def monotonic_ns(self) -> int: ...


class SystemClock:
    """CLOCK_REALTIME / CLOCK_MONOTONIC."""

    def realtime_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class SimClock:
    """A settable clock; ``advance`` moves realtime and monotonic together."""

    def __init__(self, realtime_ns: int = 1_700_000_000 * NS, monotonic_ns: int = 1_000 * NS) -> None:
        self.real = realtime_ns
        self.mono = monotonic_ns

    def realtime_ns(self) -> int:
        return self.real

    def monotonic_ns(self) -> int:
        return self.mono

    def advance(self, seconds: float) -> None:
        d = int(round(seconds * NS))
        self.real += d
        self.mono += d


def utc_day(realtime_ns: int) -> int:
    """Days since the epoch in UTC (the daily-PnL and halt-count day)."""
    return realtime_ns // DAY_NS


def next_utc_midnight(realtime_ns: int) -> int:
    return (utc_day(realtime_ns) + 1) * DAY_NS
