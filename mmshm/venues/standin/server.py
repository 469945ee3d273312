"""A loopback stand-in for Binance USD-M market data, with fault injection.

Real sockets, real protocols: a ``websockets`` server for ``/stream?streams=a/b/c``
(combined frames ``{"stream":..,"data":..}``) and ``/ws/<stream>`` (raw data frames),
answering Binance's ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` method frames
and pinging clients; an ``aiohttp`` server for ``GET /fapi/v1/depth``,
``/fapi/v1/exchangeInfo``, ``/fapi/v1/time``, ``/fapi/v1/ping`` and the control API
``POST /_control/<fault>``. It exists so the feed, the recorder and the simulated venue are
tested against the wire protocol, including the failures a live venue produces, without
ever leaving 127.0.0.1.

The source plays like a live venue: one global position, every subscriber gets the
frames of its streams from the moment it subscribed. A capture pauses while nobody is
subscribed (so a fast replay does not run out before the client arrives); the synthetic
market runs continuously. Faults (one-shot unless stated):

- ``close_after(n, abrupt=False, repeat=False)``: close a connection after it received ``n``
  more frames (``abrupt`` drops TCP without a close frame; ``repeat`` re-arms for every connection);
- ``drop_diff(count=1)``: skip the next depth diff(s) for every client (a ``pu`` gap);
- ``malformed(kind="truncated"|"garbage")``: send a broken frame (valid UTF-8, invalid JSON)
  before the next real one;
- ``stall(seconds)``: stop sending (connections stay up, pings continue);
- ``outage(seconds=None)``: close every connection and refuse WebSocket and REST with 503
  until it ends (None = until ``clear_faults()``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from mmshm.venues.standin.sources import CaptureSource, Frame, SyntheticSource, canonical_stream, combine

log = logging.getLogger("mmshm.standin")

#: Depth-snapshot limits Binance accepts.
VALID_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
#: How long a snapshot request waits for the next diff before the current state is served.
SNAPSHOT_WAIT_S = 0.5


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    combined: bool
    streams: dict[str, str] = field(default_factory=dict)   # canonical -> name subscribed
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=64))
    sent: int = 0
    close_base: int = 0
    closed: bool = False

    def discard(self) -> None:
        """Mark closed and empty the queue, so a player blocked on ``put`` moves on."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()

    def wrap(self, frame: Frame) -> bytes | None:
        name = self.streams.get(canonical_stream(frame.stream))
        if name is None:
            return None
        if not self.combined:
            return frame.data
        return frame.combined if name == frame.stream else combine(name, frame.data)


@dataclass
class _Faults:
    close_after: int | None = None
    close_abrupt: bool = False
    close_repeat: bool = False
    drop_diffs: int = 0
    malformed: list[str] = field(default_factory=list)
    stall_until: float = 0.0          # monotonic seconds
    outage_until: float | None = None  # monotonic seconds; inf = until cleared


