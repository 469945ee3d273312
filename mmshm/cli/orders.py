"""`mmshm orders`: what happened to order X (or the last N orders), from the journal.

Reads the recorder's SQLite journal read-only (WAL: works while the recorder writes).
``--id`` accepts the numeric client id of ``ORDER_EVENT.client_id`` or the venue-facing
string form (``<prefix><epoch>_<counter>_<md_seq>``), which is parsed to the number.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

import orjson

from mmshm.journal.queries import last_orders, order_report, totals
from mmshm.journal.schema import JournalError, open_journal
from mmshm.records import OrderStatus

_SIDES = {1: "BUY", 2: "SELL"}


def register(subparsers) -> None:
    p = subparsers.add_parser("orders", help="what happened to an order (journal)",
                              description="Show an order's row, events, fills and latencies, or the last N "
                                          "orders, from the recorder's SQLite journal.")
    p.add_argument("--instance", default=None, help="instance (default: config / $MMSHM_INSTANCE / main)")
    p.add_argument("--db", default=None, help="journal path (default: the config's recorder.sqlite_path)")
    p.add_argument("--config", default=None, help="config file (to find the journal)")
    p.add_argument("--id", dest="client_id", default=None, help="client order id (numeric or string form)")
    p.add_argument("--last", type=int, default=20, help="show the last N orders (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _db_path(args: argparse.Namespace) -> str:
    if args.db:
        return args.db
    from mmshm.config import load_config

    overrides = [f"instance={args.instance}"] if args.instance else None
    cfg = load_config(path=args.config, cli_overrides=overrides)
    return cfg.recorder.sqlite_path


def parse_client_id(text: str) -> int:
    """A numeric id, or our string client order id parsed to its numeric form."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    from mmshm.execution import client_ids

    parsed = client_ids.try_parse(text)
    if parsed is None:
        raise ValueError(f"{text!r} is neither a numeric client id nor an mmshm client order id")
    return parsed.numeric


def run(args: argparse.Namespace) -> int:
    try:
        path = _db_path(args)
        conn = open_journal(path, readonly=True)
    except (JournalError, ValueError) as exc:
        print(f"mmshm orders: {exc}", file=sys.stderr)
        return 2
    try:
        if args.client_id is not None:
            try:
                cid = parse_client_id(args.client_id)
            except ValueError as exc:
                print(f"mmshm orders: {exc}", file=sys.stderr)
                return 2
            report = order_report(conn, cid)
            if report is None:
                print(f"mmshm orders: no order {cid} in {path}", file=sys.stderr)
                return 1
            if args.json:
                sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                _print_report(report)
            return 0
        rows = last_orders(conn, args.last)
        if args.json:
            sys.stdout.write(orjson.dumps({"totals": totals(conn), "orders": rows},
                                          option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            _print_last(rows, totals(conn), path)
        return 0
    finally:
        conn.close()


def _status(value: int) -> str:
    try:
        return OrderStatus(value).name
    except ValueError:
        return str(value)


def _ts(ns: int | None) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%H:%M:%S.%f")


def _print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    o = report["order"]
    dec = o.get("decimal")
    head = Table(title=f"order {o['client_id']}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    head.add_row("status", o["status_name"])
    head.add_row("instrument", f"{o['instrument']}" + (f" ({dec['symbol']})" if dec else ""))
    head.add_row("side", _SIDES.get(o["side"], str(o["side"])))
    head.add_row("price", f"{o['price']} ticks" + (f" = {dec['price']}" if dec else ""))
    head.add_row("qty", f"{o['qty']} lots" + (f" = {dec['qty']}" if dec else ""))
    head.add_row("filled", f"{o['filled_qty']} lots in {o['n_fills']} fills" + (f" = {dec['filled_qty']}" if dec else ""))
    if o["avg_fill_px"] is not None:
        head.add_row("avg fill px", f"{o['avg_fill_px']:.4f} ticks" + (f" = {dec['avg_fill_px']}" if dec else ""))
    head.add_row("fees", f"{o['fees']} (1e-8)" + (f" = {dec['fees']} {dec['quote_asset']}" if dec else ""))
    head.add_row("venue order id", str(o["venue_order_id"] or "-"))
    head.add_row("md seq", str(o["md_seq"]))
    if o["reject_reason"]:
        head.add_row("reject reason", str(o["reject_reason"]))
    head.add_row("first / last seen", f"{_ts(o['first_ts'])} / {_ts(o['last_ts'])} UTC")
    lat = report["latencies"]
    head.add_row("sent→ack", "-" if lat["sent_to_ack_us"] is None else f"{lat['sent_to_ack_us']:.1f} µs")
    head.add_row("sent→first fill", "-" if lat["sent_to_first_fill_us"] is None
                 else f"{lat['sent_to_first_fill_us']:.1f} µs")
    con.print(head)
    ev = Table(title="events")
    for col in ("seq", "time (UTC)", "kind", "status", "price", "qty", "filled", "fill px", "fill qty", "fee",
                "trade id", "+µs"):
        ev.add_column(col, justify="right" if col not in ("kind", "status", "time (UTC)") else "left")
    for e in report["events"]:
        ev.add_row(str(e["ring_seq"]), _ts(e["local_ts"]), e["kind"], _status(e["status"]), str(e["price"]),
                   str(e["qty"]), str(e["filled_qty"]), str(e["fill_px"] or ""), str(e["fill_qty"] or ""),
                   str(e["fee"] or ""), str(e["trade_id"] or ""),
                   "" if e["since_sent_us"] is None else f"{e['since_sent_us']:.1f}")
    con.print(ev)
    if report["fills"]:
        fl = Table(title="fills (deduplicated by trade id)")
        for col in ("trade id", "px", "qty", "fee", "maker", "time (UTC)"):
            fl.add_column(col, justify="right")
        for f in report["fills"]:
            fl.add_row(str(f["trade_id"]), f.get("px_dec", str(f["px"])), f.get("qty_dec", str(f["qty"])),
                       f.get("fee_dec", str(f["fee"])), "yes" if f["maker"] else "no", _ts(f["local_ts"]))
        con.print(fl)


def _print_last(rows: list[dict], tot: dict, path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"last {len(rows)} orders — {path}")
    for col in ("client id", "symbol", "side", "price", "qty", "status", "filled", "avg px", "fees", "fills",
                "last event", "last seen (UTC)", "ack µs"):
        t.add_column(col, justify="right" if col not in ("symbol", "side", "status", "last event") else "left")
    for r in rows:
        tick, lot = r["tick_size"], r["lot_size"]
        px = f"{r['price'] * tick:g}" if tick else str(r["price"])
        qty = f"{r['qty'] * lot:g}" if lot else str(r["qty"])
        filled = f"{r['filled_qty'] * lot:g}" if lot else str(r["filled_qty"])
        avg = "-" if r["avg_fill_px"] is None else (f"{r['avg_fill_px'] * tick:g}" if tick else f"{r['avg_fill_px']:.2f}")
        t.add_row(str(r["client_id"]), r["symbol"] or str(r["instrument"]), _SIDES.get(r["side"], "?"), px, qty,
                  r["status"], filled, avg, f"{r['fees'] / 1e8:g}", str(r["n_fills"]), r["last_kind"],
                  _ts(r["last_ts"]), "-" if r["ack_us"] is None else f"{r['ack_us']:.1f}")
    con = Console()
    con.print(t)
    con.print(f"journal: {tot['events']} events, {tot['orders']} orders, {tot['fills']} fills, "
              f"fees {tot['fees'] / 1e8:g}; ack p50 {tot['ack_p50_us']} µs, p99 {tot['ack_p99_us']} µs")
