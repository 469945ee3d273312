"""Venue adapters and the venue id registry.

Every record in shared memory names its venue by a small integer (``MARKET_EVENT.venue``,
``INSTRUMENT_ROW.venue``). The ids are fixed here, once, so a capture, a journal or a
running segment written by one build means the same venue to every other build: never
renumber an entry, only append.
"""
from __future__ import annotations

#: name -> id. 0 is reserved for "unknown" so a zeroed record never claims a venue.
VENUE_IDS: dict[str, int] = {
    "binance-usdm": 1,   # Binance USD-M futures (also what the local stand-in serves)
    "hyperliquid": 2,
    "synthetic": 3,      # the built-in seeded market
    "sim": 4,            # the local simulated venue (Binance wire protocol, our matching)
}

_NAMES: dict[int, str] = {v: k for k, v in VENUE_IDS.items()}


class UnknownVenue(KeyError):
    """A venue name or id that is not in the registry."""


def venue_id(name: str) -> int:
    """The id of venue ``name`` (e.g. ``"binance-usdm"``); raises UnknownVenue."""
    try:
        return VENUE_IDS[name]
    except KeyError:
        raise UnknownVenue(f"unknown venue {name!r}; known: {', '.join(sorted(VENUE_IDS))}") from None


def venue_name(vid: int) -> str:
    """The name of venue id ``vid``; raises UnknownVenue."""
    try:
        return _NAMES[int(vid)]
    except KeyError:
        raise UnknownVenue(f"unknown venue id {vid}") from None
