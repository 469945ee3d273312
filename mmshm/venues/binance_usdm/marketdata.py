"""Binance USD-M market data for one instrument: the local book sync state machine.

Follows Binance's "How to manage a local order book correctly" (USD-M futures):

1. buffer the depth diffs of the stream; ask for a REST snapshot;
2. drop buffered diffs with ``u < lastUpdateId``;
3. the first diff applied must have ``U <= lastUpdateId <= u``;
4. every later diff must have ``pu`` equal to the previous diff's ``u``; otherwise the book
   is broken: it is marked STALE at once (a STATUS event), and we start again at 1.

The parsing, the book and the steady state (in sync: check ``pu``, apply, detect a top
change, write events and the book row) are Cython (``mmshm._native.binance_parse``,
``.book``, ``.binance_sync``): one C call per frame. This module is the state machine
for everything else (buffering, snapshots, breaks, resync). Output for the feed:

- ``on_frame(frame, local_ts) -> n``: ``events[:n]`` are new MARKET_EVENT records
  (BOOK_TOP when the best bid/ask price or quantity changed, TRADE, STATUS), stamped with
  venue time, local receive time and the feed sequence; publish them in order.
- ``row_dirty``: the BOOK_ROW in ``row`` (top BOOK_DEPTH levels) changed; write it to the
  book seqlock table and clear the flag.
- or ``bind_output(writer, table)`` once: then the events and the row are published from
  C inside the same call (no per-event Python), and ``events[:n]`` is what was published.
- ``request_snapshot`` (constructor callback): called when a REST snapshot is needed; the
  caller fetches it (asynchronously) and hands it to ``on_snapshot(body, local_ts)``. A
  snapshot line met in a capture goes through ``on_frame`` and is used the same way.

A bookTicker whose ``u`` equals an applied diff's ``u`` describes the same book state: its
best bid/ask must equal ours (it usually arrives before that diff, so it waits for it).
A mismatch means our book is wrong, so it is treated like a sequence break (STALE,
resync) and counted.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

from mmshm._native.binance_parse import DROP_NAMES, K_DEPTH, K_SNAPSHOT, KIND_NAMES, BinanceParser
from mmshm._native.binance_sync import (
    SLOW_DEPTH, SLOW_RESYNC, SLOW_SNAPSHOT, SYNC_COUNTERS, BinanceSyncCore,
)
from mmshm._native.book import L2Book
from mmshm.instruments import InstrumentSpec
from mmshm.records import BOOK_ROW, MARKET_EVENT, MdStatus
from mmshm.venues import venue_id
from mmshm.venues.binance_usdm.constants import SNAPSHOT_LIMIT

_C = {name: i for i, name in enumerate(SYNC_COUNTERS)}


class FeedSequence:
    """The feed-wide event sequence (``md_seq``): one per feed, shared by its instruments.

    Held in a 1-element uint64 array so the C cores increment it without Python.
    """
    __slots__ = ("array",)

    def __init__(self, start: int = 0) -> None:
        self.array = np.array([start], np.uint64)

    @property
    def value(self) -> int:
        return int(self.array[0])


class BinanceUsdmBook:
    """Book sync for one Binance USD-M instrument (see the module docstring).

    ``status`` is the MdStatus consumers see: UNKNOWN before ``start``, SYNCING from
    ``start`` until the first diff after a snapshot applies, LIVE while in sequence and neither crossed nor locked, STALE after a break
    (until resynchronised), while crossed/locked, or after ``mark_stale`` (until the next
    applied diff), DISCONNECTED after ``on_disconnect`` (until ``start``).
    """

    MAX_EVENTS = 4

    def __init__(self, spec: InstrumentSpec, instrument: int, *,
                 request_snapshot: Callable[[], None] | None = None,
                 sequence: FeedSequence | None = None, max_levels: int = SNAPSHOT_LIMIT,
                 max_parse_levels: int = 5000, max_buffered: int = 10_000) -> None:
        self.spec = spec
        self.instrument = instrument
        self.venue = venue_id(spec.venue)
        self.request_snapshot = request_snapshot
        self.sequence = sequence or FeedSequence()
        self.parser = BinanceParser.for_spec(spec, max_levels=max_parse_levels)
        self.book = L2Book(max_levels)
        self.book.bind_input(self.parser.bids_px, self.parser.bids_qty, self.parser.asks_px, self.parser.asks_qty)
        #: events of the last call: ``events[:n]``
        self.events = np.zeros(self.MAX_EVENTS, MARKET_EVENT)
        self.book.bind_events(self.events)
        self.parser.bind_events(self.events)
        #: the BOOK_ROW of this instrument (top BOOK_DEPTH levels); see ``row_dirty``
        self.row = np.zeros(1, BOOK_ROW)
        self.book.bind_row(self.row)
        self.core = BinanceSyncCore(self.parser, self.book, self.sequence.array, instrument, self.venue,
                                    int(MdStatus.UNKNOWN))
        self.core.set_slow_handler(self._slow_step)
        # The hot path: frames go straight to C; only SLOW_* codes come back to Python.
        self.on_frame = self.core.on_frame  # type: ignore[method-assign]
        self.snapshot_id = 0
        self._have_snapshot = False       # snapshot loaded, first diff not yet applied
        self._awaiting_snapshot = True
        self._buffer: deque[tuple[bytes, int]] = deque(maxlen=max_buffered)

    # ---------------------------------------------------------------- state
    @property
    def status(self) -> int:
        return self.core.status

    @property
    def in_sync(self) -> bool:
        return self.core.in_sync

    @property
    def last_update_id(self) -> int:
        """``u`` of the last applied diff."""
        return self.core.last_update_id

    @property
    def row_dirty(self) -> bool:
        """The BOOK_ROW changed since the flag was last cleared (``row_dirty = False``)."""
        return self.core.row_dirty

    @row_dirty.setter
    def row_dirty(self, value: bool) -> None:
        self.core.row_dirty = value

    @property
    def awaiting_snapshot(self) -> bool:
        """A snapshot has been requested and not yet received."""
        return self._awaiting_snapshot

    def bind_output(self, writer=None, table=None, row: int | None = None) -> None:
        """Publish from C from now on: events into ``writer`` (an ``mmshm.shm.BroadcastWriter``
        on MARKET_EVENT, the md ring) and the book row into row ``row`` (default: the
        instrument index) of ``table`` (a ``SeqlockTable`` of BOOK_ROW). Every method that
        returns an event count has then already published those events. No arguments: unbind."""
        self.core.bind_output(writer, table, self.instrument if row is None else row)

    # ---------------------------------------------------------------- lifecycle
    def start(self, local_ts: int = 0) -> int:
        """(Re)start synchronising, e.g. after a (re)connect: status SYNCING, diffs are
        buffered, a snapshot is requested. Returns the number of new events."""
        self.core.begin()
        self._reset_sync()
        self.core.set_status(MdStatus.SYNCING, local_ts, 0)
        self._request(initial=True)
        return self.core.flush()

    def on_disconnect(self, local_ts: int) -> int:
        """The connection dropped: unusable until resynchronised. Returns the number of new events."""
        self.core.begin()
        self._reset_sync()
        self.core.set_status(MdStatus.DISCONNECTED, local_ts, self.core.last_update_id)
        return self.core.flush()

    def mark_stale(self, local_ts: int) -> int:
        """No message for too long: report STALE (cleared by the next applied diff)."""
        self.core.begin()
        self.core.set_status(MdStatus.STALE, local_ts, self.core.last_update_id)
        return self.core.flush()

    # ---------------------------------------------------------------- frames
    def on_frame(self, frame: bytes, local_ts: int) -> int:
        """Handle one raw frame received at ``local_ts`` (realtime ns); returns the number
        of new events in ``events[:n]``. (Each instance binds this name to the C core's
        ``on_frame``, which calls back ``_slow_step`` when the state machine must decide;
        this definition documents it and behaves the same.)"""
        return self.core.on_frame(frame, local_ts)

    def _slow_step(self, code: int, frame: bytes, local_ts: int) -> int:
        self._slow(code, frame, local_ts)
        return self.core.flush()

    def on_snapshot(self, body: bytes, local_ts: int) -> int:
        """A REST depth snapshot arrived; returns the number of new events."""
        self.core.begin()
        if self.parser.parse(body) != K_SNAPSHOT:
            self._request()          # unusable (the parser counted why): ask again
            return 0
        self._snapshot_parsed(local_ts)
        return self.core.flush()

    # ---------------------------------------------------------------- state machine
    def _slow(self, code: int, frame: bytes, local_ts: int) -> int:
        if code == SLOW_SNAPSHOT:
            return self._snapshot_parsed(local_ts)
        if code == SLOW_RESYNC:                       # the core marked it STALE already
            self._reset_sync()
            self._request()
            return self.core.n_events
        assert code == SLOW_DEPTH
        if self.core.in_sync:                         # in sync but pu broke (gap counted)
            return self._break(frame, local_ts)
        if self._have_snapshot:
            return self._first_diff(frame, local_ts)
        if len(self._buffer) == self._buffer.maxlen:
            self.core.count(_C["buffer_overflow"])
        self._buffer.append((frame, local_ts))
        return 0

    def _first_diff(self, frame: bytes, local_ts: int) -> int:
        """A diff after the snapshot, before the first applied one (the parser holds it)."""
        p = self.parser
        if p.update_id < self.snapshot_id:
            self.core.count(_C["stale_diffs"])
            return 0
        if p.first_update_id > self.snapshot_id:
            # Events between the snapshot and this diff are missing: the snapshot is too old.
            self.core.count(_C["snapshot_too_old"])
            return self._break(frame, local_ts)
        self._have_snapshot = False
        self.core.in_sync = True
        return self.core.apply_parsed(local_ts)

    def _snapshot_parsed(self, local_ts: int) -> int:
        """Load the snapshot the parser holds, then replay the buffered diffs by the same
        rules; only the final state is reported (at most one STATUS and one BOOK_TOP)."""
        p, core = self.parser, self.core
        core.begin()
        if core.in_sync and p.last_update_id <= core.last_update_id:
            return 0        # older than the book we hold (e.g. a late answer): nothing to learn
        self.book.load_bound(p.n_bids, p.n_asks)
        core.clear_pending()
        core.count(_C["snapshots"])
        self.snapshot_id = p.last_update_id
        core.in_sync = False
        self._have_snapshot = True
        self._awaiting_snapshot = False
        buffered, self._buffer = self._buffer, deque(maxlen=self._buffer.maxlen)
        broke = False
        for frame, ts in buffered:
            if broke:
                self._buffer.append((frame, ts))
                continue
            if p.parse(frame) != K_DEPTH:
                continue
            if core.in_sync:
                if p.prev_update_id == core.last_update_id:
                    core.apply_parsed(ts, quiet=True)
                elif p.update_id <= core.last_update_id:
                    core.count(_C["stale_diffs"])
                else:
                    core.count(_C["gaps"])
                    broke = True
            elif p.update_id < self.snapshot_id:
                core.count(_C["stale_diffs"])
            elif p.first_update_id > self.snapshot_id:
                core.count(_C["snapshot_too_old"])
                broke = True
            else:
                core.in_sync = True
                self._have_snapshot = False
                core.apply_parsed(ts, quiet=True)
            if broke:
                self._reset_sync()
                self._buffer.append((frame, ts))
        core.begin()
        if broke:
            core.set_status(MdStatus.STALE, local_ts, core.last_update_id)
            self._request()
        elif core.in_sync:
            state = self.book.state()
            if state:
                core.count(_C["crossed"])
            core.set_status(MdStatus.STALE if state else MdStatus.LIVE, local_ts, core.last_update_id)
            core.emit_top(local_ts)
            core.write_row(local_ts)
        return core.n_events

    def _break(self, frame: bytes, local_ts: int) -> int:
        """Sequence broken: STALE now, keep the frame for the next sync, ask for a snapshot."""
        self._reset_sync()
        self._buffer.append((frame, local_ts))
        n = self.core.set_status(MdStatus.STALE, local_ts, self.core.last_update_id)
        self._request()
        return n

    def _reset_sync(self) -> None:
        self.core.in_sync = False
        self.core.clear_pending()
        self._have_snapshot = False
        self._buffer.clear()

    def _request(self, initial: bool = False) -> None:
        if not initial and self.core.counters[_C["snapshots"]]:
            self.core.count(_C["resyncs"])
        self._awaiting_snapshot = True
        if self.request_snapshot is not None:
            self.request_snapshot()

    # ---------------------------------------------------------------- reporting
    @property
    def counters(self) -> dict[str, int]:
        """The sync counters by name (gaps, resyncs, snapshots, applied, ticker_checks, ...)."""
        return {name: int(v) for name, v in zip(SYNC_COUNTERS, self.core.counters)}

    def all_counters(self) -> dict[str, int]:
        """Messages by stream, drops by reason and the sync counters, flat (for shm export)."""
        out = {f"msg_{KIND_NAMES[i]}": int(v) for i, v in enumerate(self.parser.messages) if i}
        out.update({f"drop_{DROP_NAMES[i]}": int(v) for i, v in enumerate(self.parser.drops) if i})
        out.update(self.counters)
        out["levels_dropped"] = int(self.book.levels_dropped)
        return out


__all__ = ["BinanceUsdmBook", "FeedSequence", "SYNC_COUNTERS"]
