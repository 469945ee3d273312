"""Volatility from log returns of the mid: a time-weighted EWMA, in bp per sqrt(second).

Book events arrive at irregular intervals (microseconds apart in a burst, seconds apart
when quiet), so a per-event EWMA would weight bursts. Instead both the squared log returns
and the elapsed time are summed with the same exponential decay (half-life configurable),
and the variance rate is their ratio: ``sigma² per second = Σ decay·r² / Σ decay·dt``.
The horizon is one second: sigma_bp is the standard deviation of a one-second log return
in basis points. Until ``warmup_s`` of time has been seen the prior is returned.
"""
from __future__ import annotations

import math

LN2 = math.log(2.0)


class EwmaVolatility:
    """Time-weighted EWMA of squared log returns; ``sigma_bp`` is per sqrt(second)."""

    __slots__ = ("tau_s", "prior_bp", "warmup_s", "last_mid", "last_ns", "sum_r2", "sum_dt")

    def __init__(self, half_life_s: float, prior_bp: float, warmup_s: float) -> None:
        self.tau_s = half_life_s / LN2
        self.prior_bp = prior_bp
        self.warmup_s = warmup_s
        self.last_mid = 0.0
        self.last_ns = 0
        self.sum_r2 = 0.0
        self.sum_dt = 0.0

    def update(self, mid: float, now_ns: int) -> None:
        """Add the return from the previous mid to ``mid`` observed at ``now_ns`` (monotonic)."""
        if mid <= 0.0:
            return
        if self.last_mid > 0.0:
            dt = (now_ns - self.last_ns) * 1e-9
            if dt < 0.0:
                dt = 0.0
            decay = math.exp(-dt / self.tau_s)
            r = math.log(mid / self.last_mid)
            self.sum_r2 = self.sum_r2 * decay + r * r
            self.sum_dt = self.sum_dt * decay + dt
        self.last_mid = mid
        self.last_ns = now_ns

    @property
    def warm(self) -> bool:
        return self.sum_dt >= self.warmup_s and self.sum_dt > 0.0

    @property
    def sigma_bp(self) -> float:
        """Standard deviation of a one-second log return, in bp (the prior until warm)."""
        if not self.warm:
            return self.prior_bp
        return math.sqrt(self.sum_r2 / self.sum_dt) * 1e4
