"""The risk process's wiring: the duty cycle around RiskAgent, operator paths, counters.

procs/risk.py stays thin; this module adds what a process needs on top of
:class:`mmshm.risk.agent.RiskAgent` (which drains the orders ring, reads the book
table, runs the triggers and writes the control rows):

- the quoter's ``signals`` table (cascade severity and the rest, for the cascade trigger
  and post-mortems), attached lazily: risk starts before the quoter;
- the watchdog's HALT flag (``verdicts`` row 0): its rising edge is a halt (post-mortem,
  counted), and risk stays in HALT for as long as the flag is up;
- the executor's ``account`` table (the venue's balances and margins, attached lazily and
  re-attached when replaced): each new row version goes to ``RiskEngine.on_account_row``,
  which anchors equity on the venue and takes its margin figures while they are fresh
  (rules in mmshm.risk.account);
- operator paths: SIGUSR1 halts (manual: only a resume lifts it), SIGUSR2 toggles pause,
  and the ``commands`` table (``mmshm halt|resume|pause``, mmshm.supervisor.commands)
  carries explicit HALT / RESUME / PAUSE / UNPAUSE requests;
- the orders ring replaced (executor unlinked and re-created it): re-attach, as the
  recorder does; the reader slot's heartbeat is refreshed for ``mmshm status``;
- a restart mid-ring (our reader cursor > 1): the fills the previous risk process applied
  are replayed from the recorder's journal (mmshm.risk.recovery);
- halt / re-entry / pause state saved to ``state_path`` on every change and restored at
  start (mmshm.risk.state), so restarting risk never lifts a halt;
- process-table counters (names in ``mmshm.agent.counters``), refreshed on a timer.

Counter scales (risk row): ``pnl_e8``, ``daily_pnl_e8``, ``equity_e8``: quote asset ×
1e8 (``FEE_SCALE`` units); ``drawdown_e6``, ``margin_e6``: fraction × 1e6 (0.3% =
3000); ``position_lots``: signed lots of the primary (first) instrument; ``mode``:
``Mode``; ``halt_reason``: ``TriggerCode`` of the halt in force (0 = not halted);
``halts``: halts this UTC day; ``paused``: 0/1.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from mmshm.agent.counters import counter_index
from mmshm.execution.account import ACCOUNT_SEGMENT
from mmshm.records import Mode
from mmshm.risk.agent import RiskAgent
from mmshm.risk.engine import RiskEngine
from mmshm.risk.params import TriggerCode
from mmshm.shm import SeqlockBusy, ShmError
from mmshm.shm import segment as segmod
from mmshm.strategy.process import SIGNALS_SEGMENT, SignalsTable, posix_inode, signals_dict

log = logging.getLogger("mmshm.risk")

ROLE = "risk"
ORDERS_SEGMENT = "orders"
NS = 1_000_000_000


class RiskProcessAgent(RiskAgent):
    """See the module docstring. ``orders`` may be None until ``open_orders`` succeeds."""

    name = "risk"

    def __init__(self, engine: RiskEngine, orders, books, control, *, instance: str,
                 open_orders: Callable[[], object] | None = None, open_signals: Callable[[], object] | None = None,
                 open_verdicts: Callable[[], object] | None = None, open_commands: Callable[[], object] | None = None,
                 open_account: Callable[[], object] | None = None,
                 evaluate_interval_s: float = 0.01, status_interval_s: float = 0.1, attach_retry_s: float = 1.0,
                 signals_max_age_s: float = 5.0, journal_path: str | None = None,
                 state_path: str | Path | None = None, batch: int = 256) -> None:
        super().__init__(engine, orders, books, control, evaluate_interval_s, batch)
        self.instance = instance
        self.journal_path = journal_path
        self.state_path = Path(state_path) if state_path else None
        self._saved_state: dict | None = None
        self.state_errors = 0
        self.recoveries: list = []
        self._attach_errors: dict[str, str] = {}
        self.open_orders = open_orders
        self.open_signals = open_signals
        self.open_verdicts = open_verdicts
        self.open_commands = open_commands
        self.open_account = open_account
        self.account = None                  # mmshm.execution.account.AccountTable
        self._account_inode: int | None = None
        self._account_version = 0
        self.account_busy = 0
        self.signals: SignalsTable | None = None
        self._signals_inode: int | None = None
        self.verdicts = None
        self.commands = None
        self.status_ns = int(status_interval_s * NS)
        self.retry_ns = int(attach_retry_s * NS)
        self.signals_max_age_ns = int(signals_max_age_s * NS)
        self._orders_inode = posix_inode(instance, ORDERS_SEGMENT) if orders is not None else None
        self._next_status = 0
        self._next_attach = 0
        self.runner = None
        self.counters = None
        self._slots: dict[str, int] = {}
        self.primary = min(engine.specs)
        self.watchdog_halt = False
        self.mode_changes = 0
        self.limit_breaches = 0
        self._last_mode = engine.mode
        self._breach_names: set[str] = set()
        self.halts_fired = 0

    # ------------------------------------------------------------------ runner hooks
    def bind_runner(self, runner) -> None:
        self.runner = runner
        self.counters = runner.counters
        if self.counters is not None:
            self._slots = {n: counter_index(ROLE, n) for n in (
                "mode_changes", "limit_breaches", "md_gaps", "drops", "mode", "pnl_e8", "daily_pnl_e8",
                "equity_e8", "position_lots", "drawdown_e6", "margin_e6", "fills", "halts", "paused",
                "halt_reason", "order_events")}

    def on_halt(self) -> None:
        """SIGUSR1: a manual halt (only ``mmshm resume`` lifts it)."""
        self.manual_halt("SIGUSR1")

    def on_pause(self, paused: bool) -> None:
        """SIGUSR2 toggles pause (quotes pulled via the control flags, no halt)."""
        self.engine.pause(paused)
        log.warning("risk: %s (SIGUSR2)", "paused" if paused else "unpaused")
        self.evaluate()

    def manual_halt(self, why: str) -> None:
        if self.engine.halt(TriggerCode.MANUAL, manual=True):
            self.halts_fired += 1
        log.error("risk: manual HALT", extra={"via": why})
        self.evaluate()

    def manual_resume(self, why: str) -> None:
        """A person restarts quoting: lifts halt (at the re-entry scale), pause and flatten."""
        self.engine.resume()
        if self.runner is not None:
            if self.runner.halted:
                self.runner.clear_halt()
            self._sync_runner_pause(False)
        log.warning("risk: manual RESUME", extra={"via": why})
        self.evaluate()

    # ------------------------------------------------------------------ duty cycle
    def on_start(self) -> None:
        if self.state_path is not None:
            from mmshm.risk import state

            if state.restore(self.engine, self.state_path):
                self._last_mode = self.engine.mode
            self._saved_state = state.snapshot(self.engine)
        self._attach_optional(self.engine.clock.monotonic_ns())
        super().on_start()
        self._status(self.engine.clock.monotonic_ns())

    def do_work(self) -> int:
        now = self.engine.clock.monotonic_ns()
        if self.orders is None or now >= self._next_attach:
            self._attach_optional(now)
        work = 0
        if self.orders is not None:
            n = self.orders.poll_batch(self._buf)
            for i in range(n):
                self.engine.on_order_event(self._buf[i])
            work += n
            self.events += n
        if self.commands is not None:
            work += self._poll_commands()
        if now >= self._next_ns:
            self._next_ns = now + self.interval_ns
            self.evaluate()
            work += 1
        if now >= self._next_status:
            self._status(now)
        return work

    def evaluate(self) -> None:
        """Inputs that are not events (signals, watchdog flag), then RiskAgent.evaluate."""
        now = self.engine.clock.monotonic_ns()
        self._read_signals(now)
        self._read_account()
        self._read_watchdog()
        fired_before = len(self.engine.postmortem_docs)
        super().evaluate()
        self.halts_fired += max(0, len(self.engine.postmortem_docs) - fired_before)
        if self.engine.mode != self._last_mode:
            self.mode_changes += 1
            log.warning("risk: mode %s -> %s (%s)", self._last_mode.name, self.engine.mode.name,
                        self.engine.reason.name)
            self._last_mode = self.engine.mode
        names = {b.name for b in self.engine.breaches}
        self.limit_breaches += len(names - self._breach_names)
        self._breach_names = names
        self._save_state()

    def _save_state(self) -> None:
        """Persist halt/pause state when it changed (mmshm.risk.state)."""
        if self.state_path is None:
            return
        from mmshm.risk import state

        snap = state.snapshot(self.engine)
        if snap == self._saved_state:
            return
        try:
            state.save(self.state_path, snap)
            self._saved_state = snap
        except OSError as exc:               # a full disk must not stop risk; retried next evaluation
            self.state_errors += 1
            if self.state_errors == 1 or self.state_errors % 1000 == 0:
                log.error("risk: state not saved", extra={"path": str(self.state_path), "error": str(exc),
                                                          "errors": self.state_errors})

    def _read_signals(self, now: int) -> None:
        if self.signals is None:
            return
        for i in self.engine.specs:
            if i >= self.signals.rows:
                continue
            try:
                row = self.signals.read(i)
            except SeqlockBusy:
                continue
            if row is None or now - int(row["updated_mono"]) > self.signals_max_age_ns:
                continue                     # a dead quoter's last values are not news
            self.engine.on_signals(i, **signals_dict(row))

    def _read_account(self) -> None:
        """The venue account row, when its version changed (an unchanged row ages into stale)."""
        if self.account is None:
            return
        try:
            v = self.account.version(0)
            if v == self._account_version or v & 1:
                return                       # unchanged, or mid-write: next evaluation
            row = self.account.read(0)
        except SeqlockBusy:
            self.account_busy += 1
            return
        except ShmError:
            return
        if row is None:
            return
        self._account_version = int(row["version"])
        self.engine.on_account_row(row)

    def _read_watchdog(self) -> None:
        if self.verdicts is None:
            return
        try:
            head = self.verdicts.read(0)
        except (SeqlockBusy, ShmError):
            return
        up = bool(int(head["halt"]))
        if up and not self.watchdog_halt:
            reason = bytes(head["reason"]).split(b"\0", 1)[0].decode("utf-8", "replace") or "watchdog"
            log.error("risk: watchdog HALT", extra={"reason": reason})
            if self.engine.halt(TriggerCode.WATCHDOG, manual=False):
                self.halts_fired += 1
            self.engine.hold_halt(reason)
        elif not up and self.watchdog_halt:
            log.warning("risk: watchdog HALT cleared; re-entry rules apply")
            self.engine.hold_halt("")
        self.watchdog_halt = up

    def _poll_commands(self) -> int:
        from mmshm.records import CommandKind

        cmd = self.commands.poll()
        if cmd is None:
            return 0
        log.warning("risk: operator command", extra={"command": cmd.kind.name, "seq": cmd.seq,
                                                      "pid": cmd.issuer_pid, "reason": cmd.reason})
        if cmd.kind == CommandKind.HALT:
            self.manual_halt(f"mmshm halt (pid {cmd.issuer_pid}) {cmd.reason}".strip())
        elif cmd.kind == CommandKind.RESUME:
            self.manual_resume(f"mmshm resume (pid {cmd.issuer_pid})")
        elif cmd.kind in (CommandKind.PAUSE, CommandKind.UNPAUSE):
            on = cmd.kind == CommandKind.PAUSE
            self.engine.pause(on)
            self._sync_runner_pause(on)
            self.evaluate()
        return 1

    def _sync_runner_pause(self, on: bool) -> None:
        """Keep the runner's SIGUSR2 toggle (process state PAUSED) in step with a command,
        so the next SIGUSR2 toggles from what the operator last asked for."""
        if self.runner is not None and self.runner.paused != on:
            self.runner.flags.toggle_pause()      # the runner calls on_pause(on): same state, no-op

    # ------------------------------------------------------------------ attachments
    def _attach_optional(self, now: int) -> None:
        """Orders ring (until attached / after replacement), signals, verdicts, commands.

        A segment that is absent is retried every ``attach_retry_s``; one that exists but
        cannot be used (another layout; ``orders`` without ``risk`` as a required reader)
        is logged once per kind of error and retried too: risk must keep writing control
        rows whatever the others do."""
        self._next_attach = now + self.retry_ns
        if self.orders is None and self.open_orders is not None:
            orders = self._try_open("orders", self.open_orders)
            if orders is not None:
                self.orders = orders
                self._orders_inode = posix_inode(self.instance, ORDERS_SEGMENT)
                log.info("attached to the orders ring as required reader 'risk'", extra={"cursor": orders.cursor})
                self._recover()
        if self.signals is not None:
            inode = posix_inode(self.instance, SIGNALS_SEGMENT)
            if inode is not None and inode != self._signals_inode:   # a restarted quoter made a new one
                self.signals.close()
                self.signals = None
        if self.signals is None and self.open_signals is not None:
            self.signals = self._try_open("signals", self.open_signals)
            if self.signals is not None:
                self._signals_inode = posix_inode(self.instance, SIGNALS_SEGMENT)
        if self.verdicts is None and self.open_verdicts is not None:
            self.verdicts = self._try_open("verdicts", self.open_verdicts)
        if self.account is not None:
            inode = posix_inode(self.instance, ACCOUNT_SEGMENT)
            if inode is not None and inode != self._account_inode:   # the executor made a new one
                self.account.close()
                self.account = None
        if self.account is None and self.open_account is not None:
            self.account = self._try_open("account", self.open_account)
            if self.account is not None:
                self._account_inode = posix_inode(self.instance, ACCOUNT_SEGMENT)
                self._account_version = 0
        if self.commands is None and self.open_commands is not None:
            self.commands = self._try_open("commands", self.open_commands)

    def _try_open(self, what: str, open_fn: Callable[[], object]):
        try:
            return open_fn()
        except segmod.SegmentNotFound:
            return None
        except ShmError as exc:
            msg = str(exc)
            if self._attach_errors.get(what) != msg:
                self._attach_errors[what] = msg
                log.error("risk: cannot attach %s", what, extra={"error": msg})
            return None

    def _recover(self) -> None:
        """Fills the previous risk process consumed from this ring (cursor > 1): from the journal."""
        if self.orders.cursor <= 1:
            return
        if not self.journal_path:
            log.error("risk: resumed mid-ring without a journal: earlier fills are not in the position",
                      extra={"cursor": self.orders.cursor})
            return
        from mmshm.risk.recovery import recover_fills

        keepalive = self.runner.keepalive if self.runner is not None else None
        rep = recover_fills(self.engine, self.journal_path, int(self.orders.segment.header["created_ts"]),
                            int(self.orders.cursor), keepalive=keepalive)
        self.recoveries.append(rep)

    def _status(self, now: int) -> None:
        """Reader heartbeat, orders-ring replacement check, counters."""
        self._next_status = now + self.status_ns
        if self.orders is not None:
            inode = posix_inode(self.instance, ORDERS_SEGMENT)
            if inode is not None and inode != self._orders_inode:
                log.warning("orders ring was replaced; re-attaching")
                self.orders.close()
                self.orders = None
                self._next_attach = now
            else:
                self.orders.heartbeat()
        self._publish_counters()

    def _publish_counters(self) -> None:
        c = self.counters
        if c is None:
            return
        e = self.engine
        m = e.metrics
        s = self._slots
        eq = e.equity()
        hs = e.halts.state()
        c[s["mode_changes"]] = self.mode_changes
        c[s["limit_breaches"]] = self.limit_breaches
        c[s["drops"]] = sum(e.drops.values()) + self.book_busy + (self.orders.lost if self.orders is not None else 0)
        c[s["mode"]] = int(e.mode)
        c[s["pnl_e8"]] = round(e.positions.realized_net() + e.positions.unrealized())
        c[s["daily_pnl_e8"]] = round(eq - e.day_start_equity)
        c[s["equity_e8"]] = round(eq)
        c[s["position_lots"]] = e.positions[self.primary].position
        c[s["drawdown_e6"]] = _fixed(m.drawdown)
        c[s["margin_e6"]] = _fixed(m.margin_utilisation)
        c[s["fills"]] = sum(p.fills for p in e.positions.by_instrument.values())
        c[s["halts"]] = hs.halts_today
        c[s["paused"]] = int(bool(e.global_flags & 1))
        c[s["halt_reason"]] = int(hs.reason) if hs.halted else (int(TriggerCode.WATCHDOG) if e.external_halt else 0)
        c[s["order_events"]] = self.events

    def on_close(self) -> None:
        """Clean stop: leave HALT in every control row so nobody quotes on our last limits."""
        self._publish_counters()
        rows = self.engine.control_rows(self._rows)
        rows["mode"] = np.maximum(rows["mode"], int(Mode.HALT))
        self.write_control(rows)
        for seg in (self.signals, self.verdicts, self.commands, self.account):
            if seg is not None:
                try:
                    seg.close()
                except Exception:  # noqa: BLE001 - closing is best effort at exit
                    pass


def _fixed(v: float) -> int:
    """Fraction × 1e6 as int64 (inf/NaN -> int64 max/0)."""
    if v != v:
        return 0
    if v == float("inf"):
        return (1 << 63) - 1
    return round(v * 1_000_000)


__all__ = ["ORDERS_SEGMENT", "RiskProcessAgent"]
