"""The quote cycle in plain Python: book top in, one TARGET_ROW out.

This is the readable statement of what ``mmshm._native.quoter.Quoter.cycle`` does in C;
the tests hold the two to the same output on random inputs and ``bench/quoter.py`` uses
this one as the peer. The process uses the native one.

Order of a cycle: (1) the book must be LIVE, two-sided, uncrossed and fresh, else pull;
(2) volatility, imbalance, lead-lag and cascade severity are updated (also when the
control then pulls, so they stay warm); (3) pause, HALT/FLATTEN, the risk pull flag and
a cascade at or above ``cascade_pull_at`` pull; (4) the model gives reservation offset
and half-spread in bp, plus inventory skew, WIDEN and cascade widening; (5) prices are
rounded once (bids down, asks up), clamped post-only and made strictly monotone;
(6) sizes fit the position room (REDUCE_ONLY: only the reducing side, at most the
position), the order limit, venue min qty (padded) and min notional.
"""
from __future__ import annotations

import math

from mmshm.records import BOOK_DEPTH, MdStatus, Mode
from mmshm.strategy import fairvalue, ladder, models
from mmshm.strategy.params import (CONTROL_FLAG_PAUSED, CONTROL_FLAG_PULL, TARGET_FLAG_PULL,
                                   TARGET_FLAG_REDUCE_ONLY, TARGET_FLAG_WIDENED, FairValue,
                                   InstrumentSpec, Model, PullReason, QuoterParams)
from mmshm.strategy.signals import CascadeDetector, LeadLag, imbalance
from mmshm.strategy.volatility import EwmaVolatility


