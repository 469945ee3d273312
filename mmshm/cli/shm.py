"""`mmshm shm ls|clean|inspect`: what shared-memory segments exist, who owns them, what is in them."""
from __future__ import annotations

import argparse
import json
from typing import Any


def _fmt_age(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _console():
    from rich.console import Console

    return Console()


def run_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mmshm.shm.registry import list_segments

    infos = list_segments(args.instance)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos]))
        return 0
    if not infos:
        print("no mmshm segments" + (f" for instance {args.instance!r}" if args.instance else ""))
        return 0
    table = Table(title="mmshm segments", show_lines=False)
    for col in ("segment", "kind", "owner", "alive", "epoch", "cursor", "hb age", "age", "readers (cursor lag gaps/lost)", "note"):
        table.add_column(col)
    for i in infos:
        readers = "\n".join(
            f"{r.name}{'*' if r.state == 'required' else ''} pid={r.pid or '-'}{'' if r.alive or not r.pid else '(dead)'} "
            f"{r.cursor} lag={r.lag} {r.gaps}/{r.lost}"
            for r in i.readers) or "-"
        note = i.error or ("FULL (refused %d)" % i.refused if i.alarm else "")
        if i.kind == "seqlock" and i.row_writers:
            note = (note + " " if note else "") + f"row-writers={len(i.row_writers)}"
        table.add_row(i.name, i.kind, str(i.owner_pid), "yes" if i.alive else "[red]no[/red]", str(i.epoch),
                      str(i.cursor), _fmt_age(i.heartbeat_age_s), _fmt_age(i.age_s), readers, note)
    _console().print(table)
    return 0


def run_clean(args: argparse.Namespace) -> int:
    from mmshm.shm.registry import clean_dead

    removed = clean_dead(args.instance, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"removed": removed, "dry_run": args.dry_run}))
    else:
        verb = "would remove" if args.dry_run else "removed"
        for name in removed:
            print(f"{verb} /dev/shm/{name}")
        print(f"{verb} {len(removed)} segment(s) whose writers are dead")
    return 0


def _cell(v: Any) -> str:
    if isinstance(v, list):
        nz = [x for x in v if x]
        return f"[{len(v)}: {nz[:3]}{'...' if len(nz) > 3 else ''}]" if nz else f"[{len(v)}x0]"
    return str(v)


def run_inspect(args: argparse.Namespace) -> int:
    from rich.table import Table

    from mmshm.shm.registry import inspect_segment, resolve
    from mmshm.shm.segment import ShmError

    try:
        data = inspect_segment(args.name, args.instance, last=args.last)
    except ShmError as e:
        print(f"error: {e}")
        return 1
    except FileNotFoundError:
        print(f"error: no segment /dev/shm/{resolve(args.name, args.instance)}")
        return 1
    if args.json:
        print(json.dumps(data))
        return 0
    con = _console()
    head = Table(title=f"header of {data['info']['name']}")
    head.add_column("field")
    head.add_column("value")
    for k, v in data["header"].items():
        head.add_row(k, f"0x{v:016x}" if k in ("magic", "dtype_hash") else str(v))
    head.add_row("alive", str(data["info"]["alive"]))
    con.print(head)
    if data["info"]["readers"]:
        rt = Table(title="readers")
        cols = ("slot", "name", "state", "pid", "alive", "cursor", "lag", "gaps", "lost", "polled", "heartbeat_age_s")
        for c in cols:
            rt.add_column(c)
        for r in data["info"]["readers"]:
            rt.add_row(*(str(r[c]) for c in cols))
        con.print(rt)
    recs = data["records"]
    if recs:
        # Records are wide (20+ fields): one row each, key first, then only the non-zero fields.
        key = "row" if "row" in recs[0] else "seq"
        t = Table(title=f"{len(recs)} record(s)")
        t.add_column(key)
        t.add_column("fields (non-zero)", overflow="fold")
        for r in recs:
            t.add_row(str(r[key]), "  ".join(f"{k}={_cell(v)}" for k, v in r.items()
                                              if k not in (key,) and v not in (0, "", None) and v != [0] * len(v if isinstance(v, list) else [])))
        con.print(t)
    else:
        con.print("no records")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("shm", help="list, clean and inspect shared-memory segments")
    sub = p.add_subparsers(dest="shm_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    ls = sub.add_parser("ls", help="list segments: kind, owner, alive, epoch, cursor, readers and lag, age")
    ls.add_argument("--instance", help="only this instance (default: all)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run_ls)

    cl = sub.add_parser("clean", help="remove segments whose writer process is dead (never a live one)")
    cl.add_argument("--instance", help="only this instance (default: all)")
    cl.add_argument("--dry-run", action="store_true", help="show what would be removed")
    cl.add_argument("--json", action="store_true", help="machine-readable output")
    cl.set_defaults(func=run_clean)

    ins = sub.add_parser("inspect", help="print a segment's header, readers and last records")
    ins.add_argument("name", help="mmshm-<instance>-<name>, or <name> with --instance / $MMSHM_INSTANCE")
    ins.add_argument("--instance", help="instance for a short name (default $MMSHM_INSTANCE or 'main')")
    ins.add_argument("-n", "--last", type=int, default=10, help="how many recent records (default 10)")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.set_defaults(func=run_inspect)
