"""The risk process: ``python -m mmshm.procs.risk [--config FILE] [--set k=v ...]``.

Thin wiring (logic in mmshm.risk.engine, mmshm.risk.process): waits for the feed's
``instruments`` and ``book`` segments (``--wait-s``), creates and owns the ``control``
table (written at once, so nobody quotes without limits, then every
``--evaluate-ms``), attaches the executor's ``orders`` ring as the REQUIRED reader
``risk`` as soon as it exists (lossless: the executor gates on us), and reads the
quoter's ``signals``, the watchdog's HALT flag, the operator ``commands`` table and the
executor's ``account`` table (the venue's balances and margins: equity is anchored on the
venue while its row is younger than ``--account-max-age-s``, see mmshm.risk.account).

Operator paths: SIGUSR1 = manual halt; SIGUSR2 = pause toggle; ``mmshm halt|resume|pause``
through the ``commands`` table (resume is the only way out of a manual or third halt of
the day). Every halt writes a post-mortem JSON to ``risk.postmortem_dir``. A clean stop
leaves HALT in every control row, then removes the table. Halt, re-entry and pause
state is kept in ``--state-file`` so a restart never lifts a halt.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from mmshm.agent.doorbell import BELL_ROLES, Bells
from mmshm.agent.runner import run_role
from mmshm.agent.program import cannot_start, run_program
from mmshm.config import Config, add_config_arguments, instrument_risk_kwargs, risk_params_kwargs
from mmshm.execution.account import AccountTable
from mmshm.records import BOOK_ROW, CONTROL_ROW, INSTRUMENT_ROW, ORDER_EVENT
from mmshm.risk.engine import RiskEngine
from mmshm.risk.params import InstrumentRisk, RiskParams
from mmshm.risk.process import ORDERS_SEGMENT, ROLE, RiskProcessAgent
from mmshm.shm import GatedReader, SegmentInUse, SegmentMismatch, SeqlockTable, ShmError
from mmshm.strategy.process import SegmentWaitTimeout, SignalsTable, select_instruments, wait_attach

log = logging.getLogger("mmshm.risk")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmshm.procs.risk",
                                description="mmshm risk: positions, PnL, limits and triggers -> control rows")
    add_config_arguments(p)
    p.add_argument("--wait-s", type=float, default=60.0,
                   help="how long to wait for the feed's instruments and book segments (default 60 s)")
    p.add_argument("--evaluate-ms", type=float, default=10.0,
                   help="trigger evaluation and control-row refresh period (default 10 ms)")
    p.add_argument("--account-max-age-s", type=float, default=None,
                   help="the venue account row is trusted for equity and margin while younger than this "
                        "(default 30 s; 0 = never use the venue's figures)")
    p.add_argument("--state-file", default="",
                   help="halt/pause state kept across restarts (default <state_dir>/<instance>/risk-state.json)")
    return p


def _open_commands(instance: str):
    """The operator commands inbox (mmshm.supervisor.commands); None if that module is absent."""
    try:
        from mmshm.supervisor.commands import CommandInbox
    except ImportError:
        return None
    return CommandInbox.open(instance)


def _run(args: argparse.Namespace, cfg: Config) -> int:
    kw = risk_params_kwargs(cfg)
    if args.account_max_age_s is not None:
        kw["account_max_age_s"] = args.account_max_age_s
    params = RiskParams(**kw)                          # ValueError: a usage error (exit 2)
    inst_kw = instrument_risk_kwargs(cfg)
    inst = cfg.instance
    opened: list = []
    control = None
    try:
        deadline = time.monotonic() + args.wait_s
        left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
        from mmshm.instruments import InstrumentSpec as VenueSpec

        itable = wait_attach(lambda: SeqlockTable.attach(inst, "instruments", INSTRUMENT_ROW), "instruments", left())
        opened.append(itable)
        rows = []
        while not rows:
            for i in range(itable.rows):
                r = itable.read(i)
                if not int(r["version"]):
                    break
                rows.append(r)
            if not rows:
                if time.monotonic() >= deadline:
                    raise SegmentWaitTimeout("the instruments table has no rows")
                time.sleep(0.05)
        chosen = select_instruments([VenueSpec.from_row(r) for r in rows], cfg.venue.symbols, cfg.venue.name)
        books = wait_attach(lambda: SeqlockTable.attach(inst, "book", BOOK_ROW), "book", left())
        opened.append(books)
        top = max(chosen)
        if books.rows <= top:
            raise ValueError(f"instrument {top} does not fit the book table ({books.rows} rows)")
        engine = RiskEngine(params, [InstrumentRisk.from_instrument_row(rows[i], **inst_kw) for i in chosen])
        quote_assets = {bytes(rows[i]["quote_asset"]).split(b"\0", 1)[0].decode() for i in chosen}
        if len(quote_assets) == 1:
            engine.account.asset = quote_assets.pop()   # an account row in another asset is not our equity
        control = SeqlockTable.create(inst, "control", CONTROL_ROW, max(cfg.segments.control_rows, top + 2))

        def open_orders():
            return GatedReader.attach(inst, ORDERS_SEGMENT, ORDER_EVENT, reader=ROLE, start="oldest",
                                      expect_required=True)

        def open_verdicts():
            from mmshm.agent.proctable import VerdictTable
            return VerdictTable.attach(inst)

        agent = RiskProcessAgent(engine, None, books, control, instance=inst, open_orders=open_orders,
                                 open_signals=lambda: SignalsTable.attach(inst), open_verdicts=open_verdicts,
                                 open_commands=lambda: _open_commands(inst),
                                 open_account=lambda: AccountTable.attach(inst),
                                 evaluate_interval_s=args.evaluate_ms / 1000.0,
                                 journal_path=cfg.recorder.sqlite_path or None,
                                 state_path=args.state_file or Path(cfg.state_dir) / inst / "risk-state.json")
        bells = Bells(inst, BELL_ROLES) if cfg.idle.bells else None
        agent.ring = bells.ring if bells is not None else None
        log.info("risk started", extra={"instruments": [engine.specs[i].symbol for i in chosen],
                                        "equity": params.initial_equity, "account_max_age_s": params.account_max_age_s, "postmortem_dir": str(params.postmortem_dir)})
        try:
            return run_role(ROLE, [agent], cfg, on_halt=agent.on_halt, on_pause=agent.on_pause)
        finally:
            if agent.orders is not None:
                agent.orders.close()
            if bells is not None:
                log.info("control bells", extra=bells.counts())
                bells.close()
    except (SegmentWaitTimeout, SegmentMismatch, SegmentInUse, ShmError, KeyError, ValueError) as exc:
        return cannot_start(ROLE, exc, log)
    finally:
        if control is not None:
            control.unlink()
            control.close()
        for s in opened:
            s.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_program(ROLE, build_parser(), argv, _run, usage_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
