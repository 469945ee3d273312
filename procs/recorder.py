"""The recorder process: ``python -m mmshm.procs.recorder [--config FILE] [--set k=v ...]``.

Thin wiring of :class:`mmshm.journal.recorder.RecorderAgent` from the config's
``[recorder]`` section (journal path, commit interval, md captures) under the agent
runner. The recorder floats (no pinned core by default) and sleeps when idle: it is a
required reader of the ``orders`` ring, so it must keep up, but a few milliseconds of
latency to the journal cost nothing.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mmshm.agent.runner import run_role
from mmshm.agent.program import run_program, usage_error
from mmshm.config import Config, add_config_arguments
from mmshm.journal.recorder import ROLE, RecorderAgent
from mmshm.journal.schema import JournalError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.recorder",
                                description="mmshm recorder: the orders ring into the SQLite journal")
    add_config_arguments(p)
    p.add_argument("--db", default=None, help="journal path (default: recorder.sqlite_path)")
    p.add_argument("--batch", type=int, default=4096, help="events read per duty cycle (default 4096)")
    return p


def _run(args: argparse.Namespace, cfg: Config) -> int:
    if args.batch < 1:
        return usage_error(ROLE, f"--batch must be >= 1, got {args.batch}")
    rc = cfg.recorder
    agent = RecorderAgent(cfg.instance, args.db or rc.sqlite_path, commit_interval_ms=rc.commit_interval_ms,
                          batch=args.batch, capture_md=rc.capture_md, capture_dir=rc.capture_dir)
    return run_role(ROLE, [agent], cfg)


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(ROLE, build_parser(), argv, _run, usage_errors=(JournalError,))


if __name__ == "__main__":
    sys.exit(main())
