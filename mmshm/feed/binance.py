"""Binance USD-M market data for the feed (also the simulated venue and the stand-in: same protocol).

Wiring, not logic: the connection manager (``mmshm.venues.connection.WsConnection``:
reconnect with exponential backoff and full jitter, ping/pong, silence -> stale) carries
the combined stream ``<sym>@bookTicker / <sym>@depth@<speed> / <sym>@trade`` into one
``BinanceUsdmBook`` per symbol (the C sync state machine, which publishes events and
book rows straight into the segments), and REST depth snapshots are fetched with aiohttp
whenever a book asks for one:

- on every (re)connect each book restarts (SYNCING, diffs buffered) and asks for a
  snapshot; the stream is already open, as Binance's procedure requires;
- on a sequence break (or a bookTicker disagreeing with the book) the book is STALE at
  once and asks again; one fetch per symbol is in flight at a time, retried with
  jittered backoff (and ``Retry-After`` on 418/429);
- on a disconnect every book publishes DISCONNECTED and pending fetches are dropped (the
  next session starts from a fresh snapshot);
- no frame for ``stale_after_s`` -> STALE for every book (cleared by the next applied
  diff); ``silence_reconnect_s`` of silence drops the connection and reconnects.

Instruments come from REST ``exchangeInfo`` before anything is published.

Binance production (``fstream.binance.com``) routes streams by category: book streams
(bookTicker, depth) on ``/public``, trades on ``/market``; there the trades come over a
second connection with its own reconnects (it never touches the book sync).
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aiohttp
import orjson

from mmshm.feed.base import Beat, LatencyWindow, no_op, now_ns
from mmshm.instruments import InstrumentError, InstrumentSpec
from mmshm.records import MdStatus
from mmshm.venues.binance_usdm import constants as C
from mmshm.venues.binance_usdm.constants import is_routed_host, is_trade_stream, stream_url
from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook, FeedSequence
from mmshm.venues.connection import BackoffPolicy, ConnectionConfig, WsConnection

log = logging.getLogger("mmshm.feed")

#: Depth limits Binance accepts for ``GET /fapi/v1/depth``.
SNAPSHOT_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
#: Parser message kinds (``mmshm._native.binance_parse.KIND_NAMES``) -> feed counter.
_KIND_SLOTS = {1: "msg_depth", 2: "msg_ticker", 3: "msg_trade", 4: "msg_trade"}
_STREAM_PREFIX = b'{"stream":"'
#: Binance's routed WebSocket entry points (data categories).
_K_DEPTH = 1
#: Heartbeat after every 64th frame: a busy loop beats often, an idle one from the periodic task.
BEAT_EVERY_MASK = 63
#: Longest wait for the first diff of a session before the snapshot is fetched anyway.
FIRST_DIFF_WAIT_S = 2.0


def snapshot_limit(book_depth: int) -> int:
    """The smallest REST depth limit covering ``book_depth`` levels (at most 1000)."""
    for lim in SNAPSHOT_LIMITS:
        if lim >= book_depth:
            return lim
    return SNAPSHOT_LIMITS[-1]


def specs_from_exchange_info(info: bytes | dict, symbols: list[str], venue: str, *,
                             maker_fee_ppm: int = C.DEFAULT_MAKER_FEE_PPM,
                             taker_fee_ppm: int = C.DEFAULT_TAKER_FEE_PPM) -> list[InstrumentSpec]:
    """Instrument specs of ``symbols`` (in order) from an ``exchangeInfo`` response."""
    if isinstance(info, (bytes, str)):
        info = orjson.loads(info)
    if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
        raise InstrumentError("exchangeInfo response has no 'symbols' list")
    by_sym = {s.get("symbol"): s for s in info["symbols"] if isinstance(s, dict)}
    specs = []
    for sym in symbols:
        if sym not in by_sym:
            raise InstrumentError(f"{sym} not in exchangeInfo")
        specs.append(InstrumentSpec.from_binance(by_sym[sym], venue=venue, maker_fee_ppm=maker_fee_ppm,
                                                 taker_fee_ppm=taker_fee_ppm))
    return specs


class BinanceFeedSource:
    """The combined-stream session for ``symbols`` (two on Binance production: book streams
    and trades; see the module docstring)."""

    def __init__(self, symbols: list[str], *, ws_url: str, rest_url: str, venue: str = C.VENUE,
                 depth_speed: str = "0ms", trades: str = "trade", book_depth: int = C.SNAPSHOT_LIMIT,
                 stale_after_s: float = 5.0, silence_reconnect_s: float | None = None,
                 backoff: BackoffPolicy | None = None, ping_interval_s: float = 20.0,
                 open_timeout_s: float = 10.0, rest_timeout_s: float = 10.0,
                 specs: list[InstrumentSpec] | None = None, latency: LatencyWindow | None = None,
                 beat: Beat | None = None, rng: random.Random | None = None,
                 routed: bool | None = None) -> None:
        if not symbols:
            raise ValueError("at least one symbol")
        self.symbols = [s.upper() for s in symbols]
        self.venue = venue
        self.ws_url = ws_url
        self.rest_url = rest_url.rstrip("/")
        self.depth_speed = depth_speed
        self.trades = trades
        self.book_depth = book_depth
        self.limit = snapshot_limit(book_depth)
        self.backoff = backoff or BackoffPolicy()
        self.rest_timeout_s = rest_timeout_s
        self.specs: list[InstrumentSpec] = list(specs) if specs else []
        self.latency = latency or LatencyWindow()
        self._lat_add = self.latency.add
        self._frames = 0
        self.beat_hook = beat or (lambda: None)
        self.published_hook: Beat = no_op   # after every frame (the service rings the quoter)
        self._rng = rng or random.Random()
        self.sequence = FeedSequence()
        self.books: list[BinanceUsdmBook] = []
        self._by_symbol: dict[bytes, int] = {}
        self.unrouted = 0
        self.stale_events = 0
        self.snapshot_errors = 0
        self._fetching: dict[int, asyncio.Task] = {}
        self._again: set[int] = set()
        self._depth_at_connect: dict[int, int] = {}
        self._http: aiohttp.ClientSession | None = None
        self._stopping = False
        streams = [s for sym in self.symbols for s in C.market_streams(sym, depth_speed, trades)]
        self.routed = is_routed_host(ws_url) if routed is None else routed
        self.trade_conn: WsConnection | None = None
        if self.routed:
            # Binance's split endpoints: book streams on /public, trades on /market (an
            # unrouted connection receives only /public streams, so trades would never come).
            book_streams = [s for s in streams if not is_trade_stream(s)]
            trade_streams = [s for s in streams if s not in book_streams]
            self.url = stream_url(ws_url, book_streams, route="public")
            self.trade_url = stream_url(ws_url, trade_streams, route="market")
            self.trade_conn = WsConnection(
                ConnectionConfig(url=self.trade_url, name=f"feed-{venue}-trades", backoff=self.backoff,
                                 open_timeout_s=open_timeout_s, ping_interval_s=ping_interval_s,
                                 ping_timeout_s=ping_interval_s, silence_timeout_s=None,
                                 silence_reconnect_s=None),
                self._on_trade_message, on_disconnect=self._on_trade_disconnect, rng=rng)
        else:
            self.url = stream_url(ws_url, streams)
            self.trade_url = ""
        self.conn = WsConnection(
            ConnectionConfig(url=self.url, name=f"feed-{venue}", backoff=self.backoff,
                             open_timeout_s=open_timeout_s, ping_interval_s=ping_interval_s,
                             ping_timeout_s=ping_interval_s, silence_timeout_s=stale_after_s,
                             silence_reconnect_s=silence_reconnect_s),
            self._on_message, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            on_stale=self._on_stale, rng=rng)

    # ------------------------------------------------------------------ start-up
    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.rest_timeout_s))
        return self._http

    async def prepare(self) -> list[InstrumentSpec]:
        """Instrument specs from ``exchangeInfo`` (retried with backoff until it works or
        ``stop``); a symbol the venue does not list is an error, not a retry."""
        if not self.specs:
            url = self.rest_url + C.EXCHANGE_INFO_PATH
            attempt = 0
            while not self._stopping:
                try:
                    async with self._session().get(url) as resp:
                        body = await resp.read()
                        if resp.status == 200:
                            self.specs = specs_from_exchange_info(body, self.symbols, self.venue)
                            break
                        log.warning("exchangeInfo: HTTP %s from %s", resp.status, url)
                except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as e:
                    log.warning("exchangeInfo: %s from %s", e, url)
                await asyncio.sleep(self.backoff.delay(attempt, self._rng))
                attempt += 1
            if not self.specs:
                return []
        self.books = [BinanceUsdmBook(spec, i, request_snapshot=lambda i=i: self._want_snapshot(i),
                                      sequence=self.sequence, max_levels=self.book_depth)
                      for i, spec in enumerate(self.specs)]
        self._by_symbol = {spec.symbol.lower().encode(): i for i, spec in enumerate(self.specs)}
        return self.specs

    def bind(self, md_writer, book_table) -> None:
        """Events and book rows are published from C into these segments from now on."""
        for book in self.books:
            book.bind_output(md_writer, book_table)

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        if self.trade_conn is None:
            await self.conn.run()
        else:
            await asyncio.gather(self.conn.run(), self.trade_conn.run())

    async def stop(self) -> None:
        self._stopping = True
        await self.conn.stop()
        if self.trade_conn is not None:
            await self.trade_conn.stop()
        self._cancel_fetches()
        if self._http is not None:
            await self._http.close()
            self._http = None
        ts = now_ns()
        for book in self.books:
            if book.status != MdStatus.DISCONNECTED:
                book.on_disconnect(ts)

    # ------------------------------------------------------------------ connection callbacks
    async def _on_connect(self, conn: WsConnection) -> None:
        ts = now_ns()
        log.info("connected to %s", self.url)
        self._depth_at_connect = {i: int(b.parser.messages[_K_DEPTH]) for i, b in enumerate(self.books)}
        for book in self.books:
            book.start(ts)          # SYNCING, buffer diffs, ask for a snapshot
        self.beat_hook()

    def _on_disconnect(self, reason: str) -> None:
        self._cancel_fetches()
        ts = now_ns()
        for book in self.books:
            book.on_disconnect(ts)
        if not self._stopping:
            log.warning("disconnected: %s", reason)
        self.beat_hook()

    def _on_stale(self, silence_ns: int) -> None:
        self.stale_events += 1
        ts = now_ns()
        for book in self.books:
            book.mark_stale(ts)
        log.warning("no market data for %.2f s: books STALE", silence_ns / 1e9)
        self.beat_hook()

    def _on_message(self, data: bytes, recv_ns: int) -> None:
        books = self.books
        if len(books) == 1:
            book = books[0]
        else:
            i = self._route(data)
            if i < 0:
                return
            book = books[i]
        book.on_frame(data, recv_ns)
        self.published_hook()
        e = book.parser.event_time
        if e > 0:
            self._lat_add(recv_ns - e * 1_000_000)
        self._frames += 1
        if not self._frames & BEAT_EVERY_MASK:   # heartbeat per batch of frames (and from the periodic task)
            self.beat_hook()

    def _on_trade_message(self, data: bytes, recv_ns: int) -> None:
        """A frame of the separate trade connection (routed endpoints): trades only; they
        do not touch the book sync, so its state is not this connection's business."""
        i = 0 if len(self.books) == 1 else self._route(data)
        if i < 0:
            return
        book = self.books[i]
        book.on_frame(data, recv_ns)
        self.published_hook()
        e = book.parser.event_time
        if e > 0:
            self._lat_add(recv_ns - e * 1_000_000)

    def _on_trade_disconnect(self, reason: str) -> None:
        if not self._stopping:
            log.warning("trade stream disconnected: %s", reason)

    def _route(self, data: bytes) -> int:
        """Instrument index of a combined-stream frame (by its stream's symbol); -1 if none."""
        if data.startswith(_STREAM_PREFIX):
            end = data.find(b"@", len(_STREAM_PREFIX), 64)
            if end > 0:
                i = self._by_symbol.get(data[len(_STREAM_PREFIX):end])
                if i is not None:
                    return i
        elif data.startswith(b'{"result"') or data.startswith(b'{"id"'):
            return 0                    # method replies: the first book's parser counts them
        self.unrouted += 1
        return -1

    # ------------------------------------------------------------------ snapshots
    def _want_snapshot(self, i: int) -> None:
        """A book asks for a snapshot (from inside its state machine: only schedule here)."""
        if self._stopping:
            return
        task = self._fetching.get(i)
        if task is not None and not task.done():
            self._again.add(i)
            return
        self._fetching[i] = asyncio.get_running_loop().create_task(self._fetch_snapshot(i))

    async def _first_diff_buffered(self, i: int) -> None:
        """Wait (bounded) until this session has received a depth diff for book ``i``.

        Binance's order is: open the stream, buffer, *then* fetch the snapshot. A snapshot
        taken after a diff arrived is at least as new as that diff, so the buffered diffs
        bridge it; one fetched before any diff can describe a state whose diff this
        connection never received (it was sent before the subscription took effect), which
        costs a second snapshot."""
        deadline = asyncio.get_running_loop().time() + FIRST_DIFF_WAIT_S
        msgs = self.books[i].parser.messages
        while (msgs[_K_DEPTH] <= self._depth_at_connect.get(i, 0) and not self._stopping
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.002)

    async def _fetch_snapshot(self, i: int) -> None:
        book = self.books[i]
        url = f"{self.rest_url}{C.DEPTH_PATH}?symbol={book.spec.symbol}&limit={self.limit}"
        attempt = 0
        await self._first_diff_buffered(i)
        while not self._stopping and self.conn.connected:
            delay: float | None = None
            try:
                async with self._session().get(url) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        self._again.discard(i)
                        book.on_snapshot(body, now_ns())
                        self.beat_hook()
                        if i not in self._again and not book.awaiting_snapshot:
                            return
                        self._again.discard(i)   # unusable or already broken again: once more
                    else:
                        self.snapshot_errors += 1
                        log.warning("depth snapshot %s: HTTP %s", book.spec.symbol, resp.status)
                        retry_after = resp.headers.get("Retry-After")
                        if resp.status in (418, 429) and retry_after and retry_after.isdigit():
                            delay = float(retry_after)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                self.snapshot_errors += 1
                log.warning("depth snapshot %s: %s", book.spec.symbol, e)
            if delay is None:
                delay = self.backoff.delay(attempt, self._rng)
            attempt += 1
            await asyncio.sleep(delay)

    def _cancel_fetches(self) -> None:
        for task in self._fetching.values():
            task.cancel()
        self._fetching.clear()
        self._again.clear()

    # ------------------------------------------------------------------ reporting
    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(("md_events", "md_gaps", "book_resyncs", "snapshots", "msg_depth", "msg_ticker",
                             "msg_trade"), 0)
        for book in self.books:
            c = book.core.counters          # SYNC_COUNTERS order: gaps, resyncs, snapshots, ...
            out["md_events"] += int(book.core.published)
            out["md_gaps"] += int(c[0])
            out["book_resyncs"] += int(c[1])
            out["snapshots"] += int(c[2])
            msgs = book.parser.messages
            for k, name in _KIND_SLOTS.items():
                out[name] += int(msgs[k])
        out["reconnects"] = self.conn.stats.reconnects + (self.trade_conn.stats.reconnects if self.trade_conn else 0)
        return out

    def drops(self) -> dict[str, int]:
        from mmshm._native.binance_parse import DROP_NAMES

        out: dict[str, int] = {}
        for book in self.books:
            for k, n in enumerate(book.parser.drops):
                if k and n:
                    out[DROP_NAMES[k]] = out.get(DROP_NAMES[k], 0) + int(n)
        if self.unrouted:
            out["unrouted"] = self.unrouted
        return out

    def statuses(self) -> list[int]:
        return [int(b.status) for b in self.books]

    def details(self) -> dict[str, Any]:
        s = self.conn.stats
        return {
            "instruments": {b.spec.symbol: dict(b.all_counters(), status=MdStatus(b.status).name,
                                                published=int(b.core.published),
                                                publish_refused=int(b.core.publish_refused))
                            for b in self.books},
            "connection": {"connects": s.connects, "reconnects": s.reconnects, "failures": s.failures,
                           "disconnects": s.disconnects, "stale": s.stale, "messages": s.messages,
                           "bytes": s.bytes},
            "snapshot_errors": self.snapshot_errors, "unrouted": self.unrouted,
            **({"trade_connection": vars(self.trade_conn.stats) | {"backoff_delays": None}}
               if self.trade_conn is not None else {}),
        }


__all__ = ["BinanceFeedSource", "SNAPSHOT_LIMITS", "is_routed_host", "snapshot_limit", "specs_from_exchange_info", "stream_url"]
