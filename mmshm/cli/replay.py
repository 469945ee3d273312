"""`mmshm replay FILE`: run a Binance USD-M capture through the feed's parser and book.

Two modes:

- ``--book-top`` (no shared memory): print one line per change of the best bid/ask of
  the synchronised book -- ``--json`` makes it a JSON object with ``u`` (the update id of
  the diff that changed it), ``local_ns`` (the line's receive time) and the best bid/ask
  prices and quantities as exact decimal strings. For scripts and checks.
- default: publish every event into the instance's ``md`` broadcast ring, the top levels
  into its ``book`` seqlock table and the instrument into ``instruments``, exactly as the
  feed process does, as fast as possible or at the recorded pace (``--pace``).

The instrument grid comes from ``--exchange-info`` (a saved Binance exchangeInfo
response), or ``--tick``/``--lot``, or else the reference spec of the symbol in
``mmshm.venues.binance_usdm.constants``; the symbol is read from the capture unless given.
A summary of counters goes to stderr at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mmshm.instruments import InstrumentError, InstrumentSpec, InstrumentTable
from mmshm.records import MdKind, MdStatus
from mmshm.venues.binance_usdm import constants as C
from mmshm.venues.capture import CaptureReader, paced


def detect_symbol(path: Path, max_lines: int = 1000) -> str | None:
    """The first ``"s"`` symbol (or the stream name's symbol) in the capture."""
    for i, (_, frame) in enumerate(CaptureReader(path)):
        if i >= max_lines:
            break
        try:
            msg = json.loads(frame)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        data = msg.get("data", msg)
        if isinstance(data, dict) and isinstance(data.get("s"), str):
            return data["s"]
        if isinstance(msg.get("stream"), str) and "@" in msg["stream"]:
            return msg["stream"].split("@", 1)[0].upper()
    return None


def resolve_spec(args: argparse.Namespace) -> InstrumentSpec:
    """The instrument spec from the options (see the module docstring for the order)."""
    symbol = args.symbol or detect_symbol(args.file)
    if not symbol:
        raise InstrumentError("cannot find the symbol in the capture; pass --symbol")
    if args.exchange_info:
        table = InstrumentTable.from_binance_exchange_info(Path(args.exchange_info).read_bytes(), [symbol])
        return table[0]
    if args.tick or args.lot:
        if not (args.tick and args.lot):
            raise InstrumentError("--tick and --lot go together")
        return InstrumentSpec.from_decimals(symbol, C.VENUE, args.tick, args.lot)
    ref = C.REFERENCE_SPECS.get(symbol)
    if ref is None:
        raise InstrumentError(f"no reference spec for {symbol}; pass --exchange-info or --tick/--lot")
    tick, lot, min_qty, max_qty, min_notional, quote = ref
    return InstrumentSpec.from_decimals(symbol, C.VENUE, tick, lot, min_qty=min_qty, max_qty=max_qty,
                                        min_notional=min_notional, quote_asset=quote)


def _frames(args: argparse.Namespace, reader: CaptureReader):
    return paced(reader, args.pace) if args.pace else iter(reader)


def run_book_top(args: argparse.Namespace, spec: InstrumentSpec) -> dict:
    """Print the top of book on every change; returns the counters."""
    from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook

    md = BinanceUsdmBook(spec, 0, max_levels=args.max_levels)
    ev = md.events
    out = sys.stdout
    fmt_p, fmt_q = spec.ticks_to_str, spec.lots_to_str
    reader = CaptureReader(args.file)
    top = int(MdKind.BOOK_TOP)
    for ts, frame in _frames(args, reader):
        n = md.on_frame(frame, ts)
        for i in range(n):
            e = ev[i]
            if e["kind"] != top:
                continue
            u = int(e["update_id"])
            bp, bq, ap, aq = (fmt_p(int(e["bid_px"])), fmt_q(int(e["bid_qty"])),
                              fmt_p(int(e["ask_px"])), fmt_q(int(e["ask_qty"])))
            if args.json:
                out.write(json.dumps({"u": u, "local_ns": ts, "bid_px": bp, "bid_qty": bq,
                                      "ask_px": ap, "ask_qty": aq}) + "\n")
            else:
                out.write(f"{u} {ts} {bq} @ {bp} | {ap} x {aq}\n")
    out.flush()
    counters = md.all_counters()
    counters["bad_lines"] = reader.bad_lines
    return counters


def run_publish(args: argparse.Namespace, spec: InstrumentSpec) -> dict:
    """Publish into the rings of ``args.instance``; returns the counters."""
    from mmshm.records import BOOK_ROW, MARKET_EVENT
    from mmshm.shm import BroadcastWriter, SeqlockTable
    from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook

    table = InstrumentTable([spec])
    inst_seg = table.write_segment(args.instance)
    md_ring = book_tab = None
    try:
        md_ring = BroadcastWriter.create(args.instance, "md", MARKET_EVENT, capacity=args.md_capacity)
        book_tab = SeqlockTable.create(args.instance, "book", BOOK_ROW, rows=max(1, len(table)))
        md = BinanceUsdmBook(spec, 0, max_levels=args.max_levels)
        md.bind_output(md_ring, book_tab)
        reader = CaptureReader(args.file)
        last_hb = time.monotonic()
        for ts, frame in _frames(args, reader):
            md.on_frame(frame, ts)
            now = time.monotonic()
            if now - last_hb > 0.1:
                md_ring.heartbeat()
                last_hb = now
        md_ring.heartbeat()
        if args.linger > 0:
            time.sleep(args.linger)
        counters = md.all_counters()
        counters["published"] = md.core.published
        counters["bad_lines"] = reader.bad_lines
        return counters
    finally:
        for seg in (md_ring, book_tab, inst_seg):
            if seg is not None:
                if not args.keep:
                    seg.unlink()
                seg.close()


def run(args: argparse.Namespace) -> int:
    args.file = Path(args.file)
    if not args.file.is_file():
        print(f"mmshm replay: no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        spec = resolve_spec(args)
    except (InstrumentError, KeyError, ValueError) as e:
        print(f"mmshm replay: {e}", file=sys.stderr)
        return 2
    try:
        counters = run_book_top(args, spec) if args.book_top else run_publish(args, spec)
    except BrokenPipeError:          # `| head`: the reader is gone, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - a CLI reports, it does not dump a traceback
        if type(e).__module__.startswith("mmshm.shm"):
            print(f"mmshm replay: shared memory: {e}", file=sys.stderr)
            return 1
        raise
    print(json.dumps({"symbol": spec.symbol, "tick": spec.tick, "lot": spec.lot, **counters}), file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="run a Binance USD-M capture through the parser and book",
        description="Replay a capture (`<local ns> <raw JSON>` lines, gzip or plain) through the "
                    "Binance USD-M parser and book sync. With --book-top, print each change of the "
                    "best bid/ask (no shared memory); otherwise publish events into the instance's "
                    "md ring, book table and instruments table like the feed does. Counters go to "
                    "stderr at the end.")
    p.add_argument("file", help="capture file")
    p.add_argument("--book-top", action="store_true",
                   help="print one line per change of the best bid/ask price or quantity; no shared memory")
    p.add_argument("--json", action="store_true",
                   help='with --book-top: JSON lines {"u", "local_ns", "bid_px", "bid_qty", "ask_px", '
                        '"ask_qty"} (decimal strings)')
    p.add_argument("--symbol", help="instrument symbol (default: read from the capture)")
    p.add_argument("--exchange-info", metavar="FILE", help="saved Binance exchangeInfo JSON for the grid")
    p.add_argument("--tick", help="tick size, e.g. 0.1 (with --lot)")
    p.add_argument("--lot", help="lot size, e.g. 0.001 (with --tick)")
    p.add_argument("--max-levels", type=int, default=C.SNAPSHOT_LIMIT,
                   help="price levels kept per side (default %(default)s)")
    p.add_argument("--pace", type=float, default=0.0, metavar="SPEED",
                   help="replay at the recorded pace times SPEED (default: as fast as possible)")
    p.add_argument("--instance", default=os.environ.get("MMSHM_INSTANCE", "main"),
                   help="instance whose segments to publish into (default: $MMSHM_INSTANCE or main)")
    p.add_argument("--md-capacity", type=int, default=1 << 16, help="md ring slots, a power of two")
    p.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                   help="keep the segments this long after the end (readers can drain)")
    p.add_argument("--keep", action="store_true", help="do not unlink the segments at exit")
    p.set_defaults(func=run)
