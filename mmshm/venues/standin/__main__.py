"""``python -m mmshm.venues.standin``: run the stand-in server as its own process.

Prints one JSON line ``{"ws_url":..,"rest_url":..,"control_url":..,"pid":..}`` once it is
listening, then serves until SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from mmshm.venues.standin.server import StandinServer
from mmshm.venues.standin.sources import CaptureSource, SyntheticSource


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.venues.standin",
                                description="Loopback Binance USD-M market-data stand-in with fault injection")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--capture", help="capture file to serve (line format '<ns> <json>', gzip or plain)")
    src.add_argument("--synthetic", metavar="SYMBOLS", default=None,
                     help="serve the synthetic market for these comma-separated symbols (default BTCUSDT)")
    p.add_argument("--seed", type=int, default=0, help="synthetic market seed")
    p.add_argument("--speed", type=float, default=None,
                   help="pace: capture default = as fast as clients read; synthetic default 1.0 (real time)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="WebSocket port (0 = ephemeral)")
    p.add_argument("--rest-port", type=int, default=0, help="REST port (0 = ephemeral)")
    p.add_argument("--ping-interval", type=float, default=20.0, help="server ping interval, seconds")
    return p


async def _serve(args: argparse.Namespace) -> int:
    if args.capture:
        source = CaptureSource(args.capture, speed=args.speed)
    else:
        symbols = [s.strip().upper() for s in (args.synthetic or "BTCUSDT").split(",") if s.strip()]
        source = SyntheticSource(symbols, seed=args.seed, speed=args.speed or 1.0)
    server = StandinServer(source, host=args.host, ws_port=args.port, rest_port=args.rest_port,
                           ping_interval=args.ping_interval)
    await server.start()
    print(json.dumps({"ws_url": server.ws_url, "rest_url": server.rest_url,
                      "control_url": server.rest_url + "/_control", "pid": os.getpid(),
                      "source": source.kind, "symbols": source.symbols}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvloop
        return uvloop.run(_serve(args))
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
