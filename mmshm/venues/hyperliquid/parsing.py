"""Hyperliquid WebSocket messages -> fixed-point tuples.

Messages are ``{"channel": .., "data": ..}``. We use ``l2Book`` (a *full* snapshot of the
top levels each time: ``levels = [[bids best first], [asks best first]]``, each level
``{"px": str, "sz": str, "n": int}``) and ``trades`` (a list of fills with ``px``, ``sz``,
``side`` "B" = buy aggressor / "A" = sell aggressor, ``tid``, ``time`` ms). Hyperliquid
sends a few messages a second, so parsing is plain Python on orjson; the exactness rules
are the project's: decimal strings go straight to integer ticks/lots through the
instrument spec, and anything malformed, negative, off-grid or overflowing raises
:class:`ParseError` with a reason the caller counts.
"""
from __future__ import annotations

from typing import NamedTuple

import orjson

from mmshm.instruments import InstrumentError, InstrumentSpec, OffGridError

#: Channels we parse; ``subscriptionResponse`` and ``pong`` are acknowledged and ignored.
CHANNEL_BOOK = "l2Book"
CHANNEL_TRADES = "trades"
CONTROL_CHANNELS = ("subscriptionResponse", "pong", "error")


class ParseError(ValueError):
    """A message we must drop; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class L2Snapshot(NamedTuple):
    coin: str
    time_ms: int
    bids: list[tuple[int, int]]   # (ticks, lots), best first
    asks: list[tuple[int, int]]
    orders: tuple[list[int], list[int]]  # resting order counts per level (``n``)


class Trade(NamedTuple):
    coin: str
    tid: int
    time_ms: int
    px: int        # ticks
    qty: int       # lots
    buy: bool      # aggressor side


def subscription_messages(coin: str) -> list[str]:
    """The subscribe frames for one coin's book and trades."""
    return [orjson.dumps({"method": "subscribe", "subscription": {"type": t, "coin": coin}}).decode()
            for t in (CHANNEL_BOOK, CHANNEL_TRADES)]


def split_message(raw: bytes | str) -> tuple[str, object]:
    """``(channel, data)`` of one frame; ParseError("json"/"schema")."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ParseError("json", str(e)) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("channel"), str):
        raise ParseError("schema", "no channel")
    return msg["channel"], msg.get("data")


def _price(spec: InstrumentSpec, text: object) -> int:
    v = _fixed(spec.price_to_ticks, text)
    if v <= 0:
        raise ParseError("negative", f"price {text!r}")
    return v


def _qty(spec: InstrumentSpec, text: object) -> int:
    v = _fixed(spec.qty_to_lots, text)
    if v < 0:
        raise ParseError("negative", f"size {text!r}")
    return v


def _fixed(conv, text: object) -> int:
    if not isinstance(text, str):
        raise ParseError("schema", f"number not a string: {text!r}")
    try:
        return conv(text)
    except OffGridError as e:
        raise ParseError("offgrid", str(e)) from None
    except InstrumentError as e:
        reason = "overflow" if "overflow" in str(e) else "number"
        raise ParseError(reason, str(e)) from None


def parse_l2book(spec: InstrumentSpec, data: object) -> L2Snapshot:
    """An ``l2Book`` data object as an exact snapshot (sides must be strictly ordered)."""
    if not isinstance(data, dict):
        raise ParseError("schema", "l2Book data not an object")
    coin, levels, t = data.get("coin"), data.get("levels"), data.get("time")
    if coin != spec.symbol:
        raise ParseError("coin", f"{coin!r} is not {spec.symbol!r}")
    if not (isinstance(levels, list) and len(levels) == 2 and all(isinstance(s, list) for s in levels)):
        raise ParseError("schema", "levels must be [bids, asks]")
    if not isinstance(t, int) or t < 0:
        raise ParseError("schema", "time")
    sides: list[list[tuple[int, int]]] = [[], []]
    counts: tuple[list[int], list[int]] = ([], [])
    for i, side in enumerate(levels):
        prev = None
        for lvl in side:
            if not isinstance(lvl, dict):
                raise ParseError("schema", "level not an object")
            px, sz = _price(spec, lvl.get("px")), _qty(spec, lvl.get("sz"))
            if sz == 0:
                raise ParseError("schema", "zero size level in a snapshot")
            if prev is not None and (px >= prev if i == 0 else px <= prev):
                raise ParseError("order", "levels not strictly ordered")
            prev = px
            sides[i].append((px, sz))
            n = lvl.get("n", 0)
            counts[i].append(n if isinstance(n, int) and n >= 0 else 0)
    return L2Snapshot(coin, t, sides[0], sides[1], counts)


def parse_trades(spec: InstrumentSpec, data: object) -> list[Trade]:
    """A ``trades`` data list (a bad entry rejects the message: it is one venue push)."""
    if not isinstance(data, list):
        raise ParseError("schema", "trades data not a list")
    out: list[Trade] = []
    for tr in data:
        if not isinstance(tr, dict):
            raise ParseError("schema", "trade not an object")
        if tr.get("coin") != spec.symbol:
            raise ParseError("coin", f"{tr.get('coin')!r} is not {spec.symbol!r}")
        side, tid, t = tr.get("side"), tr.get("tid"), tr.get("time")
        if side not in ("A", "B") or not isinstance(tid, int) or not isinstance(t, int) or tid < 0 or t < 0:
            raise ParseError("schema", "trade side/tid/time")
        qty = _qty(spec, tr.get("sz"))
        if qty == 0:
            raise ParseError("schema", "zero trade size")
        out.append(Trade(spec.symbol, tid, t, _price(spec, tr.get("px")), qty, side == "B"))
    return out


__all__ = ["ParseError", "L2Snapshot", "Trade", "subscription_messages", "split_message",
           "parse_l2book", "parse_trades", "CHANNEL_BOOK", "CHANNEL_TRADES"]
