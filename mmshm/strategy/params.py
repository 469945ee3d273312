"""Quoter parameters: one frozen dataclass, validated once, copied into the C struct.

Units (chosen so every model is dimensionally consistent without hidden constants):
prices inside the models are in basis points of the fair value; volatility ``sigma`` is
in bp per sqrt(second) (the horizon is one second); ``gamma`` is per (bp · unit),
``k`` per bp, ``A`` per second. Inventory ``q`` is in *units*: position lots divided by
``unit_lots`` (by default the size of the first ladder level), so Avellaneda–Stoikov
and Guéant–Lehalle–Fernandez-Tapia see inventory in the size they quote.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

from mmshm.records import TARGET_LEVELS


class Model(IntEnum):
    """Pricing models the quoter can run (config ``[quoter] model``)."""
    FIXED = 0   # fixed half-spread in bp plus linear inventory skew
    AS = 1      # Avellaneda–Stoikov
    GLFT = 2    # Guéant–Lehalle–Fernandez-Tapia asymptotic closed form


class FairValue(IntEnum):
    MID = 0
    MICROPRICE = 1


class PullReason(IntEnum):
    """Why a cycle pulled every quote (0 = quoted). Exposed for the status line."""
    NONE = 0
    BOOK_NOT_LIVE = 1
    BOOK_EMPTY = 2
    BOOK_CROSSED = 3
    BOOK_OLD = 4
    MODE_HALT = 5
    PAUSED = 6
    RISK_PULL = 7
    CASCADE = 8
    MODEL_INVALID = 9
    NO_SIDE = 10      # nothing left to quote after limits / reduce-only
    BOOK_BUSY = 11    # Quoter.step: no consistent read of the book row (writer stuck mid-write)
    CONTROL_BUSY = 12 # Quoter.step: no consistent read of a control row: no quoting without limits


#: TARGET_ROW.flags bits written by the quoter.
TARGET_FLAG_PULL = 1 << 0
TARGET_FLAG_REDUCE_ONLY = 1 << 1
TARGET_FLAG_WIDENED = 1 << 2

#: CONTROL_ROW.flags bits read by the quoter (written by risk, see mmshm.risk.modes).
CONTROL_FLAG_PAUSED = 1 << 0
CONTROL_FLAG_PULL = 1 << 1
CONTROL_FLAG_ALERT = 1 << 2


def _default_sizes() -> tuple[int, ...]:
    return (1, 1, 2, 2, 3)


@dataclass(frozen=True)
class QuoterParams:
    """Everything the quote cycle needs besides market data, position and control."""

    model: Model = Model.FIXED
    fair_value: FairValue = FairValue.MICROPRICE
    # --- fixed-spread model
    half_spread_bp: float = 1.0   # sim market (~1 bp/sqrt(s)): filled a few times a minute
    # --- inventory skew (all models): fair value shifted by -skew_bp * position / max_position
    inventory_skew_bp: float = 2.0
    # --- Avellaneda–Stoikov / GLFT
    gamma: float = 0.1           # risk aversion per (bp · unit)
    horizon_s: float = 60.0      # T - t for Avellaneda–Stoikov, seconds
    arrival_a: float = 1.0       # A of lambda(d) = A exp(-k d), per second (initial; fitted online)
    arrival_k: float = 0.5       # k, per bp (initial; fitted online)
    glft_delta: float = 1.0      # order size Delta in units
    unit_lots: int = 0           # lots per inventory unit; 0 = first ladder level size
    # --- clamps (bp of fair value, per side)
    min_half_spread_bp: float = 0.5
    max_half_spread_bp: float = 100.0
    # --- volatility (EWMA of squared log returns per second)
    vol_half_life_s: float = 30.0
    vol_prior_bp: float = 1.0    # sigma used until vol_warmup_s of data has been seen
    vol_warmup_s: float = 5.0
    # --- ladder
    levels: int = 3
    level_spacing_bp: float = 1.0
    level_sizes: tuple[int, ...] = field(default_factory=_default_sizes)  # lots per level
    # --- signals
    imbalance_levels: int = 5
    imbalance_weight_bp: float = 0.0   # fair value shift per unit of imbalance
    leadlag_weight: float = 0.0        # fraction of the lead-lag deviation applied
    leadlag_max_bp: float = 10.0
    leadlag_half_life_s: float = 30.0  # slow EWMA of the basis between venues
    leadlag_max_age_ms: float = 1000.0 # reference older than this: signal 0
    cascade_half_life_s: float = 2.0
    cascade_through_scale_bp_s: float = 5.0   # trade-through velocity giving 1.0
    cascade_volume_ratio_scale: float = 5.0   # fast/slow volume rate giving 1.0
    cascade_vol_burst_scale: float = 3.0      # fast/slow vol ratio giving 1.0
    cascade_widen_at: float = 1.0
    cascade_widen_bp: float = 5.0
    cascade_pull_at: float = 1.5
    # --- control
    widen_bp: float = 5.0              # used in WIDEN mode when the control row gives 0
    max_book_age_ms: float = 5000.0    # book older than this (monotonic): pull; 0 = off
    min_qty_pad: float = 0.1           # quantities below venue min are raised to min * (1 + pad)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.levels <= TARGET_LEVELS:
            problems.append(f"levels must be in 1..{TARGET_LEVELS}, got {self.levels}")
        if len(self.level_sizes) < self.levels:
            problems.append(f"level_sizes needs {self.levels} entries, got {len(self.level_sizes)}")
        if any(int(s) <= 0 for s in self.level_sizes):
            problems.append("level_sizes must be positive lots")
        if not (self.min_half_spread_bp > 0 and self.max_half_spread_bp >= self.min_half_spread_bp):
            problems.append("need 0 < min_half_spread_bp <= max_half_spread_bp")
        for name in ("half_spread_bp", "gamma", "horizon_s", "arrival_a", "arrival_k", "glft_delta",
                     "vol_half_life_s", "vol_prior_bp", "leadlag_half_life_s", "cascade_half_life_s",
                     "cascade_through_scale_bp_s", "cascade_volume_ratio_scale",
                     "cascade_vol_burst_scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                problems.append(f"{name} must be finite and > 0, got {v}")
        for name in ("inventory_skew_bp", "level_spacing_bp", "imbalance_weight_bp", "leadlag_weight",
                     "leadlag_max_bp", "leadlag_max_age_ms", "cascade_widen_at", "cascade_widen_bp",
                     "cascade_pull_at", "widen_bp", "max_book_age_ms", "min_qty_pad", "vol_warmup_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                problems.append(f"{name} must be finite and >= 0, got {v}")
        if not 1 <= self.imbalance_levels <= 20:
            problems.append("imbalance_levels must be in 1..20")
        tau = self.vol_half_life_s / math.log(2.0)
        if self.vol_warmup_s >= tau:
            problems.append(f"vol_warmup_s must be below half_life/ln2 = {tau:.3g} s or vol never warms up")
        if self.unit_lots < 0:
            problems.append("unit_lots must be >= 0")
        if problems:
            raise ValueError("invalid quoter parameters: " + "; ".join(problems))
        object.__setattr__(self, "model", Model(self.model))
        object.__setattr__(self, "fair_value", FairValue(self.fair_value))
        object.__setattr__(self, "level_sizes", tuple(int(s) for s in self.level_sizes))

    @property
    def inventory_unit(self) -> int:
        """Lots per inventory unit q (models see position / inventory_unit)."""
        return self.unit_lots or self.level_sizes[0]


@dataclass(frozen=True)
class InstrumentSpec:
    """The parts of an instrument the quoter needs (from INSTRUMENT_ROW or mmshm.instruments).

    ``quote_per_tick_lot`` is the quote-asset value of one tick times one lot, in
    FEE_SCALE units (tick size * lot size * 1e8), used for the min-notional check.
    """

    min_qty: int = 1
    max_qty: int = 0            # 0 = no venue maximum
    min_notional: int = 0       # FEE_SCALE units of the quote asset
    quote_per_tick_lot: float = 1.0

    def __post_init__(self) -> None:
        if self.min_qty < 1 or self.max_qty < 0 or self.min_notional < 0:
            raise ValueError(f"invalid instrument spec {self}")
        if not (math.isfinite(self.quote_per_tick_lot) and self.quote_per_tick_lot > 0):
            raise ValueError("quote_per_tick_lot must be finite and > 0")

    @classmethod
    def from_instrument_row(cls, row) -> "InstrumentSpec":
        """From an INSTRUMENT_ROW record (tick = mantissa * 10**exp)."""
        from mmshm.records import FEE_SCALE
        tick = int(row["tick_mantissa"]) * 10.0 ** int(row["price_exp"])
        lot = int(row["lot_mantissa"]) * 10.0 ** int(row["qty_exp"])
        return cls(min_qty=max(1, int(row["min_qty"])), max_qty=int(row["max_qty"]),
                   min_notional=int(row["min_notional"]), quote_per_tick_lot=tick * lot * FEE_SCALE)
