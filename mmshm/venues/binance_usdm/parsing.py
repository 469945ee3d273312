"""Binance USD-M parsing: the Python face of the Cython parser, plus the cold-path parsers.

Hot path: :class:`BinanceParser` (``mmshm._native.binance_parse``) turns raw frames into
int64 ticks/lots without json.loads; its kinds and drop reasons are mirrored here as
IntEnums for readable code and counters. Cold path (start-up, tools): the REST depth
snapshot into level lists and ``exchangeInfo`` into the instrument table.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Iterable

from mmshm._native import binance_parse as _bp
from mmshm._native.binance_parse import BinanceParser
from mmshm.instruments import InstrumentSpec, InstrumentTable


class Kind(IntEnum):
    """What ``BinanceParser.parse`` returns (0 = the frame was dropped)."""
    DROPPED = _bp.K_NONE
    DEPTH = _bp.K_DEPTH
    BOOK_TICKER = _bp.K_BOOK_TICKER
    TRADE = _bp.K_TRADE
    AGG_TRADE = _bp.K_AGG_TRADE
    SNAPSHOT = _bp.K_SNAPSHOT
    CONTROL = _bp.K_CONTROL


class DropReason(IntEnum):
    """Why a frame was dropped: index into ``BinanceParser.drops``."""
    NONE = _bp.D_NONE
    MALFORMED = _bp.D_MALFORMED
    UNKNOWN_STREAM = _bp.D_UNKNOWN_STREAM
    MISSING_FIELD = _bp.D_MISSING_FIELD
    BAD_NUMBER = _bp.D_BAD_NUMBER
    NEGATIVE = _bp.D_NEGATIVE
    OVERFLOW = _bp.D_OVERFLOW
    OFF_TICK = _bp.D_OFF_TICK
    OFF_LOT = _bp.D_OFF_LOT
    TOO_MANY_LEVELS = _bp.D_TOO_MANY_LEVELS
    WRONG_SYMBOL = _bp.D_WRONG_SYMBOL
    ZERO_PRICE = _bp.D_ZERO_PRICE


class SnapshotError(ValueError):
    """A REST depth snapshot that cannot be used (the drop reason says why)."""


def parser_for(spec: InstrumentSpec, max_levels: int = 5000) -> BinanceParser:
    """A parser on ``spec``'s grid that also checks the symbol."""
    return BinanceParser.for_spec(spec, max_levels=max_levels)


def parse_snapshot(body: bytes, spec: InstrumentSpec) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
    """``(lastUpdateId, bids, asks)`` of a REST depth snapshot, levels as (ticks, lots)."""
    p = BinanceParser.for_spec(spec, max_levels=10_000)
    if p.parse(body) != Kind.SNAPSHOT:
        reason = DropReason(p.drop_reason).name if p.drop_reason else "not a depth snapshot"
        raise SnapshotError(f"unusable depth snapshot: {reason}")
    bids = list(zip(p.bids_px[:p.n_bids].tolist(), p.bids_qty[:p.n_bids].tolist()))
    asks = list(zip(p.asks_px[:p.n_asks].tolist(), p.asks_qty[:p.n_asks].tolist()))
    return p.last_update_id, bids, asks


def instruments_from_exchange_info(body: bytes | str | dict, symbols: Iterable[str], *,
                                   maker_fee_ppm: int = 0, taker_fee_ppm: int = 0) -> InstrumentTable:
    """The instrument table of ``symbols`` from an ``exchangeInfo`` response."""
    return InstrumentTable.from_binance_exchange_info(body, symbols, maker_fee_ppm=maker_fee_ppm,
                                                      taker_fee_ppm=taker_fee_ppm)


__all__ = ["BinanceParser", "DropReason", "Kind", "SnapshotError", "instruments_from_exchange_info",
           "parse_snapshot", "parser_for"]
