"""Position and order limits, and their scaling after a re-entry."""
from __future__ import annotations

import math
from fractions import Fraction

from mmshm.risk.params import InstrumentRisk

FULL_SCALE_BP = 10_000


def kelly_max_position(equity: int, spec: InstrumentRisk, price_ticks: Fraction | int | None) -> int:
    """``equity / (leverage · price) · kelly_fraction`` in lots (the issue's formula).

    ``equity`` in FEE_SCALE units, price in ticks (converted with the exact tick·lot value);
    0 when there is no price yet or equity is not positive (no quoting without a limit).
    """
    if price_ticks is None or price_ticks <= 0 or equity <= 0:
        return 0
    lot_value = Fraction(price_ticks) * spec.quote_per_tick_lot     # FEE_SCALE per lot
    lots = Fraction(equity) / (Fraction(spec.leverage) * lot_value) * Fraction(spec.kelly_fraction)
    return max(0, math.floor(lots))


def base_max_position(equity: int, spec: InstrumentRisk, price_ticks: Fraction | int | None) -> int:
    """The configured max position, or the Kelly one when none is configured."""
    return spec.max_position if spec.max_position > 0 else kelly_max_position(equity, spec, price_ticks)


def scaled(limit: int, scale_bp: int) -> int:
    """A limit times scale_bp / 10000, rounded down but at least 1 lot of a non-zero limit
    (a scaled limit never grows, and 50% of a 1-lot limit still lets the book be worked)."""
    if limit <= 0:
        return 0
    return max(1, limit * scale_bp // FULL_SCALE_BP)
