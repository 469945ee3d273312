"""`mmshm version`: the package version, Python, and which native modules are built."""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform

from mmshm import __version__


def native_modules() -> list[str]:
    """Names of the compiled mmshm._native.* modules that import."""
    import mmshm._native as native

    found = []
    for info in pkgutil.iter_modules(native.__path__):
        importlib.import_module(f"mmshm._native.{info.name}")
        found.append(info.name)
    return sorted(found)


def run(args: argparse.Namespace) -> int:
    info = {
        "mmshm": __version__,
        "python": platform.python_version(),
        "native": native_modules(),
    }
    if args.json:
        print(json.dumps(info))
    else:
        print(f"mmshm {info['mmshm']} (python {info['python']}); native: {', '.join(info['native'])}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("version", help="print version and built native modules")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
