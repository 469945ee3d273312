"""A capture file as the feed's venue (``venue.name = "replay"``).

The same path as ``mmshm replay FILE`` (publishing mode): the capture's frames go
through ``BinanceUsdmBook`` bound to the segments, so the rings see exactly what the live
feed would have published, at the recorded pace or as fast as possible. The instrument
comes from the capture and the reference specs (``mmshm.cli.replay.resolve_spec``).
When the file ends the book is marked STALE: no more data is coming.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mmshm.feed.base import Beat, LatencyWindow, no_op, now_ns
from mmshm.instruments import InstrumentSpec
from mmshm.records import MdStatus
from mmshm.venues.binance_usdm import constants as C
from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook
from mmshm.venues.capture import CaptureReader, apaced

log = logging.getLogger("mmshm.feed")

_KIND_SLOTS = {1: "msg_depth", 2: "msg_ticker", 3: "msg_trade", 4: "msg_trade"}


class ReplayFeedSource:
    """Publishes one capture file once (see the module docstring)."""

    def __init__(self, path: str | Path, *, symbol: str | None = None, pace: str = "recorded",
                 book_depth: int = C.SNAPSHOT_LIMIT, latency: LatencyWindow | None = None,
                 beat: Beat | None = None, batch: int = 256) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"capture file not found: {self.path}")
        if pace not in ("recorded", "fast"):
            raise ValueError(f"pace must be 'recorded' or 'fast', not {pace!r}")
        self.symbol = symbol
        self.pace = pace
        self.book_depth = book_depth
        self.latency = latency or LatencyWindow()
        self.beat_hook = beat or (lambda: None)
        self.published_hook: Beat = no_op   # after every frame (the service rings the quoter)
        self.batch = batch
        self.specs: list[InstrumentSpec] = []
        self.books: list[BinanceUsdmBook] = []
        self.reader = CaptureReader(self.path)
        self.frames = 0
        self.finished = False
        self._stopping = False

    async def prepare(self) -> list[InstrumentSpec]:
        from mmshm.cli.replay import resolve_spec

        args = SimpleNamespace(symbol=self.symbol, file=self.path, exchange_info=None, tick=None, lot=None)
        spec = resolve_spec(args)
        self.specs = [spec]
        self.books = [BinanceUsdmBook(spec, 0, max_levels=self.book_depth)]
        return self.specs

    def bind(self, md_writer, book_table) -> None:
        for book in self.books:
            book.bind_output(md_writer, book_table)

    async def run(self) -> None:
        book = self.books[0]
        on_frame = book.on_frame
        parser = book.parser
        lat = self.latency
        beat = self.beat_hook
        book.start(now_ns())   # SYNCING until the capture's snapshot line and first diff
        n = 0
        if self.pace == "recorded":
            async for ts, frame in apaced(self.reader, 1.0):
                if self._stopping:
                    return
                on_frame(frame, ts)
                self.published_hook()
                e = parser.event_time
                if e > 0:
                    lat.add(ts - e * 1_000_000)
                n += 1
                beat()
        else:
            for ts, frame in self.reader:
                if self._stopping:
                    return
                on_frame(frame, ts)
                e = parser.event_time
                if e > 0:
                    lat.add(ts - e * 1_000_000)
                n += 1
                if n % self.batch == 0:
                    self.frames = n
                    self.published_hook()
                    beat()
                    await asyncio.sleep(0)
        self.frames = n
        self.finished = True
        book.mark_stale(now_ns())
        log.info("replay of %s finished: %d frames", self.path, n)
        beat()
        while not self._stopping:          # keep the segments up for readers until stopped
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        self._stopping = True
        ts = now_ns()
        for book in self.books:
            if book.status != MdStatus.DISCONNECTED:
                book.on_disconnect(ts)

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(("md_events", "md_gaps", "book_resyncs", "snapshots", "msg_depth", "msg_ticker",
                             "msg_trade", "reconnects"), 0)
        for book in self.books:
            c = book.core.counters
            out["md_events"] += int(book.core.published)
            out["md_gaps"] += int(c[0])
            out["book_resyncs"] += int(c[1])
            out["snapshots"] += int(c[2])
            for k, name in _KIND_SLOTS.items():
                out[name] += int(book.parser.messages[k])
        return out

    def drops(self) -> dict[str, int]:
        from mmshm._native.binance_parse import DROP_NAMES

        out: dict[str, int] = {}
        for book in self.books:
            for k, n in enumerate(book.parser.drops):
                if k and n:
                    out[DROP_NAMES[k]] = out.get(DROP_NAMES[k], 0) + int(n)
        if self.reader.bad_lines:
            out["malformed"] = out.get("malformed", 0) + self.reader.bad_lines
        return out

    def statuses(self) -> list[int]:
        return [int(b.status) for b in self.books]

    def details(self) -> dict[str, Any]:
        return {"file": str(self.path), "frames": self.frames, "finished": self.finished,
                "bad_lines": self.reader.bad_lines,
                "instruments": {b.spec.symbol: dict(b.all_counters(), status=MdStatus(b.status).name)
                                for b in self.books}}


__all__ = ["ReplayFeedSource"]
