"""The `mmshm` command.

Each subcommand lives in its own module in this package and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code). Modules are found
by discovery so that adding a command never means editing a shared list.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from mmshm import __version__


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand module's parsers registered."""
    parser = argparse.ArgumentParser(
        prog="mmshm",
        description="mmshm: market maker over shared-memory rings. "
        "Run `mmshm COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"mmshm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mmshm` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
