"""The watchdog process: ``python -m mmshm.procs.watchdog [--config FILE] [--set k=v ...]``.

Thin wiring: the config's ``[watchdog]`` section becomes a ``WatchdogPolicy``; a
``WatchdogAgent`` runs under the agent runner with a sleeping idle strategy (the watchdog
never busy-spins, whatever ``MMSHM_IDLE`` says), heartbeating into its own process-table
row and systemd's watchdog. SIGHUP asks it to clear a latched HALT once every critical
role is OK again. ``--once`` runs a single check and prints the verdicts as JSON.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import orjson

from mmshm.agent.idle import SleepingIdle
from mmshm.agent.doorbell import BellRinger
from mmshm.agent.runner import run_role
from mmshm.agent.program import run_program
from mmshm.config import Config, add_config_arguments
from mmshm.log import shutdown_logging
from mmshm.monitor.policy import WatchdogPolicy
from mmshm.monitor.watchdog import Watchdog, WatchdogAgent

#: Longest single sleep: bounds how late a signal (SIGTERM) is acted on.
MAX_SLEEP_S = 0.05


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.watchdog",
                                description="mmshm watchdog: classify processes, kill hung ones, raise HALT")
    add_config_arguments(p)
    p.add_argument("--once", action="store_true", help="run one check, print verdicts as JSON, exit")
    return p


def _run(args: argparse.Namespace, cfg: Config) -> int:
    policy = WatchdogPolicy.from_config(cfg.watchdog)
    watchdog = Watchdog(cfg.instance, policy)
    if args.once:
        try:
            results = watchdog.check()
        finally:
            watchdog.close()
        shutdown_logging()  # flush the log thread first: its lines must not interleave with ours
        print(orjson.dumps([{"row": a.process.row, "pid": a.process.pid, "role": a.process.role,
                             "verdict": a.verdict.name, "reason": a.reason} for a in results]).decode())
        return 0
    period_ns = int(min(policy.interval_s, MAX_SLEEP_S) * 1e9)
    bell = BellRinger(cfg.instance, "executor") if cfg.idle.bells else None
    watchdog.ring = bell.ring if bell is not None else None
    try:
        return run_role("watchdog", [WatchdogAgent(watchdog)], cfg, idle=SleepingIdle(period_ns),
                        on_reload=watchdog.request_halt_clear)
    finally:
        if bell is not None:
            bell.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_program("watchdog", build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
