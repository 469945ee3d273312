"""The feed process: ``python -m mmshm.procs.feed [--config FILE] [--set k=v ...]``.

Thin wiring: the config's ``[venue]`` selects the source (``mmshm.feed.endpoints``) and
``[feed]`` its behaviour (depth stream speed, book depth, stale_after_s, reconnect
backoff, ping interval); ``mmshm.feed.service.FeedService`` runs it on uvloop, creating
the instance's ``md``, ``book`` and ``instruments`` segments, heartbeating the ``feed``
row of the process table, READY to systemd after the first synchronised book.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mmshm.agent.program import run_program, usage_error
from mmshm.config import Config, add_config_arguments
from mmshm.agent.gcpolicy import open_gc_policy
from mmshm.feed import FeedConfigError, FeedService, LatencyWindow, settings_from_config, source_from_config
from mmshm.venues.connection import run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.feed",
                                description="mmshm feed: venue market data into the md ring and book table")
    add_config_arguments(p)
    p.add_argument("--trades", choices=("trade", "aggTrade"), default="trade",
                   help="Binance public trades stream (default: trade)")
    p.add_argument("--unlink-on-exit", action="store_true",
                   help="remove the md/book/instruments segments at exit (default: leave them for readers)")
    return p


def _run(args: argparse.Namespace, cfg: Config) -> int:
    latency = LatencyWindow()
    try:
        source = source_from_config(cfg, trades=args.trades, latency=latency)
    except (FeedConfigError, FileNotFoundError, ValueError) as exc:
        return usage_error("feed", exc)
    policy = open_gc_policy("feed", cfg)
    try:
        service = FeedService(source, settings_from_config(cfg, unlink_on_exit=args.unlink_on_exit),
                              latency=latency, gc_policy=policy)
        return run(service.run())
    finally:
        policy.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_program("feed", build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
