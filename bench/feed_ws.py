"""Feed socket leg benchmark: venue WebSocket send -> the feed's ``on_message``.

A local aiohttp WebSocket server (as the sim venue uses), in its own process, sends a real
Binance USD-M combined-stream ``bookTicker`` frame from the capture every ``--interval-ms``
(20 ms: the market's pace, so the client runs cold after each sleep, as the feed does).
Each frame carries the server's CLOCK_MONOTONIC reading taken just before its send
(an extra ``"bench_ns"`` key); the client reads CLOCK_MONOTONIC first thing in
``on_message``. The latency is the difference, p50/p99 over ``--frames`` frames after
``--warmup`` ones, for

- ``figure``: ``mmshm.venues.connection.WsConnection`` (picows transport: frames handed
  to ``on_message`` from ``data_received``);
- ``peer``: the previous client, measured in the same run: the ``websockets`` asyncio
  client with the receive loop ``WsConnection`` used before (``await ws.recv(decode=False)``,
  receipt clock, counters, ``on_message``), same connect options.

Both clients run on uvloop in this process, one after the other, against a fresh server
process each. ``client_cpu_us_per_frame`` is this process's CPU time over the measured
frames divided by their count (the Python executed per frame, idle waiting excluded).
Prints one JSON object; the machine may be shared, rerun quiet for real numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAPTURE = REPO.parent / "shared" / "data" / "binance-usdm-btcusdt-20240808.gz"


def load_frames(path: Path, count: int) -> list[str]:
    """The first ``count`` bookTicker combined-stream frames of the capture (read, not copied)."""
    frames: list[str] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            _, _, raw = line.rstrip("\n").partition(" ")
            if '"stream":"btcusdt@bookTicker"' in raw:
                frames.append(raw)
                if len(frames) == count:
                    break
    if not frames:
        raise SystemExit(f"no bookTicker frames in {path}")
    return frames


# ----------------------------------------------------------------------------- server process
def serve(frames: list[str], interval_s: float, conn: "mp.connection.Connection") -> None:
    """aiohttp WebSocket server: after the client's "go", one stamped frame per interval."""
    import uvloop
    from aiohttp import WSMsgType, web

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "go":
                break
        for raw in frames:
            await asyncio.sleep(interval_s)
            t0 = time.monotonic_ns()
            await ws.send_str(f'{raw[:-1]},"bench_ns":{t0}}}')
        await ws.send_str("done")
        async for _ in ws:
            pass
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/stream", ws_handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        while not conn.poll():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    uvloop.run(main())


# ----------------------------------------------------------------------------- clients
Sink = Callable[[bytes, int], None]


async def run_picows(url: str, on_message: Sink, done: asyncio.Event) -> None:
    from mmshm.venues.connection import ConnectionConfig, WsConnection

    async def on_connect(c: WsConnection) -> None:
        await c.send("go")

    conn = WsConnection(ConnectionConfig(url=url, name="bench", silence_timeout_s=10.0), on_message,
                        on_connect=on_connect)
    task = asyncio.create_task(conn.run())
    await done.wait()
    await conn.stop()
    await task


async def run_websockets(url: str, on_message: Sink, done: asyncio.Event) -> None:
    """The receive loop of the websockets-based WsConnection this replaced."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from mmshm.venues.connection import ConnectionStats

    stats = ConnectionStats()
    clock = time.time_ns
    ws = await connect(url, open_timeout=10.0, ping_interval=20.0, ping_timeout=20.0, max_size=1 << 24,
                       compression=None, close_timeout=2)
    await ws.send("go")
    is_stale = False
    try:
        while not done.is_set():
            data = await ws.recv(decode=False)
            now = clock()
            stats.messages += 1
            stats.bytes += len(data)
            stats.last_message_ns = now
            if is_stale:
                is_stale = False
            on_message(data, now)
    except ConnectionClosed:
        pass
    finally:
        await ws.close()


async def measure(client, url: str, warmup: int) -> dict:
    got: list[tuple[int, bytes]] = []
    done = asyncio.Event()
    cpu: list[float] = []
    mono = time.monotonic_ns

    def on_message(data: bytes, recv_ns: int) -> None:
        got.append((mono(), data))
        if len(got) == warmup:
            cpu.append(time.process_time())
        if data == b"done":
            cpu.append(time.process_time())
            done.set()

    await asyncio.wait_for(client(url, on_message, done), 600)
    lat_us = []
    for t1, data in got[warmup:]:
        i = data.rfind(b'"bench_ns":')
        if i >= 0:
            lat_us.append((t1 - int(data[i + 11:-1])) / 1e3)
    lat_us.sort()
    n = len(lat_us)
    return {"frames": n,
            "p50_us": round(statistics.median(lat_us), 1),
            "p99_us": round(lat_us[min(n - 1, int(0.99 * n))], 1),
            "mean_us": round(statistics.fmean(lat_us), 1),
            "max_us": round(lat_us[-1], 1),
            "client_cpu_us_per_frame": round((cpu[1] - cpu[0]) / max(n, 1) * 1e6, 1)}


def one_run(name: str, frames: list[str], interval_s: float, warmup: int) -> dict:
    import uvloop

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(frames, interval_s, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            raise SystemExit("bench server did not start")
        port = parent.recv()
        url = f"ws://127.0.0.1:{port}/stream"
        client = run_picows if name == "picows" else run_websockets
        return uvloop.run(measure(client, url, warmup))
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    args = ap.parse_args()
    frames = load_frames(args.capture, args.frames + args.warmup)
    interval = args.interval_ms / 1e3
    figure = one_run("picows", frames, interval, args.warmup)
    peer = one_run("websockets", frames, interval, args.warmup)
    print(json.dumps({
        "bench": "feed_ws: venue WebSocket send -> WsConnection on_message (bookTicker frame every "
                 f"{args.interval_ms:g} ms, loopback, uvloop)",
        "figure": {"name": "WsConnection (picows)", **figure},
        "peer": {"name": "websockets asyncio client (previous WsConnection loop)", **peer},
        "ratio_p50": round(peer["p50_us"] / figure["p50_us"], 2),
        "ratio_p99": round(peer["p99_us"] / figure["p99_us"], 2),
        "ratio_cpu": round(peer["client_cpu_us_per_frame"] / max(figure["client_cpu_us_per_frame"], 0.1), 2),
        "frame_bytes": len(frames[0]),
    }, indent=2))


if __name__ == "__main__":
    main()
