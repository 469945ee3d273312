"""Ladder: several levels per side, spaced in bp, sized in lots within position room."""
from __future__ import annotations

from mmshm.strategy.rounding import min_lots, pad_up, post_only_ask, post_only_bid, round_ask, round_bid


def side_prices(fv: float, center_bp: float, half_bp: float, spacing_bp: float, levels: int,
                is_bid: bool, best_bid: int, best_ask: int) -> list[int]:
    """Integer prices of up to ``levels`` levels, strictly moving away from the touch.

    Level i sits at fv·(1 ∓ (half + i·spacing)/1e4 ± center/1e4); rounding happens once
    here, post-only clamps and strict monotonicity are then enforced in integer ticks.
    """
    out: list[int] = []
    prev = 0
    for i in range(levels):
        off = half_bp + i * spacing_bp
        if is_bid:
            px = round_bid(fv * (1.0 + (center_bp - off) * 1e-4))
            if px == 0:
                break
            px = post_only_bid(px, best_ask)
            if i and px > prev - 1:
                px = prev - 1
            if px < 1:
                break
        else:
            px = round_ask(fv * (1.0 + (center_bp + off) * 1e-4))
            if px == 0:
                break
            px = post_only_ask(px, best_bid)
            if i and px < prev + 1:
                px = prev + 1
        out.append(px)
        prev = px
    return out


def side_sizes(prices: list[int], sizes: tuple[int, ...], room: int, max_order: int, venue_max: int,
               min_qty: int, min_notional: int, quote_per_tick_lot: float, pad: float) -> list[int]:
    """Lots per level; stops at the first level that cannot be sized within the room.

    ``room`` is how many lots this side may add before breaching the position limit;
    ``max_order`` and ``venue_max`` cap each order (0 venue_max = none).
    """
    cap = max_order if venue_max <= 0 else min(max_order, venue_max)
    out: list[int] = []
    for i, px in enumerate(prices):
        q = min(sizes[i], cap)
        need = min_lots(px, min_qty, min_notional, quote_per_tick_lot)
        if q < need:
            q = pad_up(need, pad)
        if q > cap or q > room or q <= 0:
            break
        out.append(q)
        room -= q
    return out
