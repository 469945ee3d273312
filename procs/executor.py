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

from mmshm.agent.program import run_program
from mmshm.config import Config, add_config_arguments, load_credentials
from mmshm.execution.process import ROLE, run_executor


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.executor",
                                description="mmshm executor: quote targets into orders at the venue")
    add_config_arguments(p)
    return p


def _run(args: argparse.Namespace, cfg: Config) -> int:
    if cfg.mode in ("testnet", "live"):
        load_credentials(required=True)   # ConfigError: refuses to start without keys
    return run_executor(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    # ValueError: e.g. paper mode without the venue's port
    return run_program(ROLE, build_parser(), argv, _run, usage_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
