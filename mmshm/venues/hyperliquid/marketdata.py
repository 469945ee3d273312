"""Hyperliquid market-data adapter: frames in, ``MARKET_EVENT`` records out.

Hyperliquid pushes the whole top of book on every ``l2Book`` message, so there is no
sequence to keep: each snapshot replaces the book. The adapter keeps that book (bounded
to ``levels`` per side), and emits the same events as every venue adapter:

- ``BOOK_TOP`` when best bid/ask price or quantity changed;
- ``TRADE`` per fill (aggressor side from ``side``: "B" buy, "A" sell), de-duplicated by
  ``tid`` (the first ``trades`` message after subscribing repeats recent fills, and a
  resubscription repeats them again);
- ``STATUS`` on every status change: SYNCING until the first snapshot, LIVE, STALE on a
  crossed/locked snapshot or :meth:`mark_stale` (silence), DISCONNECTED on :meth:`disconnected`.

``publish_mono`` is left 0: the feed stamps it when it publishes into the ring.
"""
from __future__ import annotations

from collections import Counter, deque

import numpy as np

from mmshm._native.book import ASK, BID, L2Book
from mmshm.instruments import InstrumentSpec
from mmshm.records import BOOK_DEPTH, BOOK_ROW, MARKET_EVENT, MdKind, MdStatus, Side
from mmshm.venues import venue_id
from mmshm.venues.hyperliquid.constants import VENUE
from mmshm.venues.hyperliquid.parsing import (CHANNEL_BOOK, CHANNEL_TRADES, CONTROL_CHANNELS, L2Snapshot,
                                              ParseError, parse_l2book, parse_trades, split_message)

MS = 1_000_000


