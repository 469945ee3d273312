"""WsConnection against the real stand-in server on loopback: reconnect, backoff, silence, resubscribe."""
from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from mmshm.venues.connection import BackoffPolicy, ConnectionConfig, WsConnection, binance_subscribe
from mmshm.venues.standin import StandinServer, SyntheticSource

STREAMS = ["btcusdt@bookTicker", "btcusdt@depth@0ms", "btcusdt@trade"]


def synthetic(speed: float = 20.0) -> SyntheticSource:
    return SyntheticSource(["BTCUSDT"], seed=1, speed=speed, step_ms=5)


async def until(cond, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_backoff_policy_bounds() -> None:
    p = BackoffPolicy(base_s=0.1, cap_s=1.0)
    assert [p.ceiling(i) for i in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    rng = random.Random(3)
    for attempt in range(50):
        assert 0.0 <= p.delay(attempt, rng) <= p.ceiling(attempt)
    assert p.ceiling(10_000) == 1.0  # no overflow
    with pytest.raises(ValueError):
        BackoffPolicy(base_s=2.0, cap_s=1.0)


@pytest.mark.timeout(30)
def test_reconnects_after_server_closes_and_resubscribes() -> None:
    async def main() -> None:
        async with StandinServer(synthetic()) as server:
            frames: list[bytes] = []
            subscribes = 0

            async def on_connect(conn: WsConnection) -> None:
                nonlocal subscribes
                subscribes += 1
                await conn.send(binance_subscribe(STREAMS, request_id=subscribes))

            cfg = ConnectionConfig(url=server.ws_url + "/ws", backoff=BackoffPolicy(base_s=0.01, cap_s=0.05),
                                   silence_timeout_s=None)
            conn = WsConnection(cfg, lambda data, ns: frames.append(data), on_connect=on_connect)
            task = asyncio.create_task(conn.run())
            await until(lambda: len(frames) > 20)
            server.close_after(30)
            await until(lambda: conn.stats.reconnects >= 1)
            before = len(frames)
            # Only a resubscription brings data on the new connection (/ws has no streams in its URL).
            await until(lambda: len(frames) > before + 50)
            assert subscribes == 2
            assert server.stats["closed_by_fault"] == 1
            acks = [f for f in frames if f.startswith(b'{"result"')]
            assert [orjson.loads(a)["id"] for a in acks] == [1, 2]
            s = conn.stats
            assert s.connects == 2 and s.disconnects == 1 and s.messages == len(frames)
            assert s.bytes == sum(len(f) for f in frames)
            await conn.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_backoff_grows_with_full_jitter_while_the_server_refuses() -> None:
    async def main() -> None:
        async with StandinServer(synthetic()) as server:
            server.outage()  # refuse every handshake with 503
            slept: list[float] = []

            async def fake_sleep(s: float) -> None:
                slept.append(s)
                await asyncio.sleep(0)

            policy = BackoffPolicy(base_s=0.5, cap_s=4.0)
            cfg = ConnectionConfig(url=server.ws_url + "/stream?streams=btcusdt@trade", backoff=policy,
                                   max_attempts=8, silence_timeout_s=None)
            conn = WsConnection(cfg, lambda d, n: None, rng=random.Random(1234), sleep=fake_sleep)
            with pytest.raises(ConnectionError):
                await conn.run()
            assert conn.stats.failures == 8 and conn.stats.connects == 0
            assert server.stats["refused"] == 8
            expected_rng = random.Random(1234)
            expected = [expected_rng.uniform(0, min(4.0, 0.5 * 2**i)) for i in range(7)]
            assert slept == pytest.approx(expected)
            for i, d in enumerate(slept):
                assert 0 <= d <= min(4.0, 0.5 * 2**i)
            # Full jitter: not simply the ceiling, and the ceiling doubles up to the cap.
            assert any(d < 0.9 * min(4.0, 0.5 * 2**i) for i, d in enumerate(slept))

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_attempt_count_resets_after_a_stable_connection() -> None:
    async def main() -> None:
        async with StandinServer(synthetic()) as server:
            slept: list[float] = []

            async def fake_sleep(s: float) -> None:
                slept.append(s)
                await asyncio.sleep(0.01)

            # reset_after 0: every established connection counts as stable.
            cfg = ConnectionConfig(url=server.ws_url + "/stream?streams=btcusdt@depth@0ms",
                                   backoff=BackoffPolicy(base_s=0.2, cap_s=10.0, reset_after_s=0.0),
                                   silence_timeout_s=None)
            got: list[bytes] = []
            conn = WsConnection(cfg, lambda d, n: got.append(d), rng=random.Random(9), sleep=fake_sleep)
            task = asyncio.create_task(conn.run())
            server.close_after(5, repeat=True)
            await until(lambda: conn.stats.reconnects >= 4)
            await conn.stop()
            await asyncio.wait_for(task, 5)
            assert all(d <= 0.2 for d in slept)  # attempt 0 every time

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_silence_reports_stale_then_live_and_can_force_reconnect() -> None:
    async def main() -> None:
        async with StandinServer(synthetic()) as server:
            events: list[str] = []
            cfg = ConnectionConfig(url=server.ws_url + "/stream?streams=btcusdt@depth@0ms",
                                   backoff=BackoffPolicy(base_s=0.01, cap_s=0.02), silence_timeout_s=0.3)
            conn = WsConnection(cfg, lambda d, n: None, on_stale=lambda ns: events.append(f"stale:{ns >= 0.3e9}"),
                                on_live=lambda: events.append("live"))
            task = asyncio.create_task(conn.run())
            await until(lambda: conn.stats.messages > 10)
            server.stall(1.0)
            await until(lambda: "stale:True" in events)
            assert conn.is_stale and conn.stats.stale == 1
            await until(lambda: "live" in events)
            assert not conn.is_stale and conn.stats.reconnects == 0  # same connection survived
            # With silence_reconnect the manager drops a silent connection and dials again.
            conn.config.silence_reconnect_s = 0.5
            server.stall(1.5)
            await until(lambda: conn.stats.reconnects >= 1)
            await conn.stop()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_receive_timestamps_are_local_realtime_and_monotone() -> None:
    import time

    async def main() -> None:
        async with StandinServer(synthetic()) as server:
            stamps: list[int] = []
            cfg = ConnectionConfig(url=server.ws_url + "/stream?streams=btcusdt@trade", silence_timeout_s=None)
            conn = WsConnection(cfg, lambda d, n: stamps.append(n))
            t0 = time.time_ns()
            task = asyncio.create_task(conn.run())
            await until(lambda: len(stamps) > 20)
            await conn.stop()
            await asyncio.wait_for(task, 5)
            assert stamps == sorted(stamps) and stamps[0] >= t0 and stamps[-1] <= time.time_ns()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_abrupt_tcp_drop_is_a_disconnect_and_reconnects() -> None:
    async def main() -> None:
        async with StandinServer(synthetic()) as server:
            reasons: list[str] = []
            cfg = ConnectionConfig(url=server.ws_url + "/stream?streams=btcusdt@depth@0ms",
                                   backoff=BackoffPolicy(base_s=0.01, cap_s=0.02), silence_timeout_s=None)
            conn = WsConnection(cfg, lambda d, n: None, on_disconnect=reasons.append)
            task = asyncio.create_task(conn.run())
            server.close_after(10, abrupt=True)
            await until(lambda: conn.stats.reconnects >= 1 and conn.stats.messages > 20)
            await conn.stop()
            await asyncio.wait_for(task, 5)
            assert reasons[0].startswith("closed") and "1000" not in reasons[0]

    asyncio.run(main())