class StandinServer:
    """The stand-in server. ``await start()`` / ``await stop()`` or ``async with``.

    After start: ``ws_url`` (``ws://127.0.0.1:PORT``), ``rest_url`` (``http://127.0.0.1:PORT``),
    ``stats`` (counters), ``finished`` (set when a capture has been fully played).
    """

    def __init__(self, source: CaptureSource | SyntheticSource, *, host: str = "127.0.0.1",
                 ws_port: int = 0, rest_port: int = 0, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, send_buffer: int | None = 32768) -> None:
        """``send_buffer``: SO_SNDBUF of each client socket. Kept small so a fast replay
        does not park tens of thousands of frames in kernel buffers: a client syncs against
        a snapshot only after reading up to it, and faults reach it soon after injection."""
        self.source = source
        self._send_buffer = send_buffer
        self.host = host
        self._ws_port = ws_port
        self._rest_port = rest_port
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._clients: set[_Client] = set()
        self._faults = _Faults()
        self._subscribed = asyncio.Event()
        self._pending: dict[str, list[tuple[asyncio.Future, int]]] = {}
        self._tasks: list[asyncio.Task] = []
        self._ws_server = None
        self._runner: web.AppRunner | None = None
        self.ws_url = ""
        self.rest_url = ""
        self.position = 0              # capture: index of the next frame to play
        self.finished = asyncio.Event()
        self.stats: dict[str, int] = {
            "connections": 0, "refused": 0, "frames_played": 0, "messages_sent": 0, "bytes_sent": 0,
            "diffs_dropped": 0, "malformed_sent": 0, "closed_by_fault": 0, "snapshots_served": 0,
            "method_frames": 0, "stalls": 0, "outages": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> "StandinServer":
        self._ws_server = await serve(
            self._handle, self.host, self._ws_port, process_request=self._process_request,
            ping_interval=self._ping_interval, ping_timeout=self._ping_timeout, compression=None,
            max_queue=64, close_timeout=2, logger=log)
        ws_port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/fapi/v1/depth", self._rest_depth)
        app.router.add_get("/fapi/v1/exchangeInfo", self._rest_exchange_info)
        app.router.add_get("/fapi/v1/time", self._rest_time)
        app.router.add_get("/fapi/v1/ping", self._rest_ping)
        app.router.add_post("/_control/{fault}", self._rest_control)
        app.router.add_get("/_control/stats", self._rest_stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._rest_port)
        await site.start()
        rest_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ws_url = f"ws://{self.host}:{ws_port}"
        self.rest_url = f"http://{self.host}:{rest_port}"
        self._tasks.append(asyncio.create_task(self._play(), name="standin-player"))
        return self

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._ws_server is not None:
            self._ws_server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws_server.wait_closed(), 5)
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "StandinServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ------------------------------------------------------------------ faults (Python API)

    def close_after(self, n: int, *, abrupt: bool = False, repeat: bool = False) -> None:
        """Close a connection once it has received ``n`` more frames."""
        if n < 0:
            raise ValueError("n must be >= 0")
        f = self._faults
        f.close_after, f.close_abrupt, f.close_repeat = n, abrupt, repeat
        for c in self._clients:
            c.close_base = c.sent

    def drop_diff(self, count: int = 1) -> None:
        """Do not deliver the next ``count`` depth diffs (the book moves on: a sequence gap)."""
        self._faults.drop_diffs += max(0, count)

    def malformed(self, kind: str = "truncated") -> None:
        """Send one broken frame (``truncated`` JSON or ``garbage`` bytes) before the next frame."""
        if kind not in ("truncated", "garbage"):
            raise ValueError(f"unknown malformed kind {kind!r}")
        self._faults.malformed.append(kind)

    def stall(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (connections stay open and answer pings)."""
        self._faults.stall_until = time.monotonic() + max(0.0, seconds)
        self.stats["stalls"] += 1

    def outage(self, seconds: float | None = None) -> None:
        """Drop every connection and refuse new ones (HTTP 503) for ``seconds`` (None: until cleared)."""
        self._faults.outage_until = float("inf") if seconds is None else time.monotonic() + seconds
        self.stats["outages"] += 1
        for c in list(self._clients):
            asyncio.ensure_future(self._close_client(c, abrupt=False, reason="service unavailable"))

    def clear_faults(self) -> None:
        self._faults = _Faults()

    def _in_outage(self) -> bool:
        until = self._faults.outage_until
        if until is None:
            return False
        if time.monotonic() >= until:
            self._faults.outage_until = None
            return False
        return True

    # ------------------------------------------------------------------ WebSocket

    def _process_request(self, connection: ServerConnection, request):
        path = urlsplit(request.path).path
        if self._in_outage():
            self.stats["refused"] += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "outage\n")
        if not (path == "/stream" or path == "/ws" or path.startswith("/ws/")):
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown path\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        if self._send_buffer:
            sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        parts = urlsplit(ws.request.path)
        if parts.path == "/stream":
            combined = True
            names = [s for q in parse_qs(parts.query).get("streams", []) for s in q.split("/") if s]
        else:
            combined = False
            names = [s for s in parts.path[len("/ws/"):].split("/") if s]
        client = _Client(ws, combined)
        self._clients.add(client)
        self._subscribe(client, names)
        self.stats["connections"] += 1
        if self._faults.close_repeat and self._faults.close_after is not None:
            client.close_base = 0
        writer = asyncio.create_task(self._writer(client))
        try:
            async for message in ws:
                await self._on_method(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            client.discard()
            self._update_subscribed()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self._update_subscribed()

    def _subscribe(self, client: _Client, names: list[str]) -> None:
        for n in names:
            client.streams[canonical_stream(n)] = n
        self._update_subscribed()

    def _update_subscribed(self) -> None:
        if any(c.streams for c in self._clients):
            self._subscribed.set()
        else:
            self._subscribed.clear()

    async def _on_method(self, client: _Client, message: str | bytes) -> None:
        """Binance's live subscription methods; errors use Binance's codes (2 invalid request, 3 invalid JSON)."""
        self.stats["method_frames"] += 1
        try:
            req = orjson.loads(message)
        except orjson.JSONDecodeError:
            await client.ws.send(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}), text=True)
            return
        rid = req.get("id") if isinstance(req, dict) else None
        method = req.get("method") if isinstance(req, dict) else None
        params = req.get("params", []) if isinstance(req, dict) else None
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list) and all(isinstance(p, str) for p in params):
            if method == "SUBSCRIBE":
                self._subscribe(client, params)
            else:
                for p in params:
                    client.streams.pop(canonical_stream(p), None)
                self._update_subscribed()
            reply = {"result": None, "id": rid}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(client.streams.values()), "id": rid}
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            reply = {"result": True if method == "GET_PROPERTY" else None, "id": rid}
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}
        await client.ws.send(orjson.dumps(reply), text=True)

    async def _writer(self, client: _Client) -> None:
        ws = client.ws
        while True:
            payload = await client.queue.get()
            f = self._faults
            try:
                await ws.send(payload, text=True)
            except ConnectionClosed:
                return
            client.sent += 1
            self.stats["messages_sent"] += 1
            self.stats["bytes_sent"] += len(payload)
            if f.close_after is not None and client.sent - client.close_base >= f.close_after:
                if not f.close_repeat:
                    f.close_after = None
                self.stats["closed_by_fault"] += 1
                await self._close_client(client, abrupt=f.close_abrupt, reason="fault: close after n")
                return

    async def _close_client(self, client: _Client, *, abrupt: bool, reason: str) -> None:
        self._clients.discard(client)
        client.discard()
        self._update_subscribed()
        if abrupt:
            transport = client.ws.transport
            if transport is not None:
                transport.abort()
        else:
            with contextlib.suppress(Exception):
                await client.ws.close(1001, reason)

    # ------------------------------------------------------------------ playing

    async def _deliver(self, frame: Frame) -> None:
        f = self._faults
        if frame.last_id and f.drop_diffs > 0:
            f.drop_diffs -= 1
            self.stats["diffs_dropped"] += 1
            return
        while f.malformed:
            kind = f.malformed.pop(0)
            bad = frame.combined[: len(frame.combined) // 2] if kind == "truncated" else b"\x01 not json {"
            for c in list(self._clients):
                if c.streams and not c.closed:
                    await c.queue.put(bad)
                    self.stats["malformed_sent"] += 1
        for c in list(self._clients):
            payload = c.wrap(frame)
            if payload is not None and not c.closed:
                await c.queue.put(payload)

    async def _hold(self) -> None:
        """Wait while a stall or an outage is in force."""
        while True:
            now = time.monotonic()
            if self._faults.stall_until > now:
                await asyncio.sleep(min(0.05, self._faults.stall_until - now))
            elif self._in_outage():
                await asyncio.sleep(0.05)
            else:
                return

    def _resolve_snapshots(self, symbol: str, make) -> None:
        pending = self._pending.pop(symbol, None)
        if not pending:
            return
        for fut, limit in pending:
            if not fut.done():
                fut.set_result(make(limit))

    async def _play(self) -> None:
        if isinstance(self.source, CaptureSource):
            await self._play_capture(self.source)
        else:
            await self._play_synthetic(self.source)

    async def _play_capture(self, src: CaptureSource) -> None:
        t0_rec = t0 = None
        frames = src.frames
        while self.position < len(frames):
            await self._subscribed.wait()
            await self._hold()
            frame = frames[self.position]
            if src.speed is not None:
                if t0_rec is None:
                    t0_rec, t0 = frame.local_ns, time.monotonic_ns()
                wait = t0 + int((frame.local_ns - t0_rec) / src.speed) - time.monotonic_ns()
                if wait > 0:
                    await asyncio.sleep(wait / 1e9)
            src.on_played(self.position)
            self.position += 1
            if frame.last_id:
                self._resolve_snapshots(frame.symbol, lambda lim: src.snapshot_now(frame.symbol, lim, self.position))
            self.stats["frames_played"] += 1
            await self._deliver(frame)
            if src.speed is None and self.position % 256 == 0:
                await asyncio.sleep(0)
        self.finished.set()

    async def _play_synthetic(self, src: SyntheticSource) -> None:
        step_s = src.step_ms / 1000.0
        last = time.monotonic_ns()
        while True:
            await asyncio.sleep(step_s)
            await self._hold()
            now = time.monotonic_ns()
            dt = int((now - last) * src.speed)
            last = now
            frames = list(src.step(dt))
            for sym in {f.symbol for f in frames if f.last_id}:
                self._resolve_snapshots(sym, lambda lim, s=sym: src.snapshot_now(s, lim))
            for frame in frames:
                self.stats["frames_played"] += 1
                await self._deliver(frame)

    # ------------------------------------------------------------------ REST

    def _rest_error(self, status: int, code: int, msg: str) -> web.Response:
        return web.Response(status=status, body=orjson.dumps({"code": code, "msg": msg}),
                            content_type="application/json")

    async def _rest_depth(self, request: web.Request) -> web.StreamResponse:
        if self._in_outage():
            return web.Response(status=503, text="outage")
        symbol = request.query.get("symbol", "")
        try:
            limit = int(request.query.get("limit", "500"))
        except ValueError:
            return self._rest_error(400, -1100, "Illegal characters found in parameter 'limit'.")
        if limit not in VALID_LIMITS:
            return self._rest_error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        src = self.source
        if symbol not in src.symbols:
            return self._rest_error(400, -1121, "Invalid symbol.")
        body: bytes | None = None
        if isinstance(src, CaptureSource):
            body = src.snapshot_now(symbol, limit, self.position)
            if body is not None and src.bridge_index is not None and self.position <= src.bridge_index:
                pass  # the recorded snapshot: valid for anyone still to receive the bridge diff
            elif not self.finished.is_set():
                body = await self._await_snapshot(symbol, limit) or body
        else:
            body = await self._await_snapshot(symbol, limit) or src.snapshot_now(symbol, limit)
        if body is None:
            return self._rest_error(503, -1003, "No snapshot available for this symbol yet.")
        self.stats["snapshots_served"] += 1
        return web.Response(body=body, content_type="application/json")

    async def _await_snapshot(self, symbol: str, limit: int) -> bytes | None:
        """A snapshot cut just before the next diff is sent (so the client will get that diff)."""
        fut = asyncio.get_running_loop().create_future()
        self._pending.setdefault(symbol, []).append((fut, limit))
        try:
            return await asyncio.wait_for(fut, SNAPSHOT_WAIT_S)
        except asyncio.TimeoutError:
            lst = self._pending.get(symbol, [])
            self._pending[symbol] = [p for p in lst if p[0] is not fut]
            return None

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        if self._in_outage():
            return web.Response(status=503, text="outage")
        return web.Response(body=orjson.dumps(self.source.exchange_info()), content_type="application/json")

    async def _rest_time(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"serverTime": time.time_ns() // 1_000_000}),
                            content_type="application/json")

    async def _rest_ping(self, request: web.Request) -> web.Response:
        return web.Response(body=b"{}", content_type="application/json")

    async def _rest_control(self, request: web.Request) -> web.Response:
        fault = request.match_info["fault"]
        try:
            args = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._rest_error(400, -1, "body must be JSON")
        try:
            if fault == "close_after":
                self.close_after(int(args.get("n", 0)), abrupt=bool(args.get("abrupt", False)),
                                 repeat=bool(args.get("repeat", False)))
            elif fault == "drop_diff":
                self.drop_diff(int(args.get("count", 1)))
            elif fault == "malformed":
                self.malformed(str(args.get("kind", "truncated")))
            elif fault == "stall":
                self.stall(float(args["seconds"]))
            elif fault == "outage":
                s = args.get("seconds")
                self.outage(None if s is None else float(s))
            elif fault == "clear":
                self.clear_faults()
            else:
                return self._rest_error(404, -1, f"unknown fault {fault!r}")
        except (KeyError, TypeError, ValueError) as e:
            return self._rest_error(400, -1, f"bad arguments for {fault}: {e}")
        return web.Response(body=orjson.dumps({"ok": True, "fault": fault}), content_type="application/json")

    async def _rest_stats(self, request: web.Request) -> web.Response:
        body = dict(self.stats, clients=len(self._clients), position=self.position,
                    finished=self.finished.is_set())
        return web.Response(body=orjson.dumps(body), content_type="application/json")


__all__ = ["StandinServer", "VALID_LIMITS"]