class PyQuoter:
    """Reference quoter for one instrument (same API as the native Quoter, records in/out)."""

    def __init__(self, params: QuoterParams, spec: InstrumentSpec, instrument: int = 0) -> None:
        self.instrument = instrument
        self.spec = spec
        self.set_params(params)

    def set_params(self, params: QuoterParams) -> None:
        """New parameters; signal state restarts (vol warm-up included)."""
        self.p = params
        self.arrival_a = params.arrival_a
        self.arrival_k = params.arrival_k
        self.vol = EwmaVolatility(params.vol_half_life_s, params.vol_prior_bp, params.vol_warmup_s)
        self.leadlag = LeadLag(params.leadlag_half_life_s, params.leadlag_max_age_ms, params.leadlag_max_bp)
        self.cascade = CascadeDetector(params.cascade_half_life_s, params.vol_half_life_s,
                                       params.cascade_through_scale_bp_s, params.cascade_volume_ratio_scale,
                                       params.cascade_vol_burst_scale)
        self.best_bid = self.best_ask = 0
        self.imbalance = 0.0
        self.fair_value = 0.0
        self.res_bp = self.half_bp = 0.0
        self.reason = PullReason.NONE

    def set_arrival(self, a: float, k: float) -> None:
        if not (a > 0 and k > 0 and math.isfinite(a) and math.isfinite(k)):
            raise ValueError(f"arrival parameters must be finite and > 0, got A={a} k={k}")
        self.arrival_a, self.arrival_k = a, k

    def on_trade(self, side: int, px: int, qty: int, now_ns: int) -> float:
        """Feed a public trade; returns its distance from our mid in bp (nan if no book yet)."""
        self.cascade.on_trade(side, px, qty, self.best_bid, self.best_ask, now_ns)
        if self.best_bid <= 0 or self.best_ask <= self.best_bid:
            return math.nan
        m = 0.5 * (self.best_bid + self.best_ask)
        return abs(px - m) / m * 1e4

    def on_reference(self, bid_px: int, ask_px: int, now_ns: int) -> None:
        self.leadlag.on_reference(bid_px, ask_px, now_ns)

    def _pull(self, out, reason: PullReason) -> int:
        out["flags"] = TARGET_FLAG_PULL
        out["n_bids"] = 0
        out["n_asks"] = 0
        for f in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
            out[f][:] = 0
        self.reason = reason
        return int(reason)

    def cycle(self, book, ctrl_global, ctrl_inst, position: int, now_ns: int, out) -> int:
        """One cycle; ``out`` is a TARGET_ROW record written in place. Returns a PullReason."""
        p = self.p
        out["instrument"] = self.instrument
        out["md_seq"] = book["md_seq"]
        out["md_publish_mono"] = book["publish_mono"]
        out["quote_mono"] = now_ns
        nb, na = min(int(book["n_bids"]), BOOK_DEPTH), min(int(book["n_asks"]), BOOK_DEPTH)
        if int(book["status"]) != MdStatus.LIVE:
            return self._pull(out, PullReason.BOOK_NOT_LIVE)
        if nb == 0 or na == 0:
            return self._pull(out, PullReason.BOOK_EMPTY)
        bb, ba = int(book["bid_px"][0]), int(book["ask_px"][0])
        if bb <= 0 or bb >= ba:
            return self._pull(out, PullReason.BOOK_CROSSED)
        pub = int(book["publish_mono"])
        if p.max_book_age_ms > 0 and pub > 0 and now_ns - pub > p.max_book_age_ms * 1e6:
            return self._pull(out, PullReason.BOOK_OLD)
        self.best_bid, self.best_ask = bb, ba
        # (2) signals
        m = fairvalue.mid(bb, ba)
        self.vol.update(m, now_ns)
        self.cascade.on_mid(m, now_ns)
        sigma = self.vol.sigma_bp
        self.imbalance = imbalance(book["bid_qty"], book["ask_qty"], nb, na, p.imbalance_levels)
        ll = self.leadlag.update(m, now_ns)
        severity = self.cascade.evaluate(now_ns, self.vol)
        # (3) control
        mode = max(int(ctrl_global["mode"]), int(ctrl_inst["mode"]))
        cflags = int(ctrl_global["flags"]) | int(ctrl_inst["flags"])
        if cflags & CONTROL_FLAG_PAUSED:
            return self._pull(out, PullReason.PAUSED)
        if mode >= Mode.HALT:
            return self._pull(out, PullReason.MODE_HALT)
        if cflags & CONTROL_FLAG_PULL:
            return self._pull(out, PullReason.RISK_PULL)
        if severity >= p.cascade_pull_at:
            return self._pull(out, PullReason.CASCADE)
        # (4) model
        if p.fair_value == FairValue.MICROPRICE:
            fv = fairvalue.microprice(bb, int(book["bid_qty"][0]), ba, int(book["ask_qty"][0]))
        else:
            fv = m
        self.fair_value = fv
        adj = self.imbalance * p.imbalance_weight_bp + p.leadlag_weight * ll
        max_pos = int(ctrl_inst["max_position"])
        q = position / p.inventory_unit
        if p.model == Model.AS:
            res, half = models.avellaneda_stoikov(q, sigma, p.gamma, self.arrival_k, p.horizon_s)
        elif p.model == Model.GLFT:
            res, half = models.glft(q, sigma, p.gamma, self.arrival_a, self.arrival_k, p.glft_delta)
        else:
            res, half = models.fixed_spread(p.half_spread_bp)
        if max_pos > 0:
            qf = max(-1.0, min(1.0, position / max_pos))
            res -= p.inventory_skew_bp * qf
        half = max(p.min_half_spread_bp, min(p.max_half_spread_bp, half))
        flags = 0
        if mode == Mode.WIDEN:
            w = int(ctrl_inst["widen_bp"]) or int(ctrl_global["widen_bp"])
            half += w if w > 0 else p.widen_bp
            flags |= TARGET_FLAG_WIDENED
        if severity >= p.cascade_widen_at:
            half += p.cascade_widen_bp
            flags |= TARGET_FLAG_WIDENED
        center = adj + res
        self.res_bp, self.half_bp = res, half
        if not (math.isfinite(center) and math.isfinite(half) and math.isfinite(fv)):
            return self._pull(out, PullReason.MODEL_INVALID)
        # (5) prices
        bids = ladder.side_prices(fv, center, half, p.level_spacing_bp, p.levels, True, bb, ba)
        asks = ladder.side_prices(fv, center, half, p.level_spacing_bp, p.levels, False, bb, ba)
        # (6) sizes
        bid_room = max_pos - position
        ask_room = max_pos + position
        if mode == Mode.REDUCE_ONLY:
            bid_room = min(bid_room, max(0, -position))
            ask_room = min(ask_room, max(0, position))
            flags |= TARGET_FLAG_REDUCE_ONLY
        max_order = int(ctrl_inst["max_order_qty"])
        s = self.spec
        bq = ladder.side_sizes(bids, p.level_sizes, bid_room, max_order, s.max_qty, s.min_qty,
                               s.min_notional, s.quote_per_tick_lot, p.min_qty_pad)
        aq = ladder.side_sizes(asks, p.level_sizes, ask_room, max_order, s.max_qty, s.min_qty,
                               s.min_notional, s.quote_per_tick_lot, p.min_qty_pad)
        if not bq and not aq:
            return self._pull(out, PullReason.NO_SIDE)
        for f in ("bid_px", "bid_qty", "ask_px", "ask_qty"):
            out[f][:] = 0
        out["n_bids"] = len(bq)
        out["n_asks"] = len(aq)
        out["bid_px"][: len(bq)] = bids[: len(bq)]
        out["bid_qty"][: len(bq)] = bq
        out["ask_px"][: len(aq)] = asks[: len(aq)]
        out["ask_qty"][: len(aq)] = aq
        out["flags"] = flags
        self.reason = PullReason.NONE
        return 0

    def signals(self) -> dict:
        """Current signal and model values for the dashboard / status line."""
        c = self.cascade
        return {
            "fair_value": self.fair_value, "sigma_bp": self.vol.sigma_bp, "imbalance": self.imbalance,
            "leadlag_bp": self.leadlag.value, "cascade": c.severity, "cascade_through": c.c_through,
            "cascade_flow": c.c_flow, "cascade_vol": c.c_vol, "res_bp": self.res_bp, "half_bp": self.half_bp,
            "arrival_a": self.arrival_a, "arrival_k": self.arrival_k, "reason": int(self.reason),
        }

