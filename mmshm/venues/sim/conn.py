"""One server-side WebSocket connection with an outgoing queue, so that synchronous engine
callbacks can publish without awaiting, and the channel's faults (drop after N messages,
stall) apply to what is actually written."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from mmshm.venues.sim.faults import FaultInjector

log = logging.getLogger(__name__)

#: A client that lets this many messages pile up is disconnected (Binance drops slow consumers).
MAX_QUEUE = 50_000


class Conn:
    def __init__(self, ws: web.WebSocketResponse, channel: str, faults: FaultInjector, *,
                 streams: set[str] | None = None, combined: bool = True) -> None:
        self.ws = ws
        self.channel = channel
        self.faults = faults
        #: subscriptions, lower-cased name -> name as the client spelled it
        self.streams: dict[str, str] = {}
        self.subscribe(streams or ())
        self.combined = combined
        self.sent = 0
        self.drop_after = faults.take_drop_budget(channel)
        self.queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._writer())

    def subscribe(self, names) -> None:
        for n in names:
            self.streams[str(n).lower()] = str(n)

    def unsubscribe(self, names) -> None:
        for n in names:
            self.streams.pop(str(n).lower(), None)

    def match(self, stream: str, base: str) -> str | None:
        """The subscription name (as the client spelled it) under which `stream` goes, or None.

        Speed variants of a stream (`@depth`, `@depth@100ms`, `@depth@0ms`) carry the same
        data here, so any of them receives the source's depth diffs."""
        name = self.streams.get(stream.lower())
        if name is not None:
            return name
        for low, name in self.streams.items():
            if low == base or low.startswith(base + "@"):
                return name
        return None

    def push(self, msg: bytes | str) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUE:
            log.warning("closing slow %s client (%d queued)", self.channel, self.queue.qsize())
            self.close()
            return
        self.queue.put_nowait(msg)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    async def _writer(self) -> None:
        try:
            while True:
                msg = await self.queue.get()
                if msg is None:
                    break
                await self.faults.wait_stall(self.channel)
                if self.ws.closed:
                    break
                if isinstance(msg, bytes):
                    await self.ws.send_str(msg.decode())
                else:
                    await self.ws.send_str(msg)
                self.sent += 1
                if self.drop_after is not None and self.sent >= self.drop_after:
                    self.faults.note_drop(self.channel)
                    break
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            if not self.ws.closed:
                try:
                    await self.ws.close()
                except Exception:  # noqa: BLE001 - closing a dead socket
                    pass

    async def wait_closed(self) -> None:
        try:
            await self._task
        except asyncio.CancelledError:
            pass
