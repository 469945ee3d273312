"""What the feed service needs from a venue source, and the helpers every source shares.

A source (Binance USD-M / the simulated venue, Hyperliquid, a capture replay) turns venue
frames into MARKET_EVENTs in the ``md`` ring and BOOK_ROWs in the ``book`` table. The
service (``mmshm.feed.service``) owns the segments, the process row, signals and
sd_notify; a source owns its sockets and books. The split keeps the venue logic testable
without a process and the process logic the same for every venue.
"""
from __future__ import annotations

import time
from array import array
from typing import Callable, Protocol

import numpy as np

from mmshm.instruments import InstrumentSpec

#: Called after every frame (or batch of frames) a source handled: the service
#: heartbeats its process row from it, so a loop stuck in a callback shows as hung.
#: Sources also call their ``published_hook`` (same type) after every frame they
#: published from: the service rings the quoter's doorbell from it.
Beat = Callable[[], None]


def no_op() -> None:
    """A source's hooks before the service sets them."""


class LatencyWindow:
    """Venue-to-local latency samples (local receive ns - venue event ns).

    ``add`` is ``array.append`` (tens of ns, cheap enough per frame); the service drains
    the samples now and then into the shared latency histogram and the p50/max counters.
    Past ``size`` samples in one window, further samples are counted in ``overflow`` but
    not kept (checked at drain time, so the per-frame path carries no bound check).
    """

    __slots__ = ("samples", "add", "size", "overflow")

    def __init__(self, size: int = 1 << 18) -> None:
        self.size = size
        self.samples = array("q")
        self.add = self.samples.append
        self.overflow = 0

    @property
    def n(self) -> int:
        return min(len(self.samples), self.size)

    def drain(self) -> np.ndarray:
        """The samples since the last drain (at most ``size``) and reset."""
        kept = self.samples[: self.size]
        self.overflow = max(0, len(self.samples) - self.size)
        out = np.frombuffer(kept, dtype=np.int64).copy() if len(kept) else np.zeros(0, np.int64)
        del self.samples[:]
        return out


class FeedSource(Protocol):
    """One venue connection (or replay) feeding the instance's md ring and book table."""

    #: the instruments, in index order (known after ``prepare``)
    specs: list[InstrumentSpec]

    async def prepare(self) -> list[InstrumentSpec]:
        """Fetch what is needed before segments exist (exchangeInfo); returns the specs."""

    def bind(self, md_writer, book_table) -> None:
        """Publish into these segments from now on (instrument i -> book row i)."""

    async def run(self) -> None:
        """Connect and keep going until ``stop``."""

    async def stop(self) -> None:
        """Stop receiving; publish DISCONNECTED for every instrument."""

    def totals(self) -> dict[str, int]:
        """md_events, md_gaps, reconnects, book_resyncs, snapshots, msg_depth, msg_ticker, msg_trade."""

    def drops(self) -> dict[str, int]:
        """Dropped frames by reason."""

    def statuses(self) -> list[int]:
        """MdStatus of each instrument."""

    def details(self) -> dict:
        """Everything countable, for the log (per-instrument sync counters, connection stats)."""


def now_ns() -> int:
    """Realtime ns (venue and local receive times are realtime, see docs/CONTRACTS.md)."""
    return time.time_ns()
