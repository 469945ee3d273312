"""The quoter process: ``python -m mmshm.procs.quoter [--config FILE] [--set k=v ...]``.

Thin wiring (logic in mmshm.strategy.process): waits for the feed's ``instruments``,
``md`` and ``book`` segments and risk's ``control`` table (``--wait-s``), quotes the
config's ``venue.symbols``, owns the ``targets`` and ``signals`` tables, records the
``feed_to_quote`` latency stage, and runs under the agent runner (pinned and idling per
``[cpus]`` / ``[idle]``). Quotes are pulled when the book is stale, risk's control rows
say so (HALT, pause, pull flags) or go stale, on SIGUSR2 (pause toggle) and on SIGUSR1
(halt latch; SIGHUP lifts it). A clean stop writes pull-all targets, then removes the
tables it owns.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Sequence

from mmshm.agent.doorbell import BellRinger
from mmshm.agent.runner import run_role
from mmshm.agent.program import cannot_start, run_program
from mmshm.config import Config, add_config_arguments, quoter_params_kwargs
from mmshm.records import BOOK_ROW, CONTROL_ROW, INSTRUMENT_ROW, MARKET_EVENT, TARGET_ROW
from mmshm.shm import BroadcastReader, SegmentInUse, SegmentMismatch, SeqlockTable
from mmshm.strategy.engine import QuoteEngine, Quoting
from mmshm.strategy.params import InstrumentSpec, QuoterParams
from mmshm.strategy.process import (ROLE, QuoterProcessAgent, SegmentWaitTimeout, SignalsTable, find_reference,
                                    posix_inode, select_instruments, wait_attach)

log = logging.getLogger("mmshm.quoter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.quoter",
                                description="mmshm quoter: book -> quote targets, limited by risk's control rows")
    add_config_arguments(p)
    p.add_argument("--wait-s", type=float, default=60.0,
                   help="how long to wait for the feed's and risk's segments (default 60 s)")
    p.add_argument("--reference", default="",
                   help="VENUE:SYMBOL of a leading venue's instrument (in the md ring) for the lead-lag signal")
    p.add_argument("--requote-ms", type=float, default=20.0,
                   help="requote every instrument at least this often without market events (default 20 ms)")
    p.add_argument("--control-max-age-s", type=float, default=2.0,
                   help="pull every quote when risk's control heartbeat is older (default 2 s; 0 = off)")
    return p


def _instrument_rows(instance: str, deadline: float):
    """The written rows of the instruments table (waits for the feed to write at least one)."""
    table = wait_attach(lambda: SeqlockTable.attach(instance, "instruments", INSTRUMENT_ROW),
                        "instruments", max(0.0, deadline - time.monotonic()))
    try:
        while True:
            rows = []
            for i in range(table.rows):             # the written prefix: row i is instrument i
                r = table.read(i)
                if not int(r["version"]):
                    break
                rows.append(r)
            if rows or time.monotonic() >= deadline:
                return rows
            time.sleep(0.05)
    finally:
        table.close()


def _run(args: argparse.Namespace, cfg: Config) -> int:
    params = QuoterParams(**quoter_params_kwargs(cfg))   # ValueError: a usage error (exit 2)
    inst = cfg.instance
    opened: list = []
    owned: list = []
    try:
        deadline = time.monotonic() + args.wait_s
        left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
        from mmshm.instruments import InstrumentSpec as VenueSpec

        rows = _instrument_rows(inst, deadline)
        venue_specs = [VenueSpec.from_row(r) for r in rows]
        chosen = select_instruments(venue_specs, cfg.venue.symbols, cfg.venue.name)
        reference = find_reference(venue_specs, args.reference) if args.reference else None
        md = wait_attach(lambda: BroadcastReader.attach(inst, "md", MARKET_EVENT, reader=ROLE), "md", left())
        opened.append(md)
        books = wait_attach(lambda: SeqlockTable.attach(inst, "book", BOOK_ROW), "book", left())
        opened.append(books)
        control = wait_attach(lambda: SeqlockTable.attach(inst, "control", CONTROL_ROW), "control", left())
        opened.append(control)
        top = max(chosen)
        if books.rows <= top or control.rows <= 1 + top:
            raise ValueError(f"instrument {top} does not fit the book ({books.rows} rows) "
                             f"or control ({control.rows} rows) tables")
        engine = QuoteEngine([Quoting(i, params, InstrumentSpec.from_instrument_row(rows[i]),
                                      reference=reference if reference != i else None) for i in chosen])
        n_rows = max(cfg.segments.targets_rows, top + 1)
        targets = SeqlockTable.create(inst, "targets", TARGET_ROW, n_rows)
        owned.append(targets)
        signals = SignalsTable.create(inst, n_rows)
        try:
            from mmshm.monitor.latency import LatencyRecorder
            latency = LatencyRecorder.open(inst, "feed_to_quote")
        except Exception as exc:  # noqa: BLE001 - a missing histogram must not stop quoting
            log.warning("feed_to_quote latency not recorded", extra={"error": str(exc)})
            latency = None
        control_inode = posix_inode(inst, "control")

        def reopen_control():
            nonlocal control_inode
            inode = posix_inode(inst, "control")
            if inode is None or inode == control_inode:
                return None
            fresh = SeqlockTable.attach(inst, "control", CONTROL_ROW)
            control_inode = inode
            return fresh

        executor_bell = BellRinger(inst, "executor") if cfg.idle.bells else None
        agent = QuoterProcessAgent(engine, md, books, control, targets, signals, latency,
                                   requote_interval_s=args.requote_ms / 1000.0,
                                   control_max_age_s=args.control_max_age_s, reopen_control=reopen_control,
                                   ring_targets=executor_bell.ring if executor_bell is not None else None)
        log.info("quoting", extra={"instruments": [f"{venue_specs[i].venue}:{venue_specs[i].symbol}" for i in chosen],
                                   "model": params.model.name, "reference": args.reference or None})

        def clear_halt():
            if agent.runner is not None and agent.runner.halted:
                agent.runner.clear_halt()

        try:
            return run_role(ROLE, [agent], cfg, on_reload=clear_halt)
        finally:
            if agent.control is not control:      # re-attached: close the live one too
                opened.append(agent.control)
            signals.close(unlink=True)
            if latency is not None:
                latency.close()
            if executor_bell is not None:
                log.info("executor bell", extra=executor_bell.counts())
                executor_bell.close()
    except (SegmentWaitTimeout, SegmentMismatch, SegmentInUse, KeyError, ValueError) as exc:
        return cannot_start(ROLE, exc, log)
    finally:
        for t in owned:
            t.unlink()
            t.close()
        for s in opened:
            s.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(ROLE, build_parser(), argv, _run, usage_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
