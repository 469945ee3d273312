"""The entry-point shape every ``procs/<role>.py`` shares.

Each process program parses the standard config flags, loads the config, sets up JSON
logging for its role, runs, and always flushes the log on the way out. A configuration
or usage problem is exit code 2 with one line ``<role>: <problem>`` on stderr (so systemd
and `mmshm up` show why a process refused to start, and do not restart it in a loop
thinking it crashed); everything else is the body's own exit code.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from mmshm.config import Config, ConfigError, config_from_args
from mmshm.log import setup_logging_from_config, shutdown_logging

#: Exit code of a process that refuses to start because of its configuration or arguments.
EXIT_USAGE = 2


def usage_error(role: str, problem: object) -> int:
    """Report a configuration/usage problem the way every process does; returns EXIT_USAGE."""
    print(f"{role}: {problem}", file=sys.stderr)
    return EXIT_USAGE


def cannot_start(role: str, exc: BaseException, logger: logging.Logger) -> int:
    """A process that cannot start (a segment missing, of another version, owned, a bad
    value): logged on the role's ``logger`` and reported as :func:`usage_error`, so it is
    not restarted in a loop. A KeyError's message is its argument, not its quoted repr."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    logger.error(f"{role} cannot start", extra={"error": str(msg)})
    return usage_error(role, msg)


def run_program(role: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                body: Callable[[argparse.Namespace, Config], int], *,
                usage_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv``, load the config, log as ``role`` and run ``body(args, cfg)``.

    ``usage_errors`` are exceptions from ``body`` that mean "cannot start with this
    configuration" (reported as :func:`usage_error`); a :class:`ConfigError` always is.
    """
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        return usage_error(role, exc)
    setup_logging_from_config(role, cfg)
    try:
        return body(args, cfg)
    except (ConfigError, *usage_errors) as exc:
        return usage_error(role, exc)
    finally:
        shutdown_logging()
