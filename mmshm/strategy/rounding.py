"""The one place model floats become integer ticks and lots.

Bids round DOWN and asks round UP (never improve a price by rounding), then post-only
clamps keep every quote off the opposite best: bid <= best_ask - 1, ask >= best_bid + 1.
Given a positive half-spread this preserves best own bid < best own ask: floor(x) <= x
< y <= ceil(y), and the clamps only move bids down and asks up.
"""
from __future__ import annotations

import math

#: Prices beyond this are treated as model garbage (they would overflow int64 later).
MAX_PRICE_TICKS = float(1 << 62)


def round_bid(px: float) -> int:
    """Floor to a tick; 0 (no quote) for anything not positive or not finite."""
    if not (px >= 1.0 and px < MAX_PRICE_TICKS):
        return 0
    return int(math.floor(px))


def round_ask(px: float) -> int:
    """Ceil to a tick; 0 (no quote) for anything not positive or not finite."""
    if not (px >= 1.0 and px < MAX_PRICE_TICKS):
        return 0
    return int(math.ceil(px))


def post_only_bid(bid: int, best_ask: int) -> int:
    return min(bid, best_ask - 1)


def post_only_ask(ask: int, best_bid: int) -> int:
    return max(ask, best_bid + 1)


def min_lots(px: int, min_qty: int, min_notional: int, quote_per_tick_lot: float) -> int:
    """Smallest quantity the venue accepts at ``px``: its min qty and its min notional."""
    need = min_qty
    if min_notional > 0:
        by_notional = math.ceil(min_notional / (px * quote_per_tick_lot))
        if by_notional > need:
            need = by_notional
    return int(need)


def pad_up(need: int, pad: float) -> int:
    """A size below the venue minimum is raised to minimum·(1 + pad), so a partial fill
    does not leave a remainder the venue would reject."""
    return int(math.ceil(need * (1.0 + pad)))
