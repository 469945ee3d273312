"""`mmshm status`: every process of an instance, like AeronStat.

Shows, from shared memory only (no process is asked anything): each process's row
(state, pid alive, heartbeat age, work, named counters) with the watchdog's verdict, the
watchdog HALT flag, every segment (writer, epoch, cursor, heartbeat) and every reader
(cursor, lag, gaps, lost). ``--json`` prints the same as one JSON object; ``--watch N``
redraws every N seconds until Ctrl-C; ``--check`` makes the exit code say whether the
instance is healthy (no HALT, every verdict OK), for scripts and health probes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from mmshm.monitor.model import InstanceSnapshot
from mmshm.records import Verdict


def _age(snap: InstanceSnapshot, mono: int) -> str:
    if mono <= 0:
        return "-"
    s = max(0, snap.taken_mono - mono) / 1e9
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 120:
        return f"{s:.1f}s"
    return f"{s / 60:.0f}m"


_VERDICT_STYLE = {
    Verdict.OK: "green", Verdict.DEAD: "bold red", Verdict.HUNG: "bold red", Verdict.KILLED: "red",
    Verdict.IDLE: "yellow", Verdict.SLOW_READER: "yellow",
}


def render(snap: InstanceSnapshot):
    """A rich renderable of the snapshot (tables for processes, segments and readers)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts = []
    head = Text(f"instance {snap.instance}  ")
    if snap.halt:
        head.append(f"HALT: {snap.halt_reason} ({_age(snap, snap.halt_since_mono)} ago)", style="bold white on red")
    else:
        head.append("no watchdog HALT", style="green")
    if snap.watchdog_checked_mono:
        head.append(f"  watchdog checked {_age(snap, snap.watchdog_checked_mono)} ago")
    else:
        head.append("  no watchdog verdicts", style="yellow")
    parts.append(head)
    a = snap.account
    if a is not None:
        line = Text(f"account {a.asset} ({a.source}, {_age(snap, a.updated_mono)} ago): wallet {a.wallet:,.2f}  "
                    f"margin balance {a.margin_balance:,.2f}  unrealized {a.unrealized_pnl:+,.2f}  ")
        if a.margin_mono:
            line.append(f"initial margin {a.initial_margin:,.2f}  maintenance {a.maint_margin:,.2f}  "
                        f"available {a.available:,.2f} ({_age(snap, a.margin_mono)} ago)")
        else:
            line.append("no margin figures yet", style="yellow")
        if a.drops:
            line.append(f"  {a.drops} malformed updates dropped", style="yellow")
        parts.append(line)

    verdicts = {(v.row - 1, v.pid): v for v in snap.verdicts}
    procs = Table(title="processes", title_justify="left")
    for col in ("row", "role", "pid", "alive", "state", "cpu", "heartbeat", "beats", "work", "idle cycles",
                "verdict", "reason", "counters"):
        procs.add_column(col, justify="right" if col in ("row", "pid", "cpu", "beats", "work", "idle cycles") else "left")
    for p in snap.processes:
        v = verdicts.get((p.row, p.pid))
        verdict = Text(v.verdict.name, style=_VERDICT_STYLE.get(v.verdict, "")) if v else Text("-")
        counters = " ".join(f"{k}={n}" for k, n in p.counters.items() if n)
        procs.add_row(str(p.row), p.role, str(p.pid), Text("yes", "green") if p.alive else Text("no", "red"),
                      p.state.name, "-" if p.cpu < 0 else str(p.cpu), _age(snap, p.heartbeat_mono),
                      str(p.heartbeat_count), str(p.work_count), str(p.idle_cycles), verdict,
                      v.reason if v else "", counters)
    parts.append(procs if snap.processes else Text("no process table (no mmshm process has started)", style="yellow"))

    segs = Table(title="segments", title_justify="left")
    for col in ("segment", "kind", "record", "writer pid", "alive", "epoch", "cursor", "writes",
                "heartbeat", "refused"):
        segs.add_column(col, justify="right" if col in ("writer pid", "epoch", "cursor", "writes", "refused") else "left")
    readers = Table(title="readers", title_justify="left")
    for col in ("segment", "reader", "kind", "pid", "alive", "cursor", "lag", "gaps", "lost", "read"):
        readers.add_column(col, justify="left" if col in ("segment", "reader", "kind", "alive") else "right")
    for s in snap.segments:
        refused = Text(str(s.refused), style="bold red" if s.alarm else "")
        segs.add_row(s.name, s.kind, s.dtype_name, str(s.creator_pid),
                     Text("yes", "green") if s.creator_alive else Text("no", "red"), str(s.epoch),
                     str(s.cursor), str(s.write_count), _age(snap, s.heartbeat_mono), refused)
        for r in s.readers:
            readers.add_row(s.name, r.name, "required" if r.required else "untethered",
                            str(r.pid) if r.pid else "-",
                            (Text("yes", "green") if r.alive else Text("no", "red")) if r.pid else Text("-"),
                            str(r.cursor), str(r.lag), Text(str(r.gaps), style="yellow" if r.gaps else ""),
                            str(r.lost), str(r.polled))
    parts.append(segs if snap.segments else Text(f"no segments for instance {snap.instance}", style="yellow"))
    if any(s.readers for s in snap.segments):
        parts.append(readers)
    for err in snap.errors:
        parts.append(Text(f"error: {err}", style="red"))
    return Group(*parts)


def run(args: argparse.Namespace) -> int:
    from mmshm.monitor.snapshot import SnapshotReader

    if args.watch is not None and args.watch <= 0:
        print("mmshm status: --watch needs a positive number of seconds", file=sys.stderr)
        return 2
    with SnapshotReader(args.instance) as reader:
        if args.watch is None:
            snap = reader.take()
            if args.json:
                sys.stdout.write(orjson.dumps(snap.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                from rich.console import Console

                Console().print(render(snap))
            if args.check:
                problems = snap.problems()
                for problem in problems:
                    print(f"mmshm status: {problem}", file=sys.stderr)
                return 1 if problems else 0
            return 0
        try:
            if args.json:
                while True:
                    sys.stdout.write(orjson.dumps(reader.take().to_json()).decode() + "\n")
                    sys.stdout.flush()
                    time.sleep(args.watch)
            from rich.live import Live

            with Live(render(reader.take()), auto_refresh=False) as live:
                while True:
                    time.sleep(args.watch)
                    live.update(render(reader.take()), refresh=True)
        except KeyboardInterrupt:
            return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status", help="processes, heartbeats, cursors, reader lag and gaps, watchdog verdicts",
        description="Show every process of an instance (state, heartbeat age, counters, watchdog "
                    "verdict), the watchdog HALT flag, every segment and every reader's lag and gaps.")
    p.add_argument("--instance", default=os.environ.get("MMSHM_INSTANCE") or "main",
                   help="instance name (default $MMSHM_INSTANCE or 'main')")
    p.add_argument("--json", action="store_true", help="one JSON object (per refresh with --watch)")
    p.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    p.add_argument("--check", action="store_true",
                   help="exit 1 (problems on stderr) when the watchdog HALT is raised or a verdict is not OK")
    p.set_defaults(func=run)
