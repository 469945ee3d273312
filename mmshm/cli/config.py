"""`mmshm config show|check`: the effective configuration and where each value came from.

This is how the on-call person learns why a value is what it is: every key is printed
with its value and its source (default, file, profile, override file, env variable, CLI).
"""
from __future__ import annotations

import argparse
import json
import sys

from mmshm.config import Config, ConfigError, add_config_arguments, config_from_args, describe_key


def _fmt(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _load(args: argparse.Namespace) -> Config | None:
    try:
        return config_from_args(args)
    except ConfigError as exc:
        print(f"mmshm config: {exc}", file=sys.stderr)
        return None


def run_show(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return 2
    rows = [(k, v, s) for k, v, s in cfg.items()
            if not args.key or any(k == p or k.startswith(p + ".") for p in args.key)]
    if args.non_default:
        rows = [r for r in rows if not r[2].startswith("default")]
    if args.json:
        out = {
            "file": cfg.path,
            "profile": cfg.profile,
            "values": {k: {"value": list(v) if isinstance(v, tuple) else v, "source": s,
                           **({"doc": describe_key(k)} if args.doc else {})}
                       for k, v, s in rows},
            "ignored_env": list(cfg.ignored_env),
        }
        print(json.dumps(out, indent=None if args.compact else 2))
        return 0
    from rich.console import Console
    from rich.table import Table

    title = f"mmshm config  file={cfg.path or '(none)'}  profile={cfg.profile or '(none)'}"
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_column("source", style="dim")
    if args.doc:
        table.add_column("meaning", style="dim")
    for key, value, source in rows:
        style = None if source.startswith("default") else "cyan"
        extra = [describe_key(key)] if args.doc else []
        table.add_row(key, _fmt(value), source, *extra, style=style)
    console = Console(width=max(100, Console().width))
    console.print(table)
    if cfg.ignored_env:
        console.print("[yellow]ignored MMSHM_* environment variables (not config keys; "
                      "sections need a double underscore, e.g. MMSHM_RISK__DAILY_LOSS_PCT): "
                      + ", ".join(cfg.ignored_env) + "[/yellow]")
    return 0


def run_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return 2
    print(f"ok: {cfg.path or 'built-in defaults'} (profile {cfg.profile or 'none'}, mode {cfg.mode}, "
          f"instance {cfg.instance}, venue {cfg.venue.name})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("config", help="show or check the effective configuration")
    sub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="print every value with its source",
                          description="Print the effective configuration: each value and where it "
                          "came from (CLI > env MMSHM_* > override file > profile > file > defaults).")
    add_config_arguments(show)
    show.add_argument("key", nargs="*", help="only these keys or sections (e.g. risk, cpus.feed)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--compact", action="store_true", help="with --json: one line")
    show.add_argument("--non-default", action="store_true", help="only values not from the defaults")
    show.add_argument("--doc", action="store_true", help="add what each key means")
    show.set_defaults(func=run_show)
    check = sub.add_parser("check", help="validate; exit 2 with every problem listed if invalid")
    add_config_arguments(check)
    check.set_defaults(func=run_check)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
