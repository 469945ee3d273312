"""Fair value from the top of the book: integer ticks in, float ticks out."""
from __future__ import annotations


def mid(bid_px: int, ask_px: int) -> float:
    """Arithmetic mid in ticks."""
    return 0.5 * (bid_px + ask_px)


def microprice(bid_px: int, bid_qty: int, ask_px: int, ask_qty: int) -> float:
    """Size-weighted mid: leans toward the side with less resting size (it is about to go).

    ``(bid·ask_qty + ask·bid_qty) / (bid_qty + ask_qty)``; the plain mid when both sizes are 0.
    """
    total = bid_qty + ask_qty
    if total <= 0:
        return mid(bid_px, ask_px)
    return (bid_px * float(ask_qty) + ask_px * float(bid_qty)) / float(total)
