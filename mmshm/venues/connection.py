"""WebSocket client connection manager: connect, subscribe, receive, reconnect, detect silence.

Venue adapters and the feed plug in through callbacks, so the Binance book sync state
machine (snapshot over REST, buffering, ``pu`` checks) sits on top without knowing about
sockets, and the recorder reuses the same resilience:

- every frame is handed over as raw ``bytes`` with ``time.time_ns()`` taken at receipt
  (the local receive timestamp of ``MARKET_EVENT.local_ts`` and of captures);
- a lost connection is retried with exponential backoff and *full jitter* (AWS
  architecture blog: delay = uniform(0, min(cap, base * 2**attempt))), which spreads the
  reconnects of many clients instead of synchronising them; the attempt count resets once
  a connection has stayed up for ``reset_after_s``;
- ``on_connect`` runs on every (re)connect, so subscriptions are re-sent automatically;
- keepalive: the library's ping/pong (and it answers the venue's pings), plus an optional
  application-level ping message for venues that want one (Hyperliquid ``{"method":"ping"}``);
- silence: no frame for ``silence_timeout_s`` -> ``on_stale`` once (the feed publishes
  STALE); optionally the connection is dropped and re-established after
  ``silence_reconnect_s``;
- counters (:class:`ConnectionStats`) for the feed to copy into shared memory.

The RNG and the sleep function are injectable so tests can check the backoff exactly.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger("mmshm.connection")

OnMessage = Callable[[bytes, int], Optional[Awaitable[None]]]
OnConnect = Callable[["WsConnection"], Awaitable[None]]


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with full jitter: ``uniform(0, min(cap_s, base_s * 2**attempt))``."""

    base_s: float = 0.25
    cap_s: float = 30.0
    reset_after_s: float = 30.0   # a connection up this long resets the attempt count

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.reset_after_s < 0:
            raise ValueError("need 0 < base_s <= cap_s and reset_after_s >= 0")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry number ``attempt`` (0-based)."""
        return min(self.cap_s, self.base_s * (2.0 ** min(attempt, 62)))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))


@dataclass
class ConnectionConfig:
    """Where to connect and how to stay connected."""

    url: str
    name: str = "ws"
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0     # library-level WebSocket pings
    ping_timeout_s: float | None = 20.0
    app_ping_interval_s: float | None = None  # application-level ping message, if the venue wants one
    app_ping_message: str | bytes | None = None
    silence_timeout_s: float | None = 10.0   # no frame this long -> on_stale
    silence_reconnect_s: float | None = None  # no frame this long -> drop and reconnect
    max_size: int = 1 << 24                  # largest frame accepted (Binance snapshots are big)
    max_attempts: int | None = None          # give up after this many failed attempts in a row


@dataclass
class ConnectionStats:
    """Counters of one managed connection (monotonic over its lifetime)."""

    messages: int = 0
    bytes: int = 0
    connects: int = 0          # successful handshakes
    reconnects: int = 0        # successful handshakes after the first
    failures: int = 0          # failed connection attempts
    disconnects: int = 0       # established connections that ended
    stale: int = 0             # silence timeouts reported
    app_pings: int = 0
    last_message_ns: int = 0   # time.time_ns() of the last frame
    connected: bool = False
    backoff_delays: list[float] = field(default_factory=list)  # last delays, for tests/inspection


class WsConnection:
    """One logical WebSocket session that survives disconnects.

    ``await run()`` connects and keeps reconnecting until :meth:`stop` (or ``max_attempts``
    failures in a row, then it raises ``ConnectionError``). Callbacks:

    - ``on_message(data: bytes, recv_ns: int)`` for every frame (sync; may return an awaitable);
    - ``on_connect(conn)`` after each handshake: send subscriptions with ``await conn.send(...)``;
    - ``on_disconnect(reason: str)`` when an established connection ends;
    - ``on_stale(silence_ns: int)`` once per silence period; ``on_live()`` when frames resume.
    """

    def __init__(self, config: ConnectionConfig, on_message: OnMessage, *,
                 on_connect: OnConnect | None = None,
                 on_disconnect: Callable[[str], Any] | None = None,
                 on_stale: Callable[[int], Any] | None = None,
                 on_live: Callable[[], Any] | None = None,
                 rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_stale = on_stale
        self._on_live = on_live
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock_ns = clock_ns
        self.stats = ConnectionStats()
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._attempt = 0
        self._is_stale = False

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def is_stale(self) -> bool:
        return self._is_stale

    async def send(self, message: str | bytes) -> None:
        """Send on the current connection (text frame); ConnectionError if not connected."""
        ws = self._ws
        if ws is None:
            raise ConnectionError(f"{self.config.name}: not connected")
        if isinstance(message, bytes):
            await ws.send(message, text=True)
        else:
            await ws.send(message)

    async def stop(self) -> None:
        """End the session: close the socket and make :meth:`run` return."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def drop(self, reason: str = "dropped by client") -> None:
        """Close the current connection (it will be re-established): e.g. after a sequence
        gap the feed may prefer a clean session."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close(1000, reason)

    async def run(self) -> None:
        cfg = self.config
        failures_in_row = 0
        while not self._stopping.is_set():
            try:
                ws = await connect(cfg.url, open_timeout=cfg.open_timeout_s,
                                   ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_timeout_s,
                                   max_size=cfg.max_size, compression=None, close_timeout=2)
            except InvalidURI:
                raise
            except (OSError, InvalidHandshake, asyncio.TimeoutError, ConnectionClosed, EOFError) as e:
                self.stats.failures += 1
                failures_in_row += 1
                log.info("%s: connect failed (%s)", cfg.name, e)
                if cfg.max_attempts is not None and failures_in_row >= cfg.max_attempts:
                    raise ConnectionError(f"{cfg.name}: {failures_in_row} connection attempts failed") from e
                await self._backoff()
                continue
            failures_in_row = 0
            up_since = time.monotonic()
            reason = await self._session(ws)
            self.stats.disconnects += 1
            self.stats.connected = False
            if self._on_disconnect is not None:
                self._call(self._on_disconnect, reason)
            if self._stopping.is_set():
                break
            if time.monotonic() - up_since >= cfg.backoff.reset_after_s:
                self._attempt = 0
            log.info("%s: disconnected (%s)", cfg.name, reason)
            await self._backoff()

    # ------------------------------------------------------------------ internals

    async def _backoff(self) -> None:
        delay = self.config.backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self.stats.backoff_delays.append(delay)
        del self.stats.backoff_delays[:-64]
        stop = asyncio.ensure_future(self._stopping.wait())
        nap = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({nap, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            nap.cancel()

    async def _session(self, ws: ClientConnection) -> str:
        """Run one established connection until it ends; returns why it ended."""
        cfg = self.config
        self._ws = ws
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.connected = True
        self.stats.last_message_ns = self._clock_ns()
        helpers = []
        try:
            if self._on_connect is not None:
                await self._on_connect(self)
            if cfg.silence_timeout_s or cfg.silence_reconnect_s:
                helpers.append(asyncio.create_task(self._watch_silence(ws)))
            if cfg.app_ping_interval_s and cfg.app_ping_message is not None:
                helpers.append(asyncio.create_task(self._app_ping(ws)))
            on_message = self._on_message
            stats = self.stats
            clock = self._clock_ns
            while True:
                data = await ws.recv(decode=False)
                now = clock()
                stats.messages += 1
                stats.bytes += len(data)
                stats.last_message_ns = now
                if self._is_stale:
                    self._is_stale = False
                    if self._on_live is not None:
                        self._call(self._on_live)
                result = on_message(data, now)
                if result is not None and inspect.isawaitable(result):
                    await result
        except ConnectionClosed as e:
            rcvd = e.rcvd
            return f"closed: code={rcvd.code if rcvd else None} reason={rcvd.reason if rcvd else ''}".strip()
        except Exception as e:  # a callback failed: drop the connection, keep the session
            log.exception("%s: session error", cfg.name)
            return f"error: {type(e).__name__}: {e}"
        finally:
            self._ws = None
            for h in helpers:
                h.cancel()
            for h in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await h
            with contextlib.suppress(Exception):
                await ws.close()

    async def _watch_silence(self, ws: ClientConnection) -> None:
        cfg = self.config
        limits = [x for x in (cfg.silence_timeout_s, cfg.silence_reconnect_s) if x]
        tick = max(0.005, min(limits) / 10.0)
        while True:
            await asyncio.sleep(tick)
            silence_ns = self._clock_ns() - self.stats.last_message_ns
            if cfg.silence_timeout_s and not self._is_stale and silence_ns >= cfg.silence_timeout_s * 1e9:
                self._is_stale = True
                self.stats.stale += 1
                if self._on_stale is not None:
                    self._call(self._on_stale, silence_ns)
            if cfg.silence_reconnect_s and silence_ns >= cfg.silence_reconnect_s * 1e9:
                log.info("%s: %.1f s of silence, reconnecting", cfg.name, silence_ns / 1e9)
                await ws.close(1000, "silence")
                return

    async def _app_ping(self, ws: ClientConnection) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.app_ping_interval_s)  # type: ignore[arg-type]
            msg = cfg.app_ping_message
            await ws.send(msg, text=True) if isinstance(msg, bytes) else await ws.send(msg)  # type: ignore[arg-type]
            self.stats.app_pings += 1

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a status callback; an async one is scheduled, an exception is logged not raised."""
        try:
            result = fn(*args)
            if result is not None and inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception:
            log.exception("%s: callback %r failed", self.config.name, fn)


def binance_subscribe(streams: list[str], request_id: int = 1, method: str = "SUBSCRIBE") -> str:
    """Binance's live subscription frame ``{"method":"SUBSCRIBE","params":[..],"id":n}``."""
    import json
    return json.dumps({"method": method, "params": list(streams), "id": request_id})


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when available; returns whether it is in use."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(main: Awaitable[Any]) -> Any:
    """Run a coroutine on uvloop where available (else the default asyncio loop)."""
    try:
        import uvloop
        return uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        return asyncio.run(main)  # type: ignore[arg-type]


__all__ = ["BackoffPolicy", "ConnectionConfig", "ConnectionStats", "WsConnection", "binance_subscribe",
           "install_uvloop", "run"]
