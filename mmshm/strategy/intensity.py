"""Online fit of the order-arrival intensity λ(δ) = A·exp(-k·δ) from public trades.

Each trade is put in a bucket by its distance δ (bp) from the mid just before it; bucket
counts decay exponentially with the fit window, so ``count / decayed time`` is an arrival
rate per bucket. A weighted log-linear regression of ln λ on δ over the buckets with
enough trades gives ln A (intercept) and -k (slope). The fit is refused (returns None)
when fewer than ``min_buckets`` buckets qualify or the slope is not negative, so a thin
or odd window never hands the models a nonsense k; the previous fit stays in force.
"""
from __future__ import annotations

import math

import numpy as np

from mmshm.strategy.volatility import LN2


class ArrivalFitter:
    """Bucketed, exponentially windowed trade counts and their log-linear fit."""

    def __init__(self, bucket_bp: float = 0.5, buckets: int = 20, half_life_s: float = 300.0,
                 min_count: float = 3.0, min_buckets: int = 3) -> None:
        if bucket_bp <= 0 or buckets < 2 or half_life_s <= 0 or min_buckets < 2:
            raise ValueError("invalid arrival fitter parameters")
        self.bucket_bp = bucket_bp
        self.tau_s = half_life_s / LN2
        self.min_count = min_count
        self.min_buckets = min_buckets
        self.counts = np.zeros(buckets)
        self.centers = (np.arange(buckets) + 0.5) * bucket_bp
        self.time_s = 0.0
        self.last_ns = 0
        self.dropped = 0
        self.a: float | None = None
        self.k: float | None = None

    def _advance(self, now_ns: int) -> None:
        if self.last_ns and now_ns > self.last_ns:
            dt = (now_ns - self.last_ns) * 1e-9
            d = math.exp(-dt / self.tau_s)
            self.counts *= d
            self.time_s = self.time_s * d + dt
        if now_ns > self.last_ns:
            self.last_ns = now_ns

    def add_trade(self, distance_bp: float, now_ns: int) -> None:
        """Count a trade at ``distance_bp`` (>= 0) from mid; beyond the last bucket is dropped."""
        self._advance(now_ns)
        if not (distance_bp >= 0.0) or not math.isfinite(distance_bp):
            self.dropped += 1
            return
        i = int(distance_bp / self.bucket_bp)
        if i >= len(self.counts):
            self.dropped += 1
            return
        self.counts[i] += 1.0

    def fit(self, now_ns: int) -> tuple[float, float] | None:
        """(A per second, k per bp), or None when the window cannot support a fit."""
        self._advance(now_ns)
        if self.time_s <= 0.0:
            return None
        ok = self.counts >= self.min_count
        if int(ok.sum()) < self.min_buckets:
            return None
        x = self.centers[ok]
        w = self.counts[ok]
        y = np.log(w / (self.time_s * self.bucket_bp))   # intensity per bp of distance per second
        sw = w.sum()
        xm = (w * x).sum() / sw
        ym = (w * y).sum() / sw
        var = (w * (x - xm) ** 2).sum()
        if var <= 0.0:
            return None
        slope = (w * (x - xm) * (y - ym)).sum() / var
        if not slope < 0.0:
            return None
        k = -slope
        # The buckets measure the density of trades at δ, -dλ/dδ = A·k·e^{-kδ}: intercept ln(A·k).
        a = math.exp(ym - slope * xm) / k
        if not (math.isfinite(a) and math.isfinite(k) and a > 0.0):
            return None
        self.a, self.k = a, k
        return a, k
