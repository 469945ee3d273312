"""`mmshm book`: the current book of a running instance, read from shared memory.

The feed writes the top ``BOOK_DEPTH`` levels of each instrument into the ``book``
seqlock table; this reads one consistent copy of a row and prints it as a ladder (asks
above, bids below, exact decimals) or as JSON for scripts. Nothing here writes to shared
memory.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import orjson

from mmshm.book import row_to_dict
from mmshm.instruments import InstrumentTable
from mmshm.records import BOOK_ROW
from mmshm.shm import SeqlockTable, ShmError


def read_books(instance: str, symbol: str | None = None) -> list[dict]:
    """Every instrument's book row as JSON-ready dicts (only ``symbol`` when given)."""
    table = InstrumentTable.read_segment(instance)
    books = SeqlockTable.attach(instance, "book", BOOK_ROW)
    try:
        out = []
        for i, spec in enumerate(table):
            if symbol is not None and spec.symbol.upper() != symbol.upper():
                continue
            if i >= books.rows:
                break
            row = books.read(i)
            book = row_to_dict(row, spec)
            book["instrument"] = i
            out.append(book)
        return out
    finally:
        books.close()


def render_ladder(book: dict, levels: int) -> str:
    """An ASCII ladder: asks (worst first) above the spread line, bids (best first) below."""
    asks = book["asks"][:levels]
    bids = book["bids"][:levels]
    width_px = max([len(p) for p, _ in asks + bids] + [5])
    width_q = max([len(q) for _, q in asks + bids] + [3])
    lines = [f"{book['symbol']}  status={book['status']}  update_id={book['update_id']}  md_seq={book['md_seq']}"]
    lines.append(f"{'':>{width_q}}  {'price':>{width_px}}  {'ask qty':<{width_q}}")
    for px, qty in reversed(asks):
        lines.append(f"{'':>{width_q}}  {px:>{width_px}}  {qty:<{width_q}}")
    lines.append("-" * (2 * width_q + width_px + 4))
    for px, qty in bids:
        lines.append(f"{qty:>{width_q}}  {px:>{width_px}}")
    if not asks and not bids:
        lines.append("(empty book)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.levels < 1:
        print(f"book: --levels must be >= 1, got {args.levels}", file=sys.stderr)
        return 2
    while True:
        try:
            books = read_books(args.instance, args.symbol)
        except ShmError as exc:
            print(f"book: instance {args.instance!r} has no readable book ({exc}); is the feed running?",
                  file=sys.stderr)
            return 3
        if not books:
            print(f"book: no instrument {args.symbol!r} in instance {args.instance!r}", file=sys.stderr)
            return 3
        if args.json:
            for book in books:
                book["bids"] = book["bids"][: args.levels]
                book["asks"] = book["asks"][: args.levels]
                sys.stdout.write(orjson.dumps(book).decode() + "\n")
        else:
            print("\n\n".join(render_ladder(b, args.levels) for b in books))
        sys.stdout.flush()
        if not args.watch:
            return 0
        time.sleep(args.watch)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("book", help="print the current book from shared memory (ladder or JSON)",
                              description="Print each instrument's book as the feed last published it.")
    p.add_argument("--instance", default=os.environ.get("MMSHM_INSTANCE", "main"),
                   help="instance name (default: $MMSHM_INSTANCE or 'main')")
    p.add_argument("--symbol", default=None, help="only this symbol (default: every instrument)")
    p.add_argument("--levels", type=int, default=10, help="levels per side (default 10, at most 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per instrument, decimals as strings")
    p.add_argument("--watch", type=float, default=0.0, metavar="SECONDS", help="repeat every SECONDS")
    p.set_defaults(func=run)
