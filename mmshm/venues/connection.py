"""WebSocket client connection manager: connect, subscribe, receive, reconnect, detect silence.

Venue adapters and the feed plug in through callbacks, so the Binance book sync state
machine (snapshot over REST, buffering, ``pu`` checks) sits on top without knowing about
sockets, and the recorder reuses the same resilience:

- every message is handed over as raw ``bytes`` with ``time.time_ns()`` taken at receipt
  (the local receive timestamp of ``MARKET_EVENT.local_ts`` and of captures), straight
  from the socket's ``data_received``: the transport is picows (Cython), so a market
  frame costs one Python call into ``on_message`` instead of websockets' pure-Python
  frame parser, message assembler, futures and a task wake-up per frame;
- a lost connection is retried with exponential backoff and *full jitter* (AWS
  architecture blog: delay = uniform(0, min(cap, base * 2**attempt))), which spreads the
  reconnects of many clients instead of synchronising them; the attempt count resets once
  a connection has stayed up for ``reset_after_s``;
- ``on_connect`` runs on every (re)connect, so subscriptions are re-sent automatically;
- keepalive: picows' auto ping when the connection is idle for ``ping_interval_s``, closed
  if no pong within ``ping_timeout_s`` (and it answers the venue's pings), plus an optional
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
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from picows import (WSAutoPingStrategy, WSCloseCode, WSError, WSFrame, WSInvalidURL, WSListener, WSMsgType,
                    WSTransport, ws_connect)
from picows.url import parse_url
from websockets.exceptions import InvalidURI   # the error callers already catch for a bad URL

log = logging.getLogger("mmshm.connection")

OnMessage = Callable[[bytes, int], Optional[Awaitable[None]]]
OnConnect = Callable[["WsConnection"], Awaitable[None]]

_TEXT, _BINARY, _CONTINUATION, _CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION, WSMsgType.CLOSE
_CLOSE_WAIT_S = 2.0          # a closing handshake the peer does not finish in this time ends with a hard close
_MAX_CLOSE_REASON = 123      # bytes of reason a close frame can carry
_PAUSE_READING_AT = 64       # held messages before reading from the socket pauses (resumes at half)
_NO_PONG_TIMEOUT_S = 1e9     # ping_timeout_s None: ping, but never give up on the pong


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
    # picows' own socket/TLS layer (aiofastnet) instead of the event loop's (uvloop's)
    # transport; off: no latency gain measured on loopback (bench/feed_ws.py), and the
    # loop's transport and TLS are the long-proven ones.
    use_aiofastnet: bool = False


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
    oversize: int = 0          # messages over max_size (the connection is closed)
    protocol_errors: int = 0   # protocol violations by the peer (the connection is closed)
    last_message_ns: int = 0   # time.time_ns() of the last frame
    connected: bool = False
    backoff_delays: list[float] = field(default_factory=list)  # last delays, for tests/inspection


class WsConnection:
    """One logical WebSocket session that survives disconnects.

    ``await run()`` connects and keeps reconnecting until :meth:`stop` (or ``max_attempts``
    failures in a row, then it raises ``ConnectionError``). Callbacks:

    - ``on_message(data: bytes, recv_ns: int)`` for every complete text/binary message
      (sync, called straight from the socket's ``data_received``; it may return an
      awaitable, which is awaited before the next message is handed over);
    - ``on_connect(conn)`` after each handshake: send subscriptions with ``await conn.send(...)``;
      messages arriving before it returns are held and handed over in order afterwards;
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
        self._link: _Link | None = None
        self._stopping = asyncio.Event()
        self._attempt = 0
        self._dial = 0          # number of the current connection attempt (a late handshake of an abandoned one is closed)
        self._is_stale = False

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def is_stale(self) -> bool:
        return self._is_stale

    async def send(self, message: str | bytes) -> None:
        """Send on the current connection (text frame); ConnectionError if not connected."""
        link = self._link
        if link is None or not link.open:
            raise ConnectionError(f"{self.config.name}: not connected")
        link.transport.send(_TEXT, message.encode() if isinstance(message, str) else message)

    async def stop(self) -> None:
        """End the session: close the socket and make :meth:`run` return."""
        self._stopping.set()
        link = self._link
        if link is not None:
            link.close(WSCloseCode.OK, "")
            await link.closed()

    async def drop(self, reason: str = "dropped by client") -> None:
        """Close the current connection (it will be re-established): e.g. after a sequence
        gap the feed may prefer a clean session."""
        link = self._link
        if link is not None:
            link.close(WSCloseCode.OK, reason)
            await link.closed()

    async def run(self) -> None:
        cfg = self.config
        _check_url(cfg.url)
        failures_in_row = 0
        while not self._stopping.is_set():
            self._dial += 1
            dial = self._dial
            try:
                transport, link = await asyncio.wait_for(ws_connect(
                    lambda _request, _response: _Link(self, dial), cfg.url,
                    websocket_handshake_timeout=cfg.open_timeout_s,
                    enable_auto_ping=cfg.ping_interval_s is not None,
                    auto_ping_idle_timeout=cfg.ping_interval_s or 0.0,
                    auto_ping_reply_timeout=cfg.ping_timeout_s or _NO_PONG_TIMEOUT_S,
                    auto_ping_strategy=WSAutoPingStrategy.PING_WHEN_IDLE,
                    enable_auto_pong=True, max_frame_size=cfg.max_size, use_aiofastnet=cfg.use_aiofastnet,
                    logger_name=f"{cfg.name}"), cfg.open_timeout_s)
                if link is None:      # picows returns no listener when the socket closed mid-handshake
                    raise ConnectionError("connection lost during the handshake")
            except (OSError, WSError, asyncio.TimeoutError) as e:   # ConnectionError is an OSError
                self._dial += 1   # abandon the attempt: its handshake, should it still complete, is closed
                self.stats.failures += 1
                failures_in_row += 1
                log.info("%s: connect failed (%s)", cfg.name, e or type(e).__name__)
                if cfg.max_attempts is not None and failures_in_row >= cfg.max_attempts:
                    raise ConnectionError(f"{cfg.name}: {failures_in_row} connection attempts failed") from e
                await self._backoff()
                continue
            failures_in_row = 0
            up_since = time.monotonic()
            reason = await self._session(link)
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

    async def _session(self, link: _Link) -> str:
        """Run one established connection until it ends; returns why it ended."""
        cfg = self.config
        transport = link.transport
        self._link = link
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
        self.stats.connected = True
        self.stats.last_message_ns = self._clock_ns()
        helpers = []
        try:
            if self._stopping.is_set():
                link.close(WSCloseCode.OK, "")
            elif self._on_connect is not None:
                await self._on_connect(self)
            if cfg.silence_timeout_s or cfg.silence_reconnect_s:
                helpers.append(asyncio.create_task(self._watch_silence(link)))
            if cfg.app_ping_interval_s and cfg.app_ping_message is not None:
                helpers.append(asyncio.create_task(self._app_ping(link)))
            await link.release()      # hand over what arrived during on_connect, then deliver directly
            try:
                await transport.wait_disconnected()
            except Exception as e:    # picows closed the connection: a protocol violation (e.g. a frame over max_size)
                link.protocol_error(e)
            await link.settle()       # an awaitable on_message result still running finishes in order
            return link.reason()
        except Exception as e:        # on_connect failed: drop the connection, keep the session
            if isinstance(e, ConnectionError) and not link.open and link.error is None:
                await link.closed()   # the connection ended under on_connect (its send failed): say why
                return link.reason()
            log.exception("%s: session error", cfg.name)
            link.fail(e)
            return link.reason()
        finally:
            self._link = None
            for h in helpers:
                h.cancel()
            for h in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await h
            link.cancel_delivery()
            if not transport.is_disconnected:
                link.close(WSCloseCode.OK, "")
                try:
                    await link.closed()
                except asyncio.CancelledError:
                    transport.disconnect(False)
                    raise

    async def _watch_silence(self, link: _Link) -> None:
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
                link.close(WSCloseCode.OK, "silence")
                return

    async def _app_ping(self, link: _Link) -> None:
        cfg = self.config
        msg = cfg.app_ping_message
        payload = msg.encode() if isinstance(msg, str) else msg
        while True:
            await asyncio.sleep(cfg.app_ping_interval_s)  # type: ignore[arg-type]
            if not link.open:
                return
            link.transport.send(_TEXT, payload)
            self.stats.app_pings += 1

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a status callback; an async one is scheduled, an exception is logged not raised."""
        try:
            result = fn(*args)
            if result is not None and inspect.isawaitable(result):
                asyncio.ensure_future(result)
        except Exception:
            log.exception("%s: callback %r failed", self.config.name, fn)


class _Link(WSListener):
    """The picows listener of one connection: frames arrive in :meth:`on_ws_frame` straight
    from the transport's ``data_received`` (no task switch, no per-frame future); it
    assembles fragmented messages (picows delivers frames, not messages), holds messages
    while the owner is not ready for them (``on_connect`` running, an awaitable
    ``on_message`` result pending) and hands the rest to ``on_message`` at once."""

    def __init__(self, owner: WsConnection, dial: int) -> None:
        super().__init__()
        self.owner = owner
        self.dial = dial
        self.stats = owner.stats
        self.on_message = owner._on_message
        self.clock = owner._clock_ns
        self.max_size = owner.config.max_size
        self.transport: WSTransport = None  # type: ignore[assignment]  # set by on_ws_connected
        self.parts: list[bytes] | None = None   # fragments of the message being assembled
        self.parts_size = 0
        self.held = True                        # until on_connect has returned
        self.queue: deque[tuple[bytes, int]] = deque()
        self.paused = False                     # reading paused because the queue is long
        self.drainer: asyncio.Future[None] | None = None
        self.error: str | None = None           # why this side ended the connection (callback failure, bad frame)
        self.peer_close: tuple[int | None, str] | None = None

    # ---------------------------------------------------------------- picows callbacks
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.owner._dial != self.dial:   # run() gave up on this attempt (open timeout)
            transport.disconnect(False)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = self.clock()
        t = frame.msg_type
        if t is _CLOSE:
            payload = frame.get_payload_as_bytes()
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.peer_close = (code, payload[2:].decode("utf-8", "replace"))
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)   # answer the closing handshake
            transport.disconnect()
            return
        if self.error is not None or transport.is_close_frame_sent:
            # Closing (a failed callback, a protocol violation found by us or by picows,
            # whose parser goes on delivering after one): nothing more is handed over.
            return
        if t is _TEXT or t is _BINARY:
            if self.parts is not None:
                self._protocol_violation(WSCloseCode.PROTOCOL_ERROR, "data frame inside a fragmented message")
            elif frame.fin:
                self._message(frame.get_payload_as_bytes(), now)
            else:
                self.parts = [frame.get_payload_as_bytes()]
                self.parts_size = frame.payload_size
        elif t is _CONTINUATION:
            if self.parts is None:
                self._protocol_violation(WSCloseCode.PROTOCOL_ERROR, "continuation frame without a message")
                return
            self.parts_size += frame.payload_size
            if self.parts_size > self.max_size:
                self.stats.oversize += 1
                self._protocol_violation(WSCloseCode.MESSAGE_TOO_BIG,
                                         f"fragmented message over max_size={self.max_size}")
                return
            self.parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                data = b"".join(self.parts)
                self.parts = None
                self._message(data, now)
        # PING is answered by picows (enable_auto_pong); PONG is consumed by its auto-ping

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.parts = None

    # ---------------------------------------------------------------- delivery
    def _message(self, data: bytes, now: int) -> None:
        if self.held:
            self.queue.append((data, now))
            if len(self.queue) >= _PAUSE_READING_AT and not self.paused:
                self.paused = True          # backpressure on the socket, as a bounded receive queue would
                self.transport.underlying_transport.pause_reading()
            return
        try:
            result = self._deliver(data, now)
        except Exception as e:
            log.exception("%s: on_message failed", self.owner.config.name)
            self.fail(e)
            return
        if result is not None:
            self.held = True
            self.drainer = asyncio.ensure_future(self._drain(result))

    def _deliver(self, data: bytes, now: int) -> Awaitable[None] | None:
        stats = self.stats
        stats.messages += 1
        stats.bytes += len(data)
        stats.last_message_ns = now
        owner = self.owner
        if owner._is_stale:
            owner._is_stale = False
            if owner._on_live is not None:
                owner._call(owner._on_live)
        result = self.on_message(data, now)
        if result is not None and inspect.isawaitable(result):
            return result
        return None

    async def _drain(self, pending: Awaitable[None] | None = None) -> None:
        """Await ``pending``, then hand over the held messages in order (awaiting any
        awaitable result) until none is left; messages arriving meanwhile join the queue."""
        try:
            if pending is not None:
                await pending
            queue = self.queue
            while queue and self.error is None:
                data, now = queue.popleft()
                result = self._deliver(data, now)
                if result is not None:
                    await result
                if self.paused and len(queue) < _PAUSE_READING_AT // 2:
                    self._resume_reading()
        except Exception as e:
            log.exception("%s: on_message failed", self.owner.config.name)
            self.fail(e)
            return
        self.held = False
        self._resume_reading()

    def _resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if not self.transport.is_disconnected:
                self.transport.underlying_transport.resume_reading()

    async def release(self) -> None:
        """on_connect has returned: deliver what was held, from now on deliver directly."""
        await self._drain()

    async def settle(self) -> None:
        """Let a pending awaitable result and the messages queued behind it finish."""
        if self.drainer is not None and not self.drainer.done():
            with contextlib.suppress(Exception):
                await self.drainer

    def cancel_delivery(self) -> None:
        if self.drainer is not None and not self.drainer.done():
            self.drainer.cancel()
        self.queue.clear()

    # ---------------------------------------------------------------- closing
    @property
    def open(self) -> bool:
        t = self.transport
        return t is not None and not t.is_disconnected and not t.is_close_frame_sent

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Start the closing handshake; the socket is closed when the peer answers, or after
        ``_CLOSE_WAIT_S`` if it does not (a dead peer must not hold the session)."""
        t = self.transport
        if t is None or t.is_disconnected:
            return
        if not t.is_close_frame_sent:
            t.send_close(code, reason.encode()[:_MAX_CLOSE_REASON])
            asyncio.get_running_loop().call_later(_CLOSE_WAIT_S, t.disconnect, False)

    async def closed(self) -> None:
        """Wait until the socket is closed (never raises: the session reports why)."""
        with contextlib.suppress(Exception):
            await self.transport.wait_disconnected()

    def fail(self, e: BaseException) -> None:
        """A callback failed: drop the connection (the session reconnects)."""
        if self.error is None:
            self.error = f"error: {type(e).__name__}: {e}"
        self.close(WSCloseCode.INTERNAL_ERROR, "client error")

    def _protocol_violation(self, code: WSCloseCode, what: str) -> None:
        self.stats.protocol_errors += 1
        self.parts = None
        if self.error is None:
            self.error = f"error: {what}"
        log.warning("%s: %s, closing", self.owner.config.name, what)
        self.close(code, what)

    def protocol_error(self, e: BaseException) -> None:
        """picows found a protocol violation (a frame over max_size, a bad close code...)
        and closed the connection itself."""
        self.stats.protocol_errors += 1
        if e.args and e.args[0] == WSCloseCode.MESSAGE_TOO_BIG:
            self.stats.oversize += 1
        if self.error is None:
            self.error = f"error: {type(e).__name__}: {e}"

    def reason(self) -> str:
        """Why the connection ended: our error; else the close frame of whichever side
        closed first (ours: a drop, silence, picows' keepalive giving up on a pong); else a
        connection lost without a close frame."""
        if self.error is not None:
            return self.error
        hs = self.transport.close_handshake if self.transport is not None else None
        if hs is not None and hs.sent is not None and not hs.recv_then_sent:
            return f"closed by client: code={int(hs.sent.code)} reason={hs.sent.reason}".strip()
        if self.peer_close is not None:
            code, text = self.peer_close
            return f"closed: code={code} reason={text}".strip()
        return "closed: code=None reason=connection lost without a close frame"


def _check_url(url: str) -> None:
    """A URL that can never work is the caller's bug, not a reason to retry forever."""
    try:
        parse_url(url)
    except (WSInvalidURL, ValueError) as e:
        raise InvalidURI(url, str(e)) from e


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
