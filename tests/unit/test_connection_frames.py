"""WsConnection's transport duties on loopback servers that misbehave on purpose:
fragmented messages (assembled, bounded by max_size), messages arriving before
``on_connect`` returns (held, then handed over in order with their receipt time), the
peer's close code in the disconnect reason, keepalive pings (answered; an unanswered one
drops and re-dials), failing and asynchronous ``on_message`` callbacks, bad URLs."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import WSMsgType as AioMsgType
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidURI

from test_connection import until   # the same wait as the connection's other tests

from mmshm.venues.connection import BackoffPolicy, ConnectionConfig, WsConnection

FAST = BackoffPolicy(base_s=0.01, cap_s=0.02)


@asynccontextmanager
async def ws_server(handler: Callable[[ServerConnection, int], Awaitable[None]],
                    **kw) -> AsyncIterator[str]:
    """A websockets server on an ephemeral port; ``handler(ws, n)`` gets the connection number."""
    count = 0

    async def wrapped(ws: ServerConnection) -> None:
        nonlocal count
        count += 1
        try:
            await handler(ws, count)
        except ConnectionClosed:
            pass

    async with serve(wrapped, "127.0.0.1", 0, compression=None, **kw) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


async def hold(ws: ServerConnection) -> None:
    """Keep the connection open, reading (so close frames are answered) until it ends."""
    async for _ in ws:
        pass


async def run_until(conn: WsConnection, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    task = asyncio.create_task(conn.run())
    try:
        await until(cond, timeout)
    finally:
        await conn.stop()
        await asyncio.wait_for(task, 5)


def recording_conn(url: str, **cfg) -> tuple[WsConnection, list[bytes], list[str]]:
    """A connection to ``url`` (no silence timeout, fast backoff, ``cfg`` on top) that keeps
    every message in ``got`` and every disconnect reason in ``reasons``."""
    got: list[bytes] = []
    reasons: list[str] = []
    conn = WsConnection(ConnectionConfig(url=url, silence_timeout_s=None, backoff=FAST, **cfg),
                        lambda d, ns: got.append(d), on_disconnect=reasons.append)
    return conn, got, reasons


@pytest.mark.timeout(30)
def test_fragmented_messages_are_assembled_in_order() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send("first")
        await ws.send(['{"a":', '1,', '"b":2}'])            # a text message in three frames
        await ws.send([b"\x00\x01", b"\x02"])                # a binary one in two
        await ws.send("last")
        await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            conn, got, _ = recording_conn(url)
            await run_until(conn, lambda: len(got) >= 4)
            assert got == [b"first", b'{"a":1,"b":2}', b"\x00\x01\x02", b"last"]
            assert conn.stats.messages == 4 and conn.stats.bytes == sum(map(len, got))
            assert conn.stats.oversize == 0 and conn.stats.reconnects == 0

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_fragmented_message_over_max_size_is_counted_and_closes_then_reconnects() -> None:
    close_codes: list[int | None] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 1:
            await ws.send([b"x" * 60, b"y" * 60])    # each frame fits max_size=100, the message does not
            try:
                await ws.recv()
            except ConnectionClosed as e:
                close_codes.append(e.rcvd.code if e.rcvd else None)
            return
        await ws.send(b"small")
        await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            conn, got, reasons = recording_conn(url, max_size=100)
            await run_until(conn, lambda: got == [b"small"])
            assert conn.stats.oversize == 1 and conn.stats.protocol_errors == 1
            assert conn.stats.reconnects == 1
            assert reasons[0].startswith("error:") and "max_size=100" in reasons[0]
            assert close_codes == [1009]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_single_frame_over_max_size_closes_and_is_counted() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(b"z" * (200 if n == 1 else 10))
        await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            conn, got, reasons = recording_conn(url, max_size=100)
            await run_until(conn, lambda: len(got) == 1)
            assert got == [b"z" * 10] and conn.stats.oversize == 1
            assert reasons[0].startswith("error:")

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_messages_before_on_connect_returns_are_held_and_delivered_in_order() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        for i in range(100):                  # more than the reading-pause threshold
            await ws.send(f"m{i}")
        await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            events: list[str] = []
            stamps: list[int] = []
            connect_done_ns = 0

            async def on_connect(conn: WsConnection) -> None:
                nonlocal connect_done_ns
                events.append("connect")
                await asyncio.sleep(0.3)          # the server's messages arrive meanwhile
                await conn.send("subscribe")
                connect_done_ns = time.time_ns()

            def on_message(data: bytes, ns: int) -> None:
                events.append(data.decode())
                stamps.append(ns)

            conn = WsConnection(ConnectionConfig(url=url, silence_timeout_s=None, backoff=FAST), on_message,
                                on_connect=on_connect)
            await run_until(conn, lambda: len(events) >= 101)
            assert events == ["connect"] + [f"m{i}" for i in range(100)]
            # Receipt time, not hand-over time: the first messages were received during on_connect.
            assert stamps == sorted(stamps) and stamps[0] < connect_done_ns

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_peer_close_code_and_reason_are_in_the_disconnect_reason() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send("hello")
        if n == 1:
            await ws.close(4001, "bye now")
        else:
            await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            conn, _, reasons = recording_conn(url)
            await run_until(conn, lambda: conn.stats.reconnects >= 1 and conn.stats.messages >= 2)
            assert reasons[0] == "closed: code=4001 reason=bye now"

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_venue_pings_are_answered() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await hold(ws)

    async def main() -> None:
        # The server pings every 50 ms and closes a connection that misses a pong for 200 ms.
        async with ws_server(handler, ping_interval=0.05, ping_timeout=0.2) as url:
            conn = WsConnection(ConnectionConfig(url=url, silence_timeout_s=None, backoff=FAST,
                                                 ping_interval_s=None), lambda d, ns: None)
            task = asyncio.create_task(conn.run())
            await until(lambda: conn.connected)
            await asyncio.sleep(0.8)
            assert conn.connected and conn.stats.disconnects == 0
            await conn.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_unanswered_keepalive_ping_drops_and_reconnects() -> None:
    connections = 0
    pings = 0

    async def handler(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections, pings
        connections += 1
        ws = web.WebSocketResponse(autoping=False)       # pings reach us and are NOT answered
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == AioMsgType.PING:
                pings += 1
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            conn, _, reasons = recording_conn(f"ws://127.0.0.1:{port}/", ping_interval_s=0.1, ping_timeout_s=0.1)
            await run_until(conn, lambda: conn.stats.reconnects >= 1)
            assert pings >= 1 and connections >= 2
            assert "1001" in reasons[0] and "ping" in reasons[0]
        finally:
            await runner.cleanup()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_failing_on_message_drops_the_connection_and_the_session_goes_on() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send("boom" if n == 1 else "fine")
        await ws.send("after")
        await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            got: list[bytes] = []
            reasons: list[str] = []

            def on_message(data: bytes, ns: int) -> None:
                if data == b"boom":
                    raise ValueError("bad frame")
                got.append(data)

            conn = WsConnection(ConnectionConfig(url=url, silence_timeout_s=None, backoff=FAST), on_message,
                                on_disconnect=reasons.append)
            await run_until(conn, lambda: got[:2] == [b"fine", b"after"])
            assert reasons[0] == "error: ValueError: bad frame"
            assert b"after" not in got[:1]        # nothing of the failed connection was handed over after it

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_awaitable_on_message_results_are_awaited_in_order() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        for i in range(20):
            await ws.send(str(i))
        await hold(ws)

    async def main() -> None:
        async with ws_server(handler) as url:
            done: list[int] = []

            def on_message(data: bytes, ns: int):
                i = int(data)
                if i % 5 == 0:                     # every fifth message needs async work first
                    async def slow() -> None:
                        await asyncio.sleep(0.02)
                        done.append(i)
                    return slow()
                done.append(i)
                return None

            conn = WsConnection(ConnectionConfig(url=url, silence_timeout_s=None, backoff=FAST), on_message)
            await run_until(conn, lambda: len(done) >= 20)
            assert done == list(range(20))

    asyncio.run(main())


@pytest.mark.timeout(10)
@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "ws://127.0.0.1:notaport/", "ws:///nohost"])
def test_bad_url_raises_invalid_uri(url: str) -> None:
    conn = WsConnection(ConnectionConfig(url=url, silence_timeout_s=None), lambda d, ns: None)
    with pytest.raises(InvalidURI):
        asyncio.run(conn.run())
