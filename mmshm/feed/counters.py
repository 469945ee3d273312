"""The feed's counters: detailed totals from the venue sources, folded into the 16
named slots of the feed's process-table row (``mmshm.agent.counters.ROLE_COUNTERS["feed"]``).

A process row has 16 int64 slots, fewer than the parser's drop reasons, so reasons are
grouped (the full breakdown goes to the log on every status line and at exit):

- ``drop_malformed``: not JSON / truncated frames;
- ``drop_unknown``: well-formed but not for us (unknown stream or channel, wrong symbol,
  a frame the feed could not route to an instrument);
- ``drop_off_grid``: a price or quantity off the instrument's tick/lot grid;
- ``drop_invalid``: everything else (missing field, bad/negative/overflowing number, ...).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mmshm.agent.counters import counter_index

ROLE = "feed"

#: Drop reason -> counter slot name (reasons not listed count as ``drop_invalid``).
DROP_GROUPS: dict[str, str] = {
    "malformed": "drop_malformed",
    "json": "drop_malformed",
    "unknown_stream": "drop_unknown",
    "unknown_channel": "drop_unknown",
    "wrong_symbol": "drop_unknown",
    "unrouted": "drop_unknown",
    "off_tick": "drop_off_grid",
    "off_lot": "drop_off_grid",
    "offgrid": "drop_off_grid",
}

#: Totals every source reports (``FeedSource.totals()``), copied to the slot of the same name.
TOTAL_SLOTS = ("md_events", "md_gaps", "reconnects", "book_resyncs", "snapshots",
               "msg_depth", "msg_ticker", "msg_trade")


def slot(name: str) -> int:
    """Slot index of a feed counter (KeyError naming the known ones otherwise)."""
    return counter_index(ROLE, name)


_TOTAL_IDX = [(name, slot(name)) for name in TOTAL_SLOTS]
_GROUP_IDX = {g: slot(g) for g in ("drop_malformed", "drop_unknown", "drop_invalid", "drop_off_grid")}
_DROPS = slot("drops")
_STALE = slot("stale")
_P50 = slot("lat_p50_us")
_MAX = slot("lat_max_us")


def fold(counters: np.ndarray, totals: Mapping[str, int], drops: Mapping[str, int], stale: int,
         lat_p50_us: int | None = None, lat_max_us: int | None = None) -> None:
    """Write the source totals, grouped drops, stale count and latency into ``counters``
    (the row's int64 slots; published with the next heartbeat)."""
    for name, i in _TOTAL_IDX:
        counters[i] = int(totals.get(name, 0))
    groups = dict.fromkeys(_GROUP_IDX, 0)
    total = 0
    for reason, n in drops.items():
        groups[DROP_GROUPS.get(reason, "drop_invalid")] += int(n)
        total += int(n)
    for g, i in _GROUP_IDX.items():
        counters[i] = groups[g]
    counters[_DROPS] = total
    counters[_STALE] = stale
    if lat_p50_us is not None:
        counters[_P50] = lat_p50_us
    if lat_max_us is not None:
        counters[_MAX] = lat_max_us


__all__ = ["DROP_GROUPS", "ROLE", "TOTAL_SLOTS", "fold", "slot"]
