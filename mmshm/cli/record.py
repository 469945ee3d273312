"""`mmshm record`: write live market data to a capture file (``<local ns> <raw JSON>`` lines).

Binance USD-M: subscribes to the combined stream of ``bookTicker``, ``depth@0ms`` and
``trade`` for each symbol, and after every (re)connect -- once the first frame shows the
subscription is live -- takes a REST depth snapshot per symbol and writes it as a line
too. That is Binance's documented order (open the stream, buffer, then fetch the
snapshot), so the capture replays through the book synchronisation exactly as live data
would. Hyperliquid: ``l2Book`` and ``trades`` subscriptions (full snapshots, no REST).

Frames are written byte-for-byte as received; the file is gzip when its name ends in
``.gz``. Reconnects use the connection manager's backoff; the run ends after
``--duration`` seconds or on SIGINT/SIGTERM, and prints a JSON summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp

from mmshm.venues.capture import CaptureWriter
from mmshm.venues.connection import BackoffPolicy, ConnectionConfig, WsConnection, run

VENUES = ("binance-usdm", "hyperliquid")


class Recorder:
    """Records one venue session into a :class:`CaptureWriter` until :meth:`stop`."""

    def __init__(self, writer: CaptureWriter, *, venue: str, symbols: list[str], ws_url: str,
                 rest_url: str | None, depth_speed: str = "0ms", trades: str = "trade",
                 snapshot_limit: int = 1000, silence_reconnect_s: float | None = 30.0) -> None:
        if venue not in VENUES:
            raise ValueError(f"venue must be one of {VENUES}")
        self.writer = writer
        self.venue = venue
        self.symbols = symbols
        self.rest_url = rest_url
        self.snapshot_limit = snapshot_limit
        self.frames = 0
        self.snapshots = 0
        self.dropped = 0
        self.snapshot_errors = 0
        self._need_snapshot = False
        self._tasks: set[asyncio.Task] = set()
        if venue == "binance-usdm":
            from mmshm.venues.binance_usdm.constants import market_streams, routed_stream_urls

            streams = [s for sym in symbols for s in market_streams(sym, depth_speed, trades)]
            # Production needs one connection per route (book streams, trades); the first
            # carries the book, so its (re)connects are what call for a snapshot.
            urls = routed_stream_urls(ws_url, streams)
            app_ping = None
        else:
            from mmshm.venues.hyperliquid.constants import PING_MESSAGE

            urls = [ws_url]
            app_ping = PING_MESSAGE
        self.conns = []
        for i, url in enumerate(urls):
            cfg = ConnectionConfig(url=url, name=f"record-{venue}-{i}", backoff=BackoffPolicy(base_s=0.5, cap_s=30.0),
                                   silence_timeout_s=None, silence_reconnect_s=silence_reconnect_s,
                                   app_ping_interval_s=50.0 if app_ping else None, app_ping_message=app_ping)
            self.conns.append(WsConnection(cfg, self._on_message,
                                           on_connect=self._on_connect if i == 0 else None))
        self.conn = self.conns[0]

    async def _on_connect(self, conn: WsConnection) -> None:
        if self.venue == "hyperliquid":
            from mmshm.venues.hyperliquid.parsing import subscription_messages

            for sym in self.symbols:
                for msg in subscription_messages(sym):
                    await conn.send(msg)
        else:
            self._need_snapshot = self.rest_url is not None

    def _on_message(self, data: bytes, recv_ns: int) -> None:
        self._write(recv_ns, data)
        if self._need_snapshot:
            self._need_snapshot = False
            task = asyncio.ensure_future(self._snapshots())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _write(self, recv_ns: int, data: bytes) -> bool:
        try:
            self.writer.write(recv_ns, data)
        except ValueError:
            self.dropped += 1   # a frame with a raw newline cannot be a line of the format
            return False
        self.frames += 1
        return True

    async def _snapshots(self) -> None:
        """One REST depth snapshot per symbol, retried a few times on failure."""
        assert self.rest_url is not None
        from mmshm.venues.binance_usdm.constants import DEPTH_PATH

        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for sym in self.symbols:
                url = f"{self.rest_url.rstrip('/')}{DEPTH_PATH}?symbol={sym}&limit={self.snapshot_limit}"
                for attempt in range(5):
                    try:
                        async with http.get(url) as resp:
                            body = await resp.read()
                            recv_ns = time.time_ns()
                            if resp.status == 200:
                                body = body.strip()
                                if b"\n" in body:
                                    body = json.dumps(json.loads(body), separators=(",", ":")).encode()
                                if self._write(recv_ns, body):
                                    self.snapshots += 1
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                        pass
                    self.snapshot_errors += 1
                    await asyncio.sleep(0.5 * 2**attempt)

    async def run(self, duration_s: float | None = None) -> None:
        runner = asyncio.ensure_future(asyncio.gather(*(c.run() for c in self.conns)))
        try:
            if duration_s is None:
                await runner
            else:
                done, _ = await asyncio.wait({runner}, timeout=duration_s)
                if runner in done:
                    runner.result()
        finally:
            await self.stop()
            runner.cancel()
            try:
                await runner
            except (asyncio.CancelledError, Exception):
                pass

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for conn in self.conns:
            await conn.stop()
        self.writer.flush()

    def summary(self) -> dict:
        stats = [c.stats for c in self.conns]
        return {"frames": self.frames, "snapshots": self.snapshots, "dropped": self.dropped,
                "snapshot_errors": self.snapshot_errors, "connections": len(stats),
                "connects": sum(s.connects for s in stats),
                "reconnects": sum(s.reconnects for s in stats), "bytes": sum(s.bytes for s in stats)}


def _default_urls(venue: str) -> tuple[str, str | None]:
    if venue == "binance-usdm":
        from mmshm.venues.binance_usdm.constants import REST_BASE, WS_BASE
        return WS_BASE, REST_BASE
    from mmshm.venues.hyperliquid.constants import WS_URL
    return WS_URL, None


async def _main(args: argparse.Namespace) -> int:
    ws_default, rest_default = _default_urls(args.venue)
    out = Path(args.output)
    if out.exists() and not args.append:
        print(f"mmshm record: {out} exists (use --append to add to it)", file=sys.stderr)
        return 2
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if args.venue == "binance-usdm":
        symbols = [s.upper() for s in symbols]
    writer = CaptureWriter(out)
    rec = Recorder(writer, venue=args.venue, symbols=symbols, ws_url=args.ws_url or ws_default,
                   rest_url=args.rest_url or rest_default, depth_speed=args.depth_speed,
                   trades=args.trades, snapshot_limit=args.snapshot_limit)
    loop = asyncio.get_running_loop()
    stopping = False

    def on_signal() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            asyncio.ensure_future(rec.stop())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    t0 = time.monotonic()
    try:
        await rec.run(args.duration)
    finally:
        writer.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    summary = dict(rec.summary(), file=str(out), venue=args.venue, symbols=symbols,
                   seconds=round(time.monotonic() - t0, 3))
    print(json.dumps(summary), file=sys.stderr if args.quiet else sys.stdout, flush=True)
    return 0


def run_record(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        print("mmshm record: --duration must be > 0", file=sys.stderr)
        return 2
    try:
        return run(_main(args))
    except KeyboardInterrupt:  # pragma: no cover
        return 130


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record", help="record live market data to a capture file",
        description="Record a venue's market data as '<local ns> <raw JSON>' lines (gzip if FILE ends "
                    "in .gz), including the REST depth snapshot taken after subscribing, so the "
                    "capture replays through the same parser and book sync as live data.")
    p.add_argument("--venue", choices=VENUES, default="binance-usdm")
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT (Hyperliquid: BTC)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="capture file (.gz = gzip)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--ws-url", default=None, help="WebSocket base URL (default: the venue's production URL)")
    p.add_argument("--rest-url", default=None, help="REST base URL (default: the venue's production URL)")
    p.add_argument("--depth-speed", default="0ms", choices=("0ms", "100ms", "250ms"), help="Binance depth stream speed")
    p.add_argument("--trades", default="trade", choices=("trade", "aggTrade"), help="Binance trade stream")
    p.add_argument("--snapshot-limit", type=int, default=1000, choices=(5, 10, 20, 50, 100, 500, 1000))
    p.add_argument("--append", action="store_true", help="append to an existing file")
    p.add_argument("--quiet", action="store_true", help="print the summary to stderr instead of stdout")
    p.set_defaults(func=run_record)
