"""Risk parameters: frozen dataclasses with the defaults of the issue (the config maps onto them).

Every trigger has a threshold and an action and fires when its value is AT OR ABOVE the
threshold (``>=``), never below. Where the issue states a strict bound the default is
chosen so ``>=`` means the same thing: "error burst > 10 per hour" is ``error_burst``
threshold 11 errors in the last hour; "cascade severity > 1.5" is ``>= 1.5`` (a real-valued
severity equal to 1.5 exactly is treated as breached).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from pathlib import Path

from mmshm.records import FEE_SCALE


class Action(IntEnum):
    """What a breached trigger does, least to most severe."""
    ALERT = 0          # flag + log only
    WIDEN = 1          # mode WIDEN while breached
    PULL = 2           # pull quotes while breached (control flag bit1)
    PAUSE = 3          # pause quoting for pause_s (control flag bit0)
    REDUCE_ONLY = 4    # mode REDUCE_ONLY while breached
    HALT = 5           # mode HALT + cancel all, re-entry rules, post-mortem


class TriggerCode(IntEnum):
    """CONTROL_ROW.reason: what set the mode (0 = nothing)."""
    NONE = 0
    DAILY_LOSS = 1
    DRAWDOWN = 2
    POSITION_RUNAWAY = 3
    STALE_MD = 4
    CASCADE = 5
    RATE_LIMIT = 6
    LOSING_FILLS = 7
    ERROR_BURST = 8
    MARGIN_ALERT = 9
    MARGIN_REDUCE = 10
    MARGIN_HALT = 11
    MANUAL = 12
    WATCHDOG = 13
    INVARIANT = 14


@dataclass(frozen=True)
class TriggerSpec:
    threshold: float
    action: Action
    enabled: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"trigger threshold must be finite and >= 0, got {self.threshold}")
        object.__setattr__(self, "action", Action(self.action))


def _t(threshold: float, action: Action) -> TriggerSpec:
    return field(default_factory=lambda: TriggerSpec(threshold, action))


@dataclass(frozen=True)
class RiskParams:
    """Account-level risk parameters; see the module docstring for the ``>=`` rule."""

    initial_equity: int = 10_000 * FEE_SCALE   # quote asset, FEE_SCALE units
    # triggers (value units in the comment)
    daily_loss: TriggerSpec = _t(0.005, Action.HALT)          # loss today / equity at 00:00 UTC
    drawdown: TriggerSpec = _t(0.02, Action.HALT)             # (hwm - equity) / hwm
    position_runaway: TriggerSpec = _t(2.0, Action.HALT)      # |position| / max_position
    stale_md: TriggerSpec = _t(10.0, Action.PULL)             # seconds since the book was last LIVE
    cascade: TriggerSpec = _t(1.5, Action.PULL)               # quoter's cascade severity
    rate_limit: TriggerSpec = _t(2, Action.HALT)              # rate-limit rejects in a row
    losing_fills: TriggerSpec = _t(5, Action.PAUSE)           # losing closing fills in a row
    error_burst: TriggerSpec = _t(11, Action.HALT)            # errors in the last hour (> 10)
    margin_alert: TriggerSpec = _t(0.60, Action.ALERT)        # initial margin / equity
    margin_reduce: TriggerSpec = _t(0.80, Action.REDUCE_ONLY)
    margin_halt: TriggerSpec = _t(0.90, Action.HALT)
    # actions
    pause_s: float = 4 * 3600.0
    widen_bp: int = 5
    # re-entry after a halt
    reentry_wait_s: float = 300.0
    reentry_scale_bp: int = 5_000
    full_limits_after_s: float = 3600.0      # quoting this long without a halt restores 100%
    rehalt_window_s: float = 3600.0          # halted again this soon after re-entry: rest of UTC day
    max_halts_per_day: int = 3               # this many halts in a UTC day: manual resume only
    # bookkeeping
    error_window_s: float = 3600.0
    rate_limit_codes: tuple[int, ...] = (-1003, -1015)
    # not errors: post-only would cross (-5022), unknown order on cancel (-2011/-2013),
    # amend to the price and size the order already has (-5027: two amends crossing in
    # flight; the order is already where we want it), refused locally by our own rate
    # budget / breaker (1: the causes are counted as they happen)
    benign_codes: tuple[int, ...] = (-5022, -2011, -2013, -5027, 1)
    last_fills: int = 10
    dedup_capacity: int = 1 << 20
    postmortem_dir: Path | None = None
    # venue account (mmshm.risk.account): a row older than this is stale, equity then
    # moves with own PnL from the last venue anchor and margin comes from own estimate
    account_max_age_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_equity <= 0:
            raise ValueError("initial_equity must be > 0")
        if not 0 < self.reentry_scale_bp <= 10_000:
            raise ValueError("reentry_scale_bp must be in 1..10000")
        if self.max_halts_per_day < 1 or self.last_fills < 0 or self.dedup_capacity < 1:
            raise ValueError("max_halts_per_day >= 1, last_fills >= 0, dedup_capacity >= 1")
        for name in ("pause_s", "reentry_wait_s", "full_limits_after_s", "rehalt_window_s", "error_window_s",
                     "account_max_age_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")

    def triggers(self) -> dict[str, TriggerSpec]:
        return {name: getattr(self, name) for name in TRIGGER_NAMES}


TRIGGER_NAMES = ("daily_loss", "drawdown", "position_runaway", "stale_md", "cascade", "rate_limit",
                 "losing_fills", "error_burst", "margin_alert", "margin_reduce", "margin_halt")
TRIGGER_CODES = {name: TriggerCode[name.upper()] for name in TRIGGER_NAMES}


@dataclass(frozen=True)
class InstrumentRisk:
    """Per-instrument risk figures.

    ``quote_per_tick_lot``: value of one tick on one lot in FEE_SCALE units of the quote
    asset (tick size · lot size · 1e8), exact. ``max_position`` 0 means derive it from
    equity: ``equity / (leverage · price) · kelly_fraction`` in lots (the issue's formula).
    """

    index: int
    symbol: str
    quote_per_tick_lot: Fraction
    leverage: float = 5.0
    maint_margin_rate: float = 0.004
    max_position: int = 0
    max_order_qty: int = 10
    kelly_fraction: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "quote_per_tick_lot", Fraction(self.quote_per_tick_lot))
        if self.quote_per_tick_lot <= 0 or self.leverage <= 0 or not 0 <= self.maint_margin_rate < 1:
            raise ValueError(f"invalid instrument risk {self}")
        if self.max_position < 0 or self.max_order_qty < 0 or not 0 < self.kelly_fraction <= 1:
            raise ValueError(f"invalid limits for {self.symbol}")

    @classmethod
    def from_instrument_row(cls, row, **kw) -> "InstrumentRisk":
        """From an INSTRUMENT_ROW: tick and lot are mantissa·10^exp, so the value is exact."""
        q = (Fraction(int(row["tick_mantissa"])) * Fraction(10) ** int(row["price_exp"])
             * Fraction(int(row["lot_mantissa"])) * Fraction(10) ** int(row["qty_exp"]) * FEE_SCALE)
        return cls(index=int(row["instrument"]), symbol=bytes(row["symbol"]).rstrip(b"\0").decode(),
                   quote_per_tick_lot=q, **kw)
