"""The exporter process: ``python -m mmshm.procs.exporter [--config FILE] [--set k=v ...]``.

Serves Prometheus ``/metrics`` (read from shared memory at scrape time), ``/health`` and
``/ready`` on ``[exporter] host:port`` (127.0.0.1:9464 by default; port 0 picks a free
port). Prints ``exporter listening on http://HOST:PORT`` once bound. Never pinned (the
``[cpus]`` entry is ignored unless set), sleeps between duty cycles. Readiness uses the
watchdog's critical roles and heartbeat timeouts unless ``--critical`` is given.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mmshm.agent.idle import SleepingIdle
from mmshm.agent.runner import run_role
from mmshm.agent.program import run_program
from mmshm.config import Config, add_config_arguments
from mmshm.exporter.collector import SharedMemoryCollector
from mmshm.exporter.server import ROLE, ExporterAgent, ExporterServer

#: Duty-cycle period: heartbeat and counter refresh; HTTP is served by its own thread.
PERIOD_S = 0.1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.exporter",
                                description="mmshm exporter: Prometheus /metrics, /health, /ready")
    add_config_arguments(p)
    p.add_argument("--critical", default=None,
                   help="comma-separated roles /ready requires (default: watchdog.critical_roles)")
    return p


def _run(args: argparse.Namespace, cfg: Config) -> int:
    wd = cfg.watchdog
    critical = (tuple(r for r in args.critical.split(",") if r) if args.critical is not None
                else tuple(wd.critical_roles))
    timeouts = {role: getattr(wd.role_timeouts, role) for role in critical
                if getattr(wd.role_timeouts, role, None) is not None}
    collector = SharedMemoryCollector(cfg.instance, wd.pid_reuse_tolerance_s)
    server = ExporterServer(collector, cfg.exporter.host, cfg.exporter.port, critical=critical,
                            timeouts_s=timeouts, default_timeout_s=wd.heartbeat_timeout_s)
    if cfg.role_cpu(ROLE) is not None:
        print(f"exporter: ignoring cpus.exporter={cfg.role_cpu(ROLE)}: the exporter is never pinned",
              file=sys.stderr)
    # cpu=None: never pinned, whatever [cpus] says (it must not steal a hot core).
    return run_role(ROLE, [ExporterAgent(server)], cfg, cpu=None, idle=SleepingIdle(int(PERIOD_S * 1e9)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(ROLE, build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
