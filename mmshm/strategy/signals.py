"""Signals: order-book imbalance, lead-lag from a reference venue, cascade detector.

Each signal keeps its last value readable (``value`` / ``severity`` and components) for
the dashboard and the status line. Times are monotonic ns; decays are exponential with
configurable half-lives, applied on elapsed time so irregular event spacing is handled.
"""
from __future__ import annotations

import math

from mmshm.records import Side
from mmshm.strategy.volatility import LN2, EwmaVolatility


def imbalance(bid_qty, ask_qty, n_bids: int, n_asks: int, levels: int) -> float:
    """Top-N size imbalance (Σbid - Σask) / (Σbid + Σask) in [-1, 1]; 0 on an empty book."""
    b = sum(int(x) for x in bid_qty[: min(levels, n_bids)])
    a = sum(int(x) for x in ask_qty[: min(levels, n_asks)])
    total = b + a
    return (b - a) / total if total > 0 else 0.0


class LeadLag:
    """Deviation of the reference venue's mid from its usual basis to ours, in bp.

    basis = ln(ref_mid / own_mid)·1e4 (any constant tick-size ratio cancels out in the
    slow EWMA); the signal is the current basis minus its EWMA *before* this update: when
    the leader moves and we have not yet, the signal points where our mid should go.
    A reference older than ``max_age_ns`` gives 0.
    """

    __slots__ = ("tau_s", "max_age_ns", "max_bp", "ref_mid", "ref_ns", "basis", "last_ns", "value")

    def __init__(self, half_life_s: float, max_age_ms: float, max_bp: float) -> None:
        self.tau_s = half_life_s / LN2
        self.max_age_ns = int(max_age_ms * 1e6)
        self.max_bp = max_bp
        self.ref_mid = 0.0
        self.ref_ns = 0
        self.basis = math.nan
        self.last_ns = 0
        self.value = 0.0

    def on_reference(self, bid_px: int, ask_px: int, now_ns: int) -> None:
        if bid_px > 0 and ask_px > bid_px:
            self.ref_mid = 0.5 * (bid_px + ask_px)
            self.ref_ns = now_ns

    def update(self, own_mid: float, now_ns: int) -> float:
        """Recompute against our mid at ``now_ns``; returns the clamped deviation in bp."""
        if self.ref_mid <= 0.0 or own_mid <= 0.0 or now_ns - self.ref_ns > self.max_age_ns:
            self.value = 0.0
            return 0.0
        b = math.log(self.ref_mid / own_mid) * 1e4
        if math.isnan(self.basis):
            self.basis = b
            dev = 0.0
        else:
            dt = (now_ns - self.last_ns) * 1e-9
            if dt < 0.0:
                dt = 0.0
            dev = b - self.basis
            w = 1.0 - math.exp(-dt / self.tau_s)
            self.basis += w * (b - self.basis)
        self.last_ns = now_ns
        self.value = max(-self.max_bp, min(self.max_bp, dev))
        return self.value


class CascadeDetector:
    """Falling-knife detector: severity = through + flow + vol burst (each ~1 when alarming).

    - through: trade-through velocity, bp per second that aggressive trades printed beyond
      the best price on their side (a sweep), over a fast window, / ``through_scale``;
    - flow: one-sidedness |B-S|/(B+S) of aggressive volume in the fast window times the
      fast/slow volume-rate ratio, / ``volume_ratio_scale``;
    - vol: (fast sigma / slow sigma - 1) above 0, / ``vol_burst_scale``.
    Rates are decayed sums over decayed elapsed time, so silence lowers them.
    """

    __slots__ = ("tau_f", "tau_s", "through_scale", "volume_scale", "burst_scale", "last_ns",
                 "through", "buy", "sell", "t_fast", "slow_vol", "t_slow", "fast_sigma",
                 "c_through", "c_flow", "c_vol", "severity")

    def __init__(self, half_life_s: float, slow_half_life_s: float, through_scale: float,
                 volume_scale: float, burst_scale: float) -> None:
        self.tau_f = half_life_s / LN2
        self.tau_s = slow_half_life_s / LN2
        self.through_scale = through_scale
        self.volume_scale = volume_scale
        self.burst_scale = burst_scale
        self.last_ns = 0
        self.through = self.buy = self.sell = self.t_fast = 0.0
        self.slow_vol = self.t_slow = 0.0
        self.fast_sigma = EwmaVolatility(half_life_s, 0.0, 0.0)
        self.c_through = self.c_flow = self.c_vol = self.severity = 0.0

    def _advance(self, now_ns: int) -> None:
        if self.last_ns:
            dt = (now_ns - self.last_ns) * 1e-9
            if dt > 0.0:
                df = math.exp(-dt / self.tau_f)
                ds = math.exp(-dt / self.tau_s)
                self.through *= df
                self.buy *= df
                self.sell *= df
                self.t_fast = self.t_fast * df + dt
                self.slow_vol *= ds
                self.t_slow = self.t_slow * ds + dt
        if now_ns > self.last_ns:
            self.last_ns = now_ns

    def on_trade(self, side: int, px: int, qty: int, best_bid: int, best_ask: int, now_ns: int) -> None:
        """An aggressive public trade; ``best_*`` is our book just before it (0 = unknown)."""
        if qty <= 0 or px <= 0:
            return
        self._advance(now_ns)
        if side == Side.SELL:
            self.sell += qty
            if 0 < px < best_bid:
                self.through += (best_bid - px) / best_bid * 1e4
        elif side == Side.BUY:
            self.buy += qty
            if best_ask > 0 and px > best_ask:
                self.through += (px - best_ask) / best_ask * 1e4
        self.slow_vol += qty

    def on_mid(self, mid: float, now_ns: int) -> None:
        self.fast_sigma.update(mid, now_ns)

    def evaluate(self, now_ns: int, slow_sigma: EwmaVolatility) -> float:
        """Severity at ``now_ns`` (advances the decays)."""
        self._advance(now_ns)
        c_through = 0.0
        c_flow = 0.0
        if self.t_fast > 0.0:
            c_through = self.through / self.t_fast / self.through_scale
            flow = self.buy + self.sell
            if flow > 0.0 and self.slow_vol > 0.0 and self.t_slow > 0.0:
                ratio = (flow / self.t_fast) / (self.slow_vol / self.t_slow)
                c_flow = abs(self.buy - self.sell) / flow * ratio / self.volume_scale
        c_vol = 0.0
        fs = self.fast_sigma
        if slow_sigma.warm and fs.sum_dt > 0.0 and slow_sigma.sum_r2 > 0.0:
            burst = math.sqrt((fs.sum_r2 / fs.sum_dt) / (slow_sigma.sum_r2 / slow_sigma.sum_dt))
            if burst > 1.0:
                c_vol = (burst - 1.0) / self.burst_scale
        self.c_through, self.c_flow, self.c_vol = c_through, c_flow, c_vol
        self.severity = c_through + c_flow + c_vol
        return self.severity
