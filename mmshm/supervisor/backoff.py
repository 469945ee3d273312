"""Restart policy: exponential backoff, reset once a child has run long enough, give up
after too many restarts in a window.

Pure logic on an injected clock (seconds, monotonic) so the unit tests drive it without
sleeping. Pattern: systemd's ``Restart=always`` + ``RestartSec`` with
``StartLimitBurst``/``StartLimitIntervalSec``, plus the exponential delay systemd 254
added (``RestartSteps``/``RestartMaxDelaySec``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    """Parameters; ``RestartTracker`` holds the per-role state."""

    #: First delay after a crash, s.
    base_delay_s: float = 0.5
    #: Delay multiplier per consecutive crash.
    factor: float = 2.0
    #: Longest delay, s.
    max_delay_s: float = 15.0
    #: A child that ran at least this long resets the delay to ``base_delay_s``.
    stable_after_s: float = 30.0
    #: Give up when this many restarts happened within ``window_s``.
    max_restarts: int = 5
    window_s: float = 120.0

    def __post_init__(self) -> None:
        if self.base_delay_s < 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 <= base_delay_s <= max_delay_s")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if self.max_restarts < 1 or self.window_s <= 0:
            raise ValueError("max_restarts must be >= 1 and window_s > 0")


@dataclass(frozen=True)
class Decision:
    """What to do after a child exited."""

    restart: bool
    delay_s: float
    #: Restarts within the window, this one included (when restarting).
    restarts_in_window: int
    reason: str = ""


@dataclass
class RestartTracker:
    """Backoff state of one role."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    consecutive: int = 0
    total: int = 0
    gave_up: bool = False
    _times: deque = field(default_factory=deque)

    def on_exit(self, now_s: float, ran_for_s: float) -> Decision:
        """The child died at ``now_s`` after running ``ran_for_s``: restart (after a delay) or give up."""
        p = self.policy
        if self.gave_up:
            return Decision(False, 0.0, len(self._times), "gave up earlier")
        if ran_for_s >= p.stable_after_s:
            self.consecutive = 0
        while self._times and now_s - self._times[0] > p.window_s:
            self._times.popleft()
        if len(self._times) >= p.max_restarts:
            self.gave_up = True
            return Decision(False, 0.0, len(self._times),
                            f"{len(self._times)} restarts within {p.window_s:g} s (limit {p.max_restarts})")
        delay = min(p.max_delay_s, p.base_delay_s * p.factor ** self.consecutive)
        self.consecutive += 1
        self.total += 1
        self._times.append(now_s)
        return Decision(True, delay, len(self._times))
