"""Circuit breaker for venue requests: closed → open → half-open → closed.

Opens on a 429 (immediately, for at least Retry-After), on ``failure_threshold``
consecutive 5xx/timeouts, or on a reject storm (``reject_threshold`` rejects within
``reject_window_ns``). While open nothing is sent. After the backoff it goes half-open
and lets exactly one probe through; success closes it (backoff reset), failure reopens
it with the next, longer backoff. Backoff is exponential with *full jitter*
(uniform in ``[0, min(cap, base * 2**n)]``, AWS architecture blog) so that several
processes do not retry in lockstep. Clock and RNG are injected for tests.
"""
from __future__ import annotations

import random
import time
from collections import deque
from enum import IntEnum
from typing import Callable


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Failure(IntEnum):
    RATE_LIMIT = 1   # 429 / -1003
    SERVER = 2       # 5xx
    TIMEOUT = 3      # no answer in time / connection lost mid-request
    REJECT = 4       # a business reject (counts toward a reject storm only)


class CircuitOpen(Exception):
    def __init__(self, retry_in_ns: int) -> None:
        super().__init__(f"circuit open; retry in {retry_in_ns / 1e9:.3f}s")
        self.retry_in_ns = retry_in_ns


class CircuitBreaker:
    def __init__(self, *, failure_threshold: int = 3, reject_threshold: int = 20,
                 reject_window_ns: int = 1_000_000_000, base_ns: int = 100_000_000,
                 cap_ns: int = 30_000_000_000, min_open_ns: int = 50_000_000,
                 probe_timeout_ns: int = 10_000_000_000,
                 clock: Callable[[], int] = time.monotonic_ns,
                 rng: random.Random | None = None) -> None:
        self.failure_threshold = failure_threshold
        self.reject_threshold = reject_threshold
        self.reject_window_ns = reject_window_ns
        self.base_ns, self.cap_ns, self.min_open_ns = base_ns, cap_ns, min_open_ns
        self.probe_timeout_ns = probe_timeout_ns   # a probe never answered (cancelled) is retried
        self.probe_sent = 0
        self._clock = clock
        self._rng = rng or random.Random()
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self.opens = 0          # how many times it opened (backoff exponent)
        self.open_until = 0
        self.probe_in_flight = False
        self._rejects: deque[int] = deque()
        self.transitions: list[tuple[int, BreakerState]] = []
        self.counts = {"opened": 0, "closed": 0, "half_open": 0, "refused": 0}

    def _set(self, st: BreakerState) -> None:
        if st != self.state:
            self.state = st
            self.transitions.append((self._clock(), st))
            self.counts[{BreakerState.OPEN: "opened", BreakerState.CLOSED: "closed",
                         BreakerState.HALF_OPEN: "half_open"}[st]] += 1

    def backoff_ns(self) -> int:
        """Full-jitter backoff for the current number of consecutive opens."""
        ceiling = min(self.cap_ns, self.base_ns * (1 << min(self.opens, 40)))
        return max(self.min_open_ns, int(self._rng.uniform(0, ceiling)))

    def allow(self) -> bool:
        """May a request be sent now? In half-open, only one probe at a time."""
        if self.state == BreakerState.CLOSED:
            return True
        now = self._clock()
        if self.state == BreakerState.OPEN:
            if now < self.open_until:
                self.counts["refused"] += 1
                return False
            self._set(BreakerState.HALF_OPEN)
            self.probe_in_flight = False
        if self.probe_in_flight and now - self.probe_sent < self.probe_timeout_ns:
            self.counts["refused"] += 1
            return False
        self.probe_in_flight = True
        self.probe_sent = now
        return True

    def check(self) -> None:
        """:meth:`allow` or raise :class:`CircuitOpen`."""
        if not self.allow():
            raise CircuitOpen(max(0, self.open_until - self._clock()))

    def retry_in_ns(self) -> int:
        return 0 if self.state == BreakerState.CLOSED else max(0, self.open_until - self._clock())

    def record_success(self) -> None:
        self.consecutive = 0
        if self.state != BreakerState.CLOSED:
            self.opens = 0
            self.probe_in_flight = False
            self._set(BreakerState.CLOSED)

    def record_failure(self, kind: Failure, retry_after_ns: int = 0) -> None:
        now = self._clock()
        if kind == Failure.REJECT:
            self._rejects.append(now)
            while self._rejects and now - self._rejects[0] > self.reject_window_ns:
                self._rejects.popleft()
            if len(self._rejects) < self.reject_threshold and self.state == BreakerState.CLOSED:
                return
            if self.state == BreakerState.HALF_OPEN:
                # a business reject still proves the venue answers: the probe succeeded
                # only if the storm has passed
                if len(self._rejects) < self.reject_threshold:
                    self.record_success()
                    return
            self._rejects.clear()
            self._open(now, retry_after_ns)
            return
        self.consecutive += 1
        if (kind == Failure.RATE_LIMIT or self.state == BreakerState.HALF_OPEN
                or self.consecutive >= self.failure_threshold):
            self._open(now, retry_after_ns)

    def _open(self, now: int, retry_after_ns: int) -> None:
        wait = max(self.backoff_ns(), retry_after_ns)
        self.opens += 1
        self.open_until = max(self.open_until, now + wait)
        self.probe_in_flight = False
        self.consecutive = 0
        self._set(BreakerState.OPEN)
