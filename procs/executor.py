"""The executor process: ``python -m mmshm.procs.executor [--config FILE] [--set k=v ...]``.

Thin wiring of :mod:`mmshm.execution.process` (the asyncio service loop on uvloop): it
creates the ``orders`` ring, attaches ``instruments``/``targets``/``control``/``verdicts``,
connects to the venue of the configured mode (paper = the simulated venue at
``venue.sim_port``/``venue.rest_url``), reconciles and cancels leftovers, then trades the
quoter's targets within risk's control block. SIGTERM cancels everything (verified) and
exits; SIGUSR1 halts (cancel-all, latched); SIGUSR2 pauses quoting.

Credentials: ``$CREDENTIALS_DIRECTORY/{api_key,api_secret}`` or ``MMSHM_API_KEY`` /
``MMSHM_API_SECRET``; in paper mode the simulated venue's default test key otherwise.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mmshm.config import ConfigError, add_config_arguments, config_from_args
from mmshm.execution.process import ROLE, run_executor
from mmshm.log import setup_logging_from_config, shutdown_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.executor",
                                description="mmshm executor: quote targets into orders at the venue")
    add_config_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"executor: {exc}", file=sys.stderr)
        return 2
    if cfg.mode in ("testnet", "live"):
        from mmshm.config import load_credentials
        try:
            load_credentials(required=True)
        except ConfigError as exc:
            print(f"executor: {exc}", file=sys.stderr)
            return 2
    setup_logging_from_config(ROLE, cfg)
    try:
        return run_executor(cfg)
    except ValueError as exc:          # e.g. paper mode without the venue's port
        print(f"executor: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_logging()


if __name__ == "__main__":
    sys.exit(main())
