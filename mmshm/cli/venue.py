"""`mmshm venue`: run the simulated Binance USD-M venue on loopback.

Prints one JSON line with its URLs once it listens (port 0 = an ephemeral port), so
scripts and tests can read where it is, then serves until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from mmshm.venues.connection import run as run_loop
from mmshm.venues.sim import auth
from mmshm.venues.sim.ratelimit import RateLimitConfig

HELP = f"""\
Credentials: the venue accepts the API key/secret from --api-key/--api-secret, else
$MMSHM_API_KEY/$MMSHM_API_SECRET, else the test default {auth.DEFAULT_API_KEY!r} /
{auth.DEFAULT_API_SECRET!r}. Control API: POST {{url}}/_control/faults, GET /_control/state,
POST /_control/market/depth|trade (see mmshm.venues.sim.server).
"""


def build_config(args: argparse.Namespace):
    from mmshm.venues.sim.server import AccountConfig, VenueConfig

    market = args.market or ("capture" if args.capture else "synthetic")
    key = args.api_key or os.environ.get("MMSHM_API_KEY", auth.DEFAULT_API_KEY)
    secret = args.api_secret or os.environ.get("MMSHM_API_SECRET", auth.DEFAULT_API_SECRET)
    rl = RateLimitConfig(weight_limit=args.weight_limit, orders_10s_limit=args.orders_10s,
                         orders_1m_limit=args.orders_1m, ban_after=args.ban_after, ban_seconds=args.ban_seconds,
                         enabled=not args.no_rate_limits)
    accounts = [AccountConfig("default", key, secret, balance=args.balance,
                              maker_fee_ppm=args.maker_fee_ppm, taker_fee_ppm=args.taker_fee_ppm)]
    for spec in args.account:
        parts = spec.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"--account wants NAME:KEY:SECRET, got {spec!r}")
        if parts[0] in {a.name for a in accounts} or parts[1] in {a.api_key for a in accounts}:
            raise ValueError(f"--account {parts[0]!r}: duplicate name or key")
        accounts.append(AccountConfig(parts[0], parts[1], parts[2], balance=args.balance,
                                      maker_fee_ppm=args.maker_fee_ppm, taker_fee_ppm=args.taker_fee_ppm))
    return VenueConfig(host=args.host, port=args.port, symbols=tuple(s.upper() for s in args.symbols.split(",") if s),
                       market=market, seed=args.seed, capture=args.capture, speed=args.speed,
                       accounts=accounts,
                       rate_limits=rl, gtx_mode=args.gtx_mode)


async def _busy_poll() -> None:
    """Keep the event loop polling (epoll with a zero timeout) instead of sleeping in it."""
    while True:
        await asyncio.sleep(0)


async def _serve(config, busy_poll: bool = False) -> int:
    from mmshm.venues.sim.server import SimVenue

    venue = SimVenue(config)
    await venue.start()
    spinner = asyncio.get_running_loop().create_task(_busy_poll()) if busy_poll else None
    print(json.dumps({"event": "listening", **venue.urls, "port": venue.port, "symbols": list(config.symbols),
                      "market": config.market, "api_key": auth.mask(config.all_accounts()[0].api_key)}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if spinner is not None:
        spinner.cancel()
    await venue.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"mmshm venue: {exc}", file=sys.stderr)
        return 2
    try:
        return run_loop(_serve(config, args.busy_poll))     # uvloop, as every mmshm process
    except (OSError, ValueError, ImportError) as exc:
        print(f"mmshm venue: {exc}", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("venue", help="run the simulated Binance USD-M venue (loopback)",
                              epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = ephemeral (read it from the JSON line)")
    p.add_argument("--symbols", default="BTCUSDT", help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--market", choices=("synthetic", "capture", "none"), default=None,
                   help="market source (default: capture if --capture, else synthetic); "
                        "'none' = only /_control/market/* moves the book")
    p.add_argument("--seed", type=int, default=0, help="synthetic market seed")
    p.add_argument("--capture", default=None, help="capture file to replay (<ns> <frame> lines, gz or plain)")
    p.add_argument("--speed", type=float, default=1.0, help="market time per wall-clock time")
    p.add_argument("--api-key", default=None)
    p.add_argument("--api-secret", default=None)
    p.add_argument("--account", action="append", default=[], metavar="NAME:KEY:SECRET",
                   help="an extra account (repeatable), e.g. to test self-trade prevention across keys")
    p.add_argument("--balance", default="100000", help="USDT wallet balance of each account")
    p.add_argument("--maker-fee-ppm", type=int, default=200, help="maker fee, parts per million (neg = rebate)")
    p.add_argument("--taker-fee-ppm", type=int, default=500)
    p.add_argument("--weight-limit", type=int, default=2400, help="request weight per minute per IP")
    p.add_argument("--orders-10s", type=int, default=300)
    p.add_argument("--orders-1m", type=int, default=1200)
    p.add_argument("--ban-after", type=int, default=10, help="requests while limited before a 418 ban")
    p.add_argument("--ban-seconds", type=int, default=120)
    p.add_argument("--no-rate-limits", action="store_true")
    p.add_argument("--gtx-mode", choices=("reject", "expire"), default="reject",
                   help="crossing post-only: -5022 reject (Binance today) or accept-then-expire")
    p.add_argument("--busy-poll", action="store_true",
                   help="poll the sockets without sleeping (a core at 100%%; for latency benchmarks: waking a "
                        "sleeping local venue costs the sender's send() ~20 us on a VM, which a remote venue never does)")
    p.set_defaults(func=run)