class SnapshotBook:
    """The latest full snapshot in the project's exact L2 book (``mmshm._native.book.L2Book``),
    bounded to ``levels`` a side (levels beyond are dropped and counted by the book)."""

    def __init__(self, levels: int = BOOK_DEPTH) -> None:
        self.levels = levels
        self.l2 = L2Book(levels)

    def apply(self, snap: L2Snapshot) -> None:
        nb, na = len(snap.bids), len(snap.asks)
        bp = np.fromiter((p for p, _ in snap.bids), np.int64, nb)
        bq = np.fromiter((q for _, q in snap.bids), np.int64, nb)
        ap = np.fromiter((p for p, _ in snap.asks), np.int64, na)
        aq = np.fromiter((q for _, q in snap.asks), np.int64, na)
        self.l2.load_snapshot(bp, bq, ap, aq)

    @property
    def n_bids(self) -> int:
        return self.l2.n_bids

    @property
    def n_asks(self) -> int:
        return self.l2.n_asks

    @property
    def truncated(self) -> int:
        """Levels beyond ``levels`` dropped so far (both sides)."""
        return self.l2.levels_dropped

    def side(self, side: int, n: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(prices, quantities) of ``BID``/``ASK``, best first."""
        return self.l2.side_levels(side, n)

    def top(self) -> tuple[int, int, int, int]:
        """(bid px, bid qty, ask px, ask qty); zeros for an empty side."""
        return tuple(int(x) for x in self.l2.best())  # type: ignore[return-value]

    def crossed_or_locked(self) -> bool:
        return self.l2.state() != 0


class HyperliquidMarketData:
    """Parses one coin's frames and produces ``MARKET_EVENT`` arrays.

    ``handle(raw, local_ns) -> np.ndarray`` (0..n events); counters in ``messages``
    (by channel) and ``drops`` (by reason); the book in ``book``.
    """

    def __init__(self, spec: InstrumentSpec, instrument: int = 0, *, levels: int = BOOK_DEPTH,
                 trade_memory: int = 4096) -> None:
        if spec.venue != VENUE:
            raise ValueError(f"{spec.symbol} is a {spec.venue} instrument, not {VENUE}")
        self.spec = spec
        self.instrument = instrument
        self.venue = venue_id(VENUE)
        self.book = SnapshotBook(levels)
        self.status = MdStatus.SYNCING
        self.md_seq = 0
        self.messages: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.snapshots = 0
        self.trades = 0
        self.duplicate_trades = 0
        self.last_venue_ts = 0
        self._last_top = (0, 0, 0, 0)
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._trade_memory = trade_memory
        self._out: list = []

    # ------------------------------------------------------------------ input

    def handle(self, raw: bytes | str, local_ns: int) -> np.ndarray:
        """Process one WebSocket frame; the events it produced (possibly none)."""
        self._out = []
        try:
            channel, data = split_message(raw)
            self.messages[channel] += 1
            if channel == CHANNEL_BOOK:
                self._on_book(parse_l2book(self.spec, data), local_ns)
            elif channel == CHANNEL_TRADES:
                self._on_trades(data, local_ns)
            elif channel not in CONTROL_CHANNELS:
                raise ParseError("unknown_channel", channel)
        except ParseError as e:
            self.drops[e.reason] += 1
        return self._events()

    def mark_stale(self, local_ns: int) -> np.ndarray:
        """Silence or a feed-level problem: the book must not be traded on."""
        self._out = []
        self._set_status(MdStatus.STALE, local_ns, self.last_venue_ts)
        return self._events()

    def disconnected(self, local_ns: int) -> np.ndarray:
        """The connection ended: the book is unknown until the next snapshot."""
        self._out = []
        self._set_status(MdStatus.DISCONNECTED, local_ns, self.last_venue_ts)
        self._last_top = (0, 0, 0, 0)
        return self._events()

    # ------------------------------------------------------------------ output helpers

    def best(self) -> tuple[int, int, int, int]:
        """(bid px, bid qty, ask px, ask qty) in ticks/lots."""
        return self.book.top()

    def book_row(self) -> np.ndarray:
        """The current book as a 1-element ``BOOK_ROW`` (for the book seqlock table)."""
        row = np.zeros(1, BOOK_ROW)
        r = row[0]
        bp, bq = self.book.side(BID, BOOK_DEPTH)
        ap, aq = self.book.side(ASK, BOOK_DEPTH)
        r["instrument"] = self.instrument
        r["status"] = int(self.status)
        r["n_bids"], r["n_asks"] = len(bp), len(ap)
        r["md_seq"] = self.md_seq
        r["venue_ts"] = self.last_venue_ts
        r["bid_px"][: len(bp)], r["bid_qty"][: len(bq)] = bp, bq
        r["ask_px"][: len(ap)], r["ask_qty"][: len(aq)] = ap, aq
        return row

    # ------------------------------------------------------------------ internals

    def _event(self, kind: MdKind, venue_ts: int, local_ns: int) -> dict:
        self.md_seq += 1
        ev = {"md_seq": self.md_seq, "kind": int(kind), "instrument": self.instrument,
              "status": int(self.status), "venue": self.venue, "venue_ts": venue_ts, "local_ts": local_ns}
        self._out.append(ev)
        return ev

    def _events(self) -> np.ndarray:
        out = np.zeros(len(self._out), MARKET_EVENT)
        for i, ev in enumerate(self._out):
            for k, v in ev.items():
                out[i][k] = v
        self._out = []
        return out

    def _set_status(self, status: MdStatus, local_ns: int, venue_ts: int) -> None:
        if status == self.status:
            return
        self.status = status
        self._event(MdKind.STATUS, venue_ts, local_ns)

    def _on_book(self, snap: L2Snapshot, local_ns: int) -> None:
        venue_ts = snap.time_ms * MS
        if venue_ts < self.last_venue_ts:
            raise ParseError("stale_snapshot", "older than the book")
        self.book.apply(snap)
        self.snapshots += 1
        self.last_venue_ts = venue_ts
        if self.book.crossed_or_locked():
            self._set_status(MdStatus.STALE, local_ns, venue_ts)
            return
        self._set_status(MdStatus.LIVE, local_ns, venue_ts)
        top = self.book.top()
        if top != self._last_top:
            self._last_top = top
            ev = self._event(MdKind.BOOK_TOP, venue_ts, local_ns)
            ev["bid_px"], ev["bid_qty"], ev["ask_px"], ev["ask_qty"] = top

    def _on_trades(self, data: object, local_ns: int) -> None:
        for tr in parse_trades(self.spec, data):
            if tr.tid in self._seen:
                self.duplicate_trades += 1
                continue
            self._seen.add(tr.tid)
            self._seen_order.append(tr.tid)
            if len(self._seen_order) > self._trade_memory:
                self._seen.discard(self._seen_order.popleft())
            self.trades += 1
            ev = self._event(MdKind.TRADE, tr.time_ms * MS, local_ns)
            ev["side"] = int(Side.BUY if tr.buy else Side.SELL)
            ev["trade_px"], ev["trade_qty"], ev["trade_id"] = tr.px, tr.qty, tr.tid





def connection_config(url: str | None = None, **overrides):
    """A :class:`~mmshm.venues.connection.ConnectionConfig` for Hyperliquid's WebSocket:
    application-level ``{"method":"ping"}`` every 50 s (the server drops connections idle
    for 60 s); subscriptions go in ``on_connect`` with :func:`subscription_messages`."""
    from mmshm.venues.connection import ConnectionConfig
    from mmshm.venues.hyperliquid.constants import PING_INTERVAL_S, PING_MESSAGE, WS_URL

    kw = dict(url=url or WS_URL, name="hyperliquid", app_ping_interval_s=PING_INTERVAL_S,
              app_ping_message=PING_MESSAGE, silence_timeout_s=10.0)
    kw.update(overrides)
    return ConnectionConfig(**kw)

__all__ = ["HyperliquidMarketData", "SnapshotBook", "connection_config"]
