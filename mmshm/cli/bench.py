"""`mmshm bench ring`: cross-process ring latency/throughput vs multiprocessing peers, as JSON."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


def run_ring(args: argparse.Namespace) -> int:
    from mmshm.shm.ringbench import run

    report = run(quick=args.quick, rt=args.rt)
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


def add_ring_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="short run (~3 s) for smoke tests")
    p.add_argument("--out", help="also write the JSON report to this file")
    p.add_argument("--rt", action="store_true",
                   help="run the workers SCHED_FIFO (needs CAP_SYS_NICE): latency without scheduler noise")
    p.set_defaults(func=run_ring)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (JSON: figure, peers, ratio)")
    sub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    add_ring_args(sub.add_parser("ring", help="shm ring one-way latency and throughput vs mp.Queue/Pipe"))


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (bench/ring.py): `bench ring [--quick]` without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="bench")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    add_ring_args(sub.add_parser("ring"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
