"""The executor process's service loop: shared memory in, :class:`ExecutionSession` out.

``procs/executor.py`` only parses arguments and calls :func:`run_executor`. Everything the
process does between the segments and the session lives here:

- creates the ``orders`` gated ring (required readers ``risk`` and ``recorder``) and
  publishes every ORDER_EVENT into it. A refused publish (ring full) is counted, logged as
  an alarm and latches a HALT: nothing may be sent that cannot be recorded, so free slots
  are also checked *before* every batch of requests (a short ring defers the targets);
- attaches ``instruments`` (waits for it: the session needs the tick/lot grid), then
  ``targets``, ``control`` and ``verdicts`` as they appear (retried, logged clearly).
  Without a fresh control block there are no limits, so the executor is in HALT: it sends
  no order and cancels everything;
- the loop reads each instrument's TARGET_ROW when its seqlock version changes (or its
  mode does) and submits it to the :class:`~mmshm.execution.dispatch.ApplyDispatcher`:
  for an idle instrument it calls ``session.send_targets(row, mode, seen_mono, control)``
  at once (with the stricter of the global and instrument modes: the requests are on the
  socket before the loop goes on) and awaits the answers in the instrument's task. At
  most one apply per instrument is in flight (the diff must see the orders the previous
  one sent); a row arriving meanwhile waits, only the newest is kept, and it goes out as
  soon as the previous answers are in. Instruments run concurrently, and the loop never
  waits for a venue answer to read the next row. An unchanged row is planned again when
  orders changed under it (an order ended, a request was refused), at most every
  ``executor.replan_ms``.
  ``session.tick()`` every ~100 ms;
- cancel-all on every transition into HALT/FLATTEN (control block, watchdog HALT in
  ``verdicts`` row 0, SIGUSR1, a stale/missing control block, a refused publish), at
  start-up (after reconciliation, retried until verified) and on SIGTERM (the stop path:
  ``session.stop(cancel=True)``); FLATTEN then closes the position with reduce-only
  market orders of at most the control row's ``max_order_qty``. Before each of these
  cancel-alls the affected instruments' applies are blocked (waiting rows dropped, none
  started while halted) and drained: awaited up to ``executor.halt_drain_ms``, then cancelled;
- heartbeat, named counters and sd_notify from an asyncio task, so a venue request that
  takes seconds never makes the executor look hung while its event loop is alive;
- idle: the loop sleeps in epoll and wakes when a watched row changes, so a new target is
  acted on within tens of microseconds (uvloop timers cannot sleep less than a
  millisecond). With ``idle.bells`` (default) the executor's doorbell
  (:mod:`mmshm.agent.doorbell`) is one of the loop's readers and the quoter (targets), risk
  (control) and the watchdog (HALT) ring it after writing; without, a
  :class:`~mmshm.execution.watcher.RowWatcher` thread polls the row versions every
  ``idle.hot_max_park_ns`` and wakes the loop through ``call_soon_threadsafe``. The loop
  still makes a full timed pass at least every ``idle.max_park_ns`` (control staleness,
  ticks, segment attach, commands).

The agent runner (:mod:`mmshm.agent.runner`) is a synchronous duty cycle; the executor
is an asyncio program (aiohttp sessions, the user-data stream, the dead-man refresher
all live on one loop), so it reuses the runner's parts (process table row, signal flags,
sd_notify, pinning) rather than the runner itself.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

import numpy as np

from mmshm.agent import signals as sig
from mmshm.agent.counters import ROLE_COUNTERS
from mmshm.agent.doorbell import Doorbell
from mmshm.agent.pinning import pin_current_process
from mmshm.agent.gcpolicy import GcPolicy, open_gc_policy
from mmshm.agent.timerslack import apply_timer_slack
from mmshm.agent.proctable import ProcessSlot, ProcessTable, VerdictTable
from mmshm.agent.sdnotify import SdNotifier
from mmshm.execution.account import AccountWriter
from mmshm.execution.dispatch import ApplyDispatcher, DrainReport
from mmshm.execution.session import ExecutionSession, session_from_config
from mmshm.execution.watcher import RowWatcher
from mmshm.instruments import InstrumentTable
from mmshm.records import (BOOK_ROW, CONTROL_ROW, MARKET_EVENT, ORDER_EVENT, TARGET_ROW, MdKind, Mode,
                           OrderEventKind as K, ProcState)
from mmshm.shm import BroadcastReader, GatedWriter, SeqlockTable, SegmentNotFound, ShmError
from mmshm.venues import VENUE_IDS
from mmshm.venues.binance_usdm.trading import BinanceError, ExchangeEnv, InstrumentIndex

log = logging.getLogger("mmshm.execution.process")

ROLE = "executor"
ORDERS_SEGMENT = "orders"
REQUIRED_READERS = ("risk", "recorder")

#: CONTROL_ROW.flags bits (defined by mmshm.risk.modes / mmshm.strategy.params).
CONTROL_FLAG_PAUSED = 1 << 0
CONTROL_FLAG_PULL = 1 << 1

#: Why the executor is halted (bit flags in ``ExecutorService.halt_why``; logged by name).
HALT_SIGNAL = 1          # SIGUSR1 (operator emergency halt, latched until restart)
HALT_WATCHDOG = 2        # verdicts row 0
HALT_NO_CONTROL = 4      # control block missing (not created / not written yet)
HALT_STALE_CONTROL = 8   # control heartbeat older than executor.control_stale_ms
HALT_RING = 16           # a publish was refused: events would be lost (latched)
HALT_NAMES = {HALT_SIGNAL: "signal", HALT_WATCHDOG: "watchdog", HALT_NO_CONTROL: "no_control",
              HALT_STALE_CONTROL: "stale_control", HALT_RING: "orders_ring_full"}


def halt_text(why: int) -> str:
    return ",".join(n for b, n in HALT_NAMES.items() if why & b) or "none"


def sim_signer():
    """The simulated venue's default test key (paper mode without configured credentials)."""
    from mmshm.venues.binance_usdm.auth import Signer
    from mmshm.venues.sim import auth as sim_auth

    return Signer(sim_auth.DEFAULT_API_KEY, sim_auth.DEFAULT_API_SECRET)


@dataclass
class ServiceOptions:
    """Knobs of the loop that are not trading policy (tests shorten them)."""
    segment_retry_s: float = 0.2        # between attach attempts of a missing segment
    segment_log_s: float = 5.0          # how often "still waiting for X" is logged
    heartbeat_s: float = 0.02           # heartbeat/counters task period
    start_retry_max_s: float = 5.0      # longest backoff between start-up attempts
    ring_reserve: int = 64              # free orders-ring slots required before any request
    idle_min_s: float = 0.0001          # first sleep when idle (backs off to idle_max_s)
    idle_max_s: float = 0.001
    idle_spins: int = 0                 # idle passes that only yield to the loop before sleeping
    busy_poll: bool = False             # never sleep (pinned production core): asyncio.sleep(0)
    watch: bool = True                  # idle waits for a wake: the doorbell (bells) or a RowWatcher
                                        # (park idle.hot_max_park_ns); False: back off with asyncio
                                        # sleeps (ms timer granularity)
    bells: bool = True                  # idle.bells: wake on the executor's doorbell, not a watcher
    halt_drain_s: float | None = None   # longest wait for in-flight applies before a halt's or the
                                        # stop's cancel-all; still running then: cancelled. An answer
                                        # takes ms; a venue that has not answered in 0.5 s is stuck,
                                        # and the halt must not wait for its timeout (the watchdog
                                        # path promises a cancel-all within 1 s). None: executor.halt_drain_ms
    replan_ns: int | None = None        # an unchanged target row is planned again at most this often
                                        # when orders changed under it (a lost place replaced; a
                                        # venue refusing the same request is retried no faster).
                                        # None: executor.replan_ms


class ExecutorService:
    """The executor's asyncio service; see the module docstring.

    ``session_factory(publish) -> ExecutionSession`` builds the session once the
    instruments are known (default: :func:`session_from_config`). ``flags`` are the
    process's signal flags (SIGTERM stop, SIGUSR1 halt, SIGUSR2 pause).
    """

    def __init__(self, cfg, *, flags: sig.SignalFlags | None = None, options: ServiceOptions | None = None,
                 session_factory: Callable[[InstrumentIndex, Callable[[np.void], bool]], ExecutionSession] | None = None,
                 notifier: SdNotifier | None = None, proc_table: ProcessTable | None = None) -> None:
        self.cfg = cfg
        self.instance = cfg.instance
        self.flags = flags or sig.SignalFlags()
        self.opt = options or ServiceOptions()
        if self.opt.halt_drain_s is None:
            self.opt.halt_drain_s = cfg.executor.halt_drain_ms / 1000
        if self.opt.replan_ns is None:
            self.opt.replan_ns = cfg.executor.replan_ms * 1_000_000
        # the role's idle strategy, in asyncio terms: busy = never sleep; yield = spin (yielding
        # to the loop's other tasks) for idle.spins passes, then back off; sleep = back off at once
        if cfg.idle.executor == "busy":
            self.opt.busy_poll = True
        elif cfg.idle.executor == "yield":
            self.opt.idle_spins = cfg.idle.spins
        self.opt.idle_min_s = max(self.opt.idle_min_s, cfg.idle.min_park_ns / 1e9)
        self.opt.idle_max_s = max(self.opt.idle_min_s, cfg.idle.max_park_ns / 1e9)
        self.watch_park_ns = cfg.idle.hot_max_park_ns     # the watcher runs only without bells
        self.opt.bells = self.opt.bells and cfg.idle.bells
        self.session_factory = session_factory
        self.notifier = notifier or SdNotifier()
        self.proc_table = proc_table
        self.slot: ProcessSlot | None = None
        self.session: ExecutionSession | None = None
        self.orders: GatedWriter | None = None
        self.targets: SeqlockTable | None = None
        self.control: SeqlockTable | None = None
        self.verdicts: VerdictTable | None = None
        self.index: InstrumentIndex | None = None
        self.n_inst = 0
        self.control_stale_ns = cfg.executor.control_stale_ms * 1_000_000
        self.tick_ns = cfg.executor.tick_interval_ms * 1_000_000
        # published-event tallies (the ring is the truth; these feed the counters)
        self.refused = 0
        self.acks = 0
        self.fills = 0
        self.drops = 0
        self.deferred = 0
        self.halt_why = 0
        self.work_total = 0
        self.idle_total = 0
        self.mode_now = 0
        self._ring_latched = False
        self._last_wait_log: dict[str, float] = {}
        self._next_attach = 0.0
        self._target_version: list[int] = []
        self._unplanned_seen: list[int] = []      # working.unplanned[i] when row i was last planned
        self._submitted_mono: list[int] = []      # when row i was last submitted
        self.replans = 0                          # unchanged rows planned again (orders changed under them)
        self._inst_mode: list[int] = []
        self._inst_pull: list[bool] = []
        self._ref_price: list[int] = []        # last target touch per instrument (FLATTEN's reference)
        self._ctl_rows: np.ndarray = np.zeros(0, CONTROL_ROW)
        self._ctl_versions: list[int] = []
        self._verdict_version = -1
        self._watchdog_halt = False
        self._halt_cancel_pending: set[int] = set()   # instruments whose halt cancel-all must be retried
        self._next_halt_retry = 0
        self._lat_quote = self._lat_ack = self._lat_tick = self._lat_seen = self._lat_send = None
        self.dispatch: ApplyDispatcher | None = None   # one apply task per instrument (run())
        self._cut: dict[int, set[str]] = {}            # halted instrument -> orders of a cancelled apply
        self.apply_cancelled = 0
        self.latency_errors = 0
        self.ready = False
        self.exit_reason = ""
        self.tick_errors = 0
        self.book: SeqlockTable | None = None      # shadow mode: the live book our orders match against
        self.md: BroadcastReader | None = None     # shadow mode: public trades (they fill our queue)
        self._md_buf = np.zeros(256, MARKET_EVENT)
        self._book_version: list[int] = []
        self.commands = None                       # operator commands (RESUME lifts the SIGUSR1 latch)
        self.watcher: RowWatcher | None = None     # wakes the idle loop when a watched row changes
        self.gc_policy: GcPolicy | None = None     # from RUNNING on: frozen, collects when idle
        self._flags_seen = -1                      # flags.events the loop has handled
        self.rung_submits = 0                      # target rows submitted by the doorbell's fast path
        self.bell: Doorbell | None = None          # or: our doorbell, rung by the rows' writers
        self._poked = False                        # a watched row changed since this pass began
        self._waiter: asyncio.Future | None = None
        self.account: AccountWriter | None = None  # the venue account row (risk's equity and margin)
        self._account_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ runner-like API
    @property
    def halted(self) -> bool:
        """The process-local halt latch (SIGUSR1); ``executor_command_handler`` reads it."""
        return self.flags.halt

    def clear_halt(self) -> None:
        """``mmshm resume``: lift the SIGUSR1 latch; trading follows the control block again."""
        self.flags.clear_halt()
        self.halt_why &= ~HALT_SIGNAL
        log.warning("operator RESUME: SIGUSR1 halt latch lifted")

    # ------------------------------------------------------------------ publishing
    def publish(self, rec: np.void) -> bool:
        """The session's sink: one ORDER_EVENT into the orders ring. A refusal latches HALT."""
        if self.orders.try_publish(rec):
            kind = rec["kind"]
            if kind == K.FILL:
                self.fills += 1
            elif kind == K.ACK:
                self.acks += 1
                if self._lat_ack is not None and rec["sent_mono"] > 0:
                    d = int(rec["event_mono"]) - int(rec["sent_mono"])
                    if d >= 0:
                        self._lat_ack.record(d)
            return True
        self.refused += 1
        if not self._ring_latched:
            self._ring_latched = True
            self.halt_why |= HALT_RING
            log.critical("orders ring refused an event (required reader behind): HALT, cancelling all; "
                         "restart the executor once risk and recorder keep up",
                         extra={"refused": self.refused, "free_slots": self.orders.free_slots()})
        return False

    @property
    def apply_errors(self) -> int:
        """Apply tasks that raised (logged by the dispatcher; counted in the ``drops`` slot)."""
        return self.dispatch.counters["errors"] if self.dispatch is not None else 0

    def ring_has_room(self) -> bool:
        """Enough free slots for the events of one batch of requests and their answers."""
        return self.orders.free_slots() >= self.opt.ring_reserve

    # ------------------------------------------------------------------ segments
    def _waiting(self, what: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last_wait_log.get(what, -1e9) >= self.opt.segment_log_s:
            self._last_wait_log[what] = now
            log.warning(f"executor waiting for segment {what!r} ({detail}); retrying every "
                        f"{self.opt.segment_retry_s:g} s", extra={"segment": what, "instance": self.instance})

    async def wait_instruments(self) -> InstrumentIndex | None:
        """The instruments table (written by the feed); None if stopped while waiting."""
        while not self.flags.stop:
            try:
                table = InstrumentTable.read_segment(self.instance)
                if len(table):
                    return InstrumentIndex(list(table))
                self._waiting("instruments", "empty")
            except (SegmentNotFound, ShmError, FileNotFoundError) as exc:
                self._waiting("instruments", f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.opt.segment_retry_s)
        return None

    def attach_missing(self) -> None:
        """Attach targets/control/verdicts if not yet attached (called from the loop)."""
        now = time.monotonic()
        if now < self._next_attach:
            return
        self._next_attach = now + self.opt.segment_retry_s
        if self.targets is None:
            try:
                self.targets = SeqlockTable.attach(self.instance, "targets", TARGET_ROW)
                log.info("attached targets", extra={"rows": self.targets.rows})
            except (SegmentNotFound, ShmError) as exc:
                self._waiting("targets", f"the quoter creates it: {exc}")
        if self.control is None:
            try:
                self.control = SeqlockTable.attach(self.instance, "control", CONTROL_ROW)
                self._ctl_rows = np.zeros(self.control.rows, CONTROL_ROW)
                self._ctl_versions = [-1] * self.control.rows
                log.info("attached control", extra={"rows": self.control.rows})
            except (SegmentNotFound, ShmError) as exc:
                self._waiting("control", f"risk creates it; HALT until then: {exc}")
        if self.commands is None:
            try:
                from mmshm.supervisor.commands import CommandAgent, executor_command_handler
                agent = CommandAgent(self.instance, executor_command_handler)
                agent.bind_runner(self)
                agent.on_start()
                self.commands = agent
            except (ShmError, OSError) as exc:
                self._waiting("commands", f"operator commands not seen until then: {exc}")
        if self.book is None and self.session is not None and self.session.shadow is not None:
            try:
                self.book = SeqlockTable.attach(self.instance, "book", BOOK_ROW)
                self._book_version = [0] * self.book.rows
            except (SegmentNotFound, ShmError) as exc:
                self._waiting("book", f"shadow mode matches against it: {exc}")
        if self.md is None and self.session is not None and self.session.shadow is not None:
            try:
                self.md = BroadcastReader.attach(self.instance, "md", MARKET_EVENT, reader="executor")
            except (SegmentNotFound, ShmError, ValueError) as exc:
                self._waiting("md", f"shadow mode fills our queue from its public trades: {exc}")
        if self.verdicts is None:
            try:
                self.verdicts = VerdictTable.attach(self.instance)
                log.info("attached verdicts (watchdog HALT flag)")
            except (SegmentNotFound, ShmError) as exc:
                self._waiting("verdicts", f"the watchdog creates it; its HALT is not seen until then: {exc}")

    # ------------------------------------------------------------------ modes
    def _read_control(self, now: int) -> None:
        """Refresh the control rows whose version changed; update the control halt bits."""
        why = self.halt_why & ~(HALT_NO_CONTROL | HALT_STALE_CONTROL)
        ctl = self.control
        if ctl is None:
            self.halt_why = why | HALT_NO_CONTROL
            return
        rows = self._ctl_rows
        needed = [0] + [1 + i for i in range(self.n_inst)]
        for r in needed:
            if r >= len(rows):
                why |= HALT_NO_CONTROL
                continue
            v = ctl.version(r)
            if v != self._ctl_versions[r]:
                try:
                    rows[r] = ctl.read(r)
                    self._ctl_versions[r] = v
                except ShmError:
                    pass                     # writer mid-update for too long: keep the last copy
            if self._ctl_versions[r] <= 0:
                why |= HALT_NO_CONTROL
            elif now - int(rows[r]["heartbeat_mono"]) > self.control_stale_ns:
                why |= HALT_STALE_CONTROL
        self.halt_why = why

    def _read_verdicts(self) -> None:
        if self.verdicts is None:
            return
        v = self.verdicts.table.version(0)
        if v != self._verdict_version:
            self._verdict_version = v
            head = self.verdicts.read(0)
            halt = bool(int(head["halt"]))
            if halt != self._watchdog_halt:
                log.warning("watchdog HALT " + ("raised" if halt else "cleared"),
                            extra={"reason": bytes(head["reason"]).rstrip(b"\0").decode("utf-8", "replace")})
            self._watchdog_halt = halt
        if self._watchdog_halt:
            self.halt_why |= HALT_WATCHDOG
        else:
            self.halt_why &= ~HALT_WATCHDOG

    def instrument_mode(self, inst: int) -> Mode:
        """Stricter of the global and instrument modes; HALT for any process-level halt."""
        if self.halt_why:
            base = Mode.HALT
        else:
            base = Mode.NORMAL
        if self.control is None or len(self._ctl_rows) <= 1 + inst:
            return Mode.HALT
        g = int(self._ctl_rows[0]["mode"])
        m = int(self._ctl_rows[1 + inst]["mode"])
        mode = max(g, m, int(base))
        if mode > Mode.FLATTEN:
            mode = Mode.HALT                 # an unknown mode is not a license to trade
        return Mode(mode)

    def instrument_pulled(self, inst: int) -> bool:
        """Paused (SIGUSR2 / control flag) or risk asks to pull quotes: no quotes, no halt."""
        if self.flags.paused:
            return True
        flags = int(self._ctl_rows[0]["flags"]) | int(self._ctl_rows[1 + inst]["flags"])
        return bool(flags & (CONTROL_FLAG_PAUSED | CONTROL_FLAG_PULL))

    # ------------------------------------------------------------------ lifecycle
    async def start_session(self) -> bool:
        """Connect and reconcile (retried with backoff), then a verified cancel-all of leftovers."""
        delay = 0.2
        while not self.flags.stop:
            try:
                await self.session.start()
                break
            except Exception as exc:  # noqa: BLE001 - a venue down at start-up is retried, not fatal
                log.error("executor start-up failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}",
                                                                        "retry_s": delay})
                try:
                    await self.session.stop(cancel=False)
                except Exception:  # noqa: BLE001
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.opt.start_retry_max_s)
        else:
            return False
        if self.session.trading is None:
            return True
        rec = self.session.last_reconcile
        if rec is not None:
            log.info("start-up reconciliation", extra={"unknown_canceled": rec.unknown_canceled,
                                                       "position_diffs": rec.position_diffs, "ok": rec.ok})
        delay = 0.2
        while not self.flags.stop:
            rep = await self.session.cancel_all()
            log.info("start-up cancel-all", extra={"canceled": rep.canceled, "method": rep.method,
                                                   "verified": rep.verified, "remaining": rep.remaining})
            if rep.ok:
                return True
            log.error("start-up cancel-all not verified; retrying", extra={"errors": rep.errors[-3:]})
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.opt.start_retry_max_s)
        return False

    async def _heartbeat_task(self) -> None:
        """Heartbeat, counters and systemd pings while the event loop is alive."""
        while True:
            now = time.monotonic_ns()
            try:
                self.update_counters()
                if self._lat_quote is not None:
                    for lat in (self._lat_quote, self._lat_ack, self._lat_tick, self._lat_seen, self._lat_send):
                        lat.publish(now)
            except Exception:  # noqa: BLE001 - observability must not stop the heartbeat
                log.exception("executor counters/latency update failed")
            if self.slot is not None:
                self.slot.heartbeat(now, self.work_total, self.idle_total)
            self.notifier.maybe_ping(now)
            await asyncio.sleep(self.opt.heartbeat_s)

    def update_counters(self) -> None:
        if self.slot is None or self.session is None:
            return
        c = self.slot.counters
        s = self.session
        sc = s.counters
        vals = {"orders_sent": sc["places"], "acks": self.acks, "rejects": sc["rejects"], "fills": self.fills,
                "cancels": sc["cancels"], "ring_full": self.refused, "drops": self.drops + self.apply_errors,
                "cancel_all": sc["cancel_alls"], "amends": sc["amends"], "not_sent": sc["not_sent"],
                "reconciles": sc["reconciles"], "mode": self.mode_now,
                "position_lots": sum(s.working.position.values()), "fees": sum(s.working.fees.values())}
        t = s.trading
        if t is not None and s.shadow is None:
            us = s.user_stream
            vals["reconnects"] = max(0, t.ws.connects - 1) + (max(0, us.connects - 1) if us is not None else 0)
            vals["breaker_state"] = int(t.breaker.state)
        for i, name in enumerate(ROLE_COUNTERS[ROLE]):
            if name in vals:
                c[i] = int(vals[name])

    async def run(self) -> int:
        """The whole life of the process; returns the exit code."""
        cfg = self.cfg
        hb: asyncio.Task | None = None
        code = 1
        try:
            if self.proc_table is not None:
                self.slot = self.proc_table.claim(ROLE, cpu=-1 if cfg.role_cpu(ROLE) is None else cfg.role_cpu(ROLE))
            hb = asyncio.get_running_loop().create_task(self._heartbeat_task())
            self.orders = GatedWriter.create(self.instance, ORDERS_SEGMENT, ORDER_EVENT,
                                             capacity=cfg.segments.orders_capacity, required=REQUIRED_READERS)
            self.opt.ring_reserve = min(self.opt.ring_reserve, max(1, self.orders.capacity // 4))
            self.index = await self.wait_instruments()
            if self.index is None:
                self.exit_reason = "stopped while waiting for instruments"
                return 0
            self.n_inst = len(self.index.specs)
            self._target_version = [0] * self.n_inst
            self._unplanned_seen = [0] * self.n_inst
            self._submitted_mono = [0] * self.n_inst
            self._inst_mode = [-1] * self.n_inst
            self._inst_pull = [False] * self.n_inst
            self._ref_price = [0] * self.n_inst
            self.dispatch = ApplyDispatcher(self.n_inst, self._apply, name="executor apply")
            self.session = (self.session_factory or self._default_session)(self.index, self.publish)
            spec0 = self.index.specs[0]
            self.account = AccountWriter.create(self.instance, venue=VENUE_IDS.get(spec0.venue, 0),
                                                asset=spec0.quote_asset)
            self.session.account = self.account
            self._open_latency()
            self._hook_latency()
            log.info("executor starting", extra={"mode": self.session.mode.value, "symbols": self.index.symbols,
                                                 "orders_capacity": self.orders.capacity})
            if not await self.start_session():
                self.exit_reason = "stopped during start-up"
                return 0
            if self.session.trading is not None and self.session.shadow is None:
                self._account_task = asyncio.get_running_loop().create_task(
                    self.account.refresh(self.session.trading.rest))   # GET /fapi/v2/account every 5 s
            self.ready = True
            if self.slot is not None:
                self.slot.set_state(ProcState.RUNNING)
            if getattr(self.cfg, "gc", None) is not None:
                self.gc_policy = open_gc_policy(ROLE, self.cfg)
                self.gc_policy.start()
            self.notifier.ready(status=f"executor: running ({self.session.mode.value})")
            await self.loop()
            code = 0
            self.exit_reason = "stop requested"
        except Exception as exc:
            self.exit_reason = f"{type(exc).__name__}: {exc}"
            log.exception("executor failed")
        finally:
            await self.shutdown(hb)
        return code

    def _default_session(self, index: InstrumentIndex, publish) -> ExecutionSession:
        signer = None
        if ExchangeEnv(self.cfg.mode) == ExchangeEnv.PAPER:
            from mmshm.venues.binance_usdm.auth import load_signer
            signer = load_signer() or sim_signer()
        return session_from_config(self.cfg, index, publish, signer=signer)

    def _open_latency(self) -> None:
        try:
            from mmshm.monitor.latency import LatencyRecorder
            self._lat_quote = LatencyRecorder.open(self.instance, "quote_to_send")
            self._lat_ack = LatencyRecorder.open(self.instance, "send_to_ack")
            self._lat_tick = LatencyRecorder.open(self.instance, "tick_to_order")
            self._lat_seen = LatencyRecorder.open(self.instance, "quote_to_seen")
            self._lat_send = LatencyRecorder.open(self.instance, "seen_to_send")
        except Exception as exc:  # noqa: BLE001 - metrics must never stop trading
            log.warning("latency histograms unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._lat_quote = self._lat_ack = self._lat_tick = self._lat_seen = self._lat_send = None

    async def shutdown(self, hb: asyncio.Task | None) -> None:
        """STOPPING, verified cancel-all (session.stop), row STOPPED, segments closed."""
        self.notifier.stopping(status=f"executor: stopping ({self.exit_reason or 'stop'})")
        if self._account_task is not None:     # before session.stop closes the REST session
            self._account_task.cancel()
            await asyncio.gather(self._account_task, return_exceptions=True)
        if self.slot is not None:
            self.slot.set_state(ProcState.STOPPING)
        if self.dispatch is not None and self.session is not None:
            try:                         # our own requests end before the stop's cancel-all
                await self._drain(list(range(self.n_inst)))
            except Exception:  # noqa: BLE001 - the cancel-all below must run regardless
                log.exception("draining the applies at stop failed")
        if self.session is not None:
            try:
                rep = await self.session.stop(cancel=True)
                if rep is not None:
                    log.info("stop cancel-all", extra={"canceled": rep.canceled, "method": rep.method,
                                                       "verified": rep.verified, "remaining": rep.remaining})
            except Exception:  # noqa: BLE001
                log.exception("stop cancel-all failed")
        self.update_counters()
        self._log_summary()
        if hb is not None:
            hb.cancel()
            try:
                await hb
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for lat in (self._lat_quote, self._lat_ack, self._lat_tick, self._lat_seen, self._lat_send):
            if lat is not None:
                try:
                    lat.publish()
                    lat.close()
                except Exception:  # noqa: BLE001
                    pass
        self._stop_watcher()
        if self.gc_policy is not None:
            self.gc_policy.close()
            self.gc_policy = None
        if self.slot is not None:
            self.slot.release()
        if self.commands is not None:
            try:
                self.commands.on_close()
            except Exception:  # noqa: BLE001
                pass
        for seg in (self.targets, self.control, self.verdicts, self.book, self.md, self.orders, self.account):
            if seg is not None:
                try:
                    seg.close()
                except Exception:  # noqa: BLE001
                    pass
        self.notifier.close()
        log.info("executor stopped", extra={"reason": self.exit_reason})

    def _log_summary(self) -> None:
        """One line with what the session did (counters, reconnect times, breaker) at exit."""
        s = self.session
        if s is None:
            return
        extra: dict = {"session": dict(s.counters), "acks": self.acks, "fills": self.fills,
                       "refused": self.refused, "deferred": self.deferred, "drops": self.drops,
                       "tick_errors": self.tick_errors, "apply_cancelled": self.apply_cancelled, "replans": self.replans,
                       "rung_submits": self.rung_submits}
        if self.dispatch is not None:
            extra["applies"] = dict(self.dispatch.counters)
        t = s.trading
        if t is not None and s.shadow is None:
            extra["ws_connects"] = t.ws.connects
            extra["ws_reconnect_max_ms"] = max(t.ws.reconnect_ns, default=0) / 1e6
            extra["breaker"] = dict(t.breaker.counts)
            if s.user_stream is not None:
                extra["user_connects"] = s.user_stream.connects
                extra["user_reconnect_max_ms"] = max(s.user_stream.reconnect_ns, default=0) / 1e6
        log.info("executor summary", extra=extra)

    # ------------------------------------------------------------------ the loop
    def _handle_flags(self) -> None:
        f = self.flags
        if f.halt and not self.halt_why & HALT_SIGNAL:
            log.warning("SIGUSR1: emergency halt (latched until restart)")
            self.halt_why |= HALT_SIGNAL
            if self.slot is not None:
                self.slot.set_state(ProcState.HALTED)
        if not f.halt:
            self.halt_why &= ~HALT_SIGNAL
        if self.slot is not None and not f.halt:
            self.slot.set_state(ProcState.PAUSED if f.paused else ProcState.RUNNING)

    # ------------------------------------------------------------------ idle wake-ups
    def _watched_versions(self) -> tuple:
        """Versions of every row a pass reacts to at once (runs on the watcher thread).

        Targets rows, control rows (global + per instrument) and the watchdog's verdict
        row 0; reads only (a version is one atomic load), so it is safe beside the loop.
        """
        out: list[int] = []
        t = self.targets
        if t is not None:
            out.extend(t.version(i) for i in range(min(self.n_inst, t.rows)))
        out.append(-1)
        c = self.control
        if c is not None:
            out.extend(c.version(r) for r in range(min(self.n_inst + 1, c.rows)))
        out.append(-1)
        v = self.verdicts
        if v is not None:
            out.append(v.table.version(0))
        return tuple(out)

    def _poke(self) -> None:
        """On the loop thread (via call_soon_threadsafe): a watched row changed."""
        self._poked = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _on_bell(self) -> None:
        """Loop reader of the doorbell: drain it (before anything looks), send the rung
        targets at once (:meth:`send_rung_targets`), then wake the pass for the rest."""
        if self.bell is not None and self.bell.drain():
            try:
                self.send_rung_targets()
            except Exception:  # noqa: BLE001 - the pass below retries; never lose the wake-up
                log.exception("doorbell fast path failed; the pass takes the targets")
            self._poke()

    def _start_watcher(self) -> None:
        if not self.opt.watch or self.opt.busy_poll or self.watcher is not None or self.bell is not None:
            return
        loop = asyncio.get_running_loop()
        if self.opt.bells:
            self.bell = Doorbell(self.instance, ROLE)
            loop.add_reader(self.bell.fileno(), self._on_bell)
            log.info("sleeping on the doorbell", extra={"timed_pass_ms": self.opt.idle_max_s * 1e3})
            return
        self.watcher = RowWatcher(self._watched_versions, lambda: loop.call_soon_threadsafe(self._poke),
                                  self.watch_park_ns, name="executor-row-watcher")
        self.watcher.start()
        log.info("row watcher started", extra={"park_us": self.watch_park_ns / 1e3,
                                               "timed_pass_ms": self.opt.idle_max_s * 1e3})

    def _stop_watcher(self) -> None:
        """Join the watcher thread (it reads segment versions: before the segments close);
        take the doorbell out of the loop and close it."""
        if self.bell is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.bell.fileno())
            except RuntimeError:                 # no running loop (stopped from outside it)
                pass
            log.info("doorbell closed", extra={"rings": self.bell.rings})
            self.bell.close()
            self.bell = None
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    async def _wait_wake(self, timeout_s: float) -> None:
        """Sleep in the event loop until the watcher pokes or ``timeout_s`` passes."""
        if self._poked:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiter = fut
        timer = loop.call_later(timeout_s, _resolve, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    async def loop(self) -> None:
        s = self.session
        flags = self.flags
        self._flags_seen = -1
        next_tick = time.monotonic_ns() + self.tick_ns
        idle_s = self.opt.idle_min_s
        spins = 0
        last_halt_why = -1
        self._start_watcher()
        while not flags.stop:
            self._poked = False              # before any read: a change from now on wakes the idle wait
            if flags.events != self._flags_seen:
                self._flags_seen = flags.events
                self._handle_flags()
                if flags.stop:
                    break
            self.attach_missing()
            if self.commands is not None:
                self.commands.do_work()
            if self.md is not None:
                self._feed_shadow_trades()
            if self.book is not None:
                self._feed_shadow_book()
            now = time.monotonic_ns()
            self._read_control(now)
            self._read_verdicts()
            if self._ring_latched:
                self.halt_why |= HALT_RING
            if self.halt_why != last_halt_why:
                if self.halt_why:
                    log.warning("executor HALT", extra={"why": halt_text(self.halt_why)})
                elif last_halt_why > 0:
                    log.warning("executor halt lifted")
                last_halt_why = self.halt_why
            work = await self.step(now)
            if now >= next_tick:
                next_tick = now + self.tick_ns
                try:
                    await s.tick()
                except (BinanceError, OSError, asyncio.TimeoutError) as exc:
                    # housekeeping retried next tick; orders stay guarded by the dead-man switch
                    self.tick_errors += 1
                    log.error("executor tick failed", extra={"error": f"{type(exc).__name__}: {exc}",
                                                             "tick_errors": self.tick_errors})
                work += 1
            if work:
                self.work_total += work
                idle_s = self.opt.idle_min_s
                spins = 0
                await asyncio.sleep(0)
            else:
                self.idle_total += 1
                spins += 1
                if self.gc_policy is not None:
                    self.gc_policy.collect_if_due()      # nothing to send: off the tick's path
                if self.opt.busy_poll or spins <= self.opt.idle_spins:
                    await asyncio.sleep(0)
                elif self.bell is not None or (self.watcher is not None and self.watcher.alive):
                    await self._wait_wake(self.opt.idle_max_s)
                else:
                    await asyncio.sleep(idle_s)
                    idle_s = min(idle_s * 2, self.opt.idle_max_s)

    async def step(self, now: int) -> int:
        """One pass over the instruments: halts/flatten first, then changed targets.

        A changed target row is submitted here: sent at once by :meth:`_apply` when the
        instrument has nothing in flight, else kept (the newest only) for its apply task;
        its answers are awaited there, so a venue round trip never keeps this pass from
        reading the other instruments' rows, nor the next row of the same instrument.
        """
        s = self.session
        d = self.dispatch
        work = 0
        modes = [self.instrument_mode(i) for i in range(self.n_inst)]
        self.mode_now = max(modes) if modes else int(Mode.HALT)
        # transitions into HALT/FLATTEN: stop the instruments' applies, then cancel-all (verified)
        entering = [i for i, m in enumerate(modes) if m >= Mode.HALT and self._inst_mode[i] < Mode.HALT]
        if entering:
            d.block(entering)            # at once, before any await: nothing new may start from here
        retry = (self._halt_cancel_pending and now >= self._next_halt_retry)
        if entering or retry:
            insts = sorted(set(entering) | ({i for i in self._halt_cancel_pending if modes[i] >= Mode.HALT}))
            if insts and s.trading is not None:
                await self._drain(insts)
                rep = await s.cancel_all([s.instruments.spec(i).symbol for i in insts])
                cut = self._cut_orders_left(insts)
                log.warning("halt cancel-all", extra={"why": halt_text(self.halt_why), "instruments": insts,
                                                      "canceled": rep.canceled, "method": rep.method,
                                                      "verified": rep.verified, "remaining": rep.remaining,
                                                      "cut_requests_unsettled": cut})
                ok = [i for i in insts if i not in cut] if rep.ok else []
                self._halt_cancel_pending.difference_update(ok)
                if len(ok) < len(insts):
                    # not verified, or a cancelled apply's request may still land: again in 1 s
                    self._halt_cancel_pending.update(i for i in insts if i not in ok)
                    self._next_halt_retry = now + 1_000_000_000
                work += 1
            elif not insts:
                self._halt_cancel_pending.clear()
        for i, m in enumerate(modes):
            prev_mode = self._inst_mode[i]
            self._inst_mode[i] = int(m)
            if m == Mode.FLATTEN and not self.halt_why and s.trading is not None:
                if self.ring_has_room():
                    cap = int(self._ctl_rows[1 + i]["max_order_qty"])
                    if await s.flatten(i, cap, self._ref_price[i]):
                        work += 1
                continue
            if m >= Mode.HALT:
                continue                     # cancel-all above; nothing new while halted
            if d.blocked(i):
                d.unblock(i)                 # out of HALT/FLATTEN: applies may start again
                self._cut.pop(i, None)       # those orders are the diff's again (pending timeout)
            work += self._take_target(i, m, prev_mode, now)
        return work

    def _take_target(self, i: int, m: Mode, prev_mode: int, now: int) -> int:
        """Instrument ``i``'s target row, if it changed (or must be planned again), read and
        submitted: sent now when nothing of it is in flight. Returns 1 if submitted."""
        s = self.session
        d = self.dispatch
        if self.targets is None or i >= self.targets.rows:
            return 0
        pulled = self.instrument_pulled(i)
        v = self.targets.version(i)
        unplanned = s.working.unplanned.get(i, 0)
        if v == self._target_version[i] and int(m) == prev_mode and pulled == self._inst_pull[i]:
            # the same row: planned again only when orders changed under it (an order
            # ended, an amend or cancel was refused), at most every replan_ns, so a lost
            # place is replaced without waiting for the quoter's next row
            if (unplanned == self._unplanned_seen[i] or d.busy(i)
                    or now - self._submitted_mono[i] < self.opt.replan_ns):
                return 0
            self.replans += 1
        if v == 0 and not pulled:
            self._target_version[i] = 0
            return 0                         # the quoter has not written this row yet
        seen = time.monotonic_ns()
        if not self.ring_has_room():
            self.deferred += 1               # retried next pass: version left unseen
            return 0
        try:
            row = self.targets.read(i)
        except ShmError:
            return 0                         # writer mid-update: next pass
        self._target_version[i] = v
        self._inst_pull[i] = pulled
        self._unplanned_seen[i] = unplanned
        self._submitted_mono[i] = seen
        if int(row["instrument"]) != i:
            self.drops += 1
            log.error("target row for the wrong instrument dropped",
                      extra={"row": i, "instrument": int(row["instrument"])})
            return 0
        nb, na = int(row["n_bids"]), int(row["n_asks"])
        if nb and na:
            self._ref_price[i] = (int(row["bid_px"][0]) + int(row["ask_px"][0])) // 2
        elif nb or na:
            self._ref_price[i] = int(row["bid_px"][0]) if nb else int(row["ask_px"][0])
        if pulled:
            row["flags"] = int(row["flags"]) | 1     # ``read`` returned our own copy
        d.submit(i, (row, m, seen))
        return 1

    def send_rung_targets(self) -> int:
        """The doorbell's fast path, straight from the loop's reader callback: the changed
        target rows of instruments in a steady tradeable mode are submitted at once, before
        the pass the ring also wakes (which then finds them seen). Everything else, a mode
        change, a halt or flatten, a signal not yet handled, a segment not yet attached,
        is left to that pass, whose ``step`` handles it exactly as before. Returns the
        rows submitted."""
        if (not self.ready or self.targets is None or self.dispatch is None or self.flags.stop
                or self.flags.halt or self.flags.events != self._flags_seen or self._halt_cancel_pending):
            return 0
        now = time.monotonic_ns()
        self._read_control(now)
        self._read_verdicts()
        if self.halt_why:
            return 0
        work = 0
        for i in range(self.n_inst):
            m = self.instrument_mode(i)
            prev = self._inst_mode[i]
            if m != prev or m >= Mode.FLATTEN or self.dispatch.blocked(i):
                continue                     # a transition: the pass's business
            work += self._take_target(i, m, prev, now)
        self.rung_submits += work
        return work

    def _apply(self, i: int, item: tuple[np.void, Mode, int], follow_up: bool) -> Awaitable[None] | None:
        """One target row of instrument ``i`` (see :mod:`mmshm.execution.dispatch`): its
        requests are written now (``session.send_targets``); the answers are returned to
        be awaited in the instrument's task.

        A ``follow_up`` row waited behind the previous apply's answers, during which the
        loop may not have looked at the control block: it is re-read here, and a halt (or a
        stop, or a full orders ring) drops the row and marks it unseen, so the loop reads
        the latest row again once trading may resume.
        """
        row, mode, seen = item
        if follow_up:
            self._read_control(time.monotonic_ns())
            self._read_verdicts()
            now_mode = self.instrument_mode(i)
            if now_mode >= Mode.HALT or self.flags.stop or self.flags.halt:
                self._target_version[i] = -1
                return None
            if not self.ring_has_room():
                self.deferred += 1
                self._target_version[i] = -1
                return None
            mode = max(mode, now_mode)       # the stricter of the row's mode and the current one
        try:
            _, answers = self.session.send_targets(row, mode=mode, seen_mono=seen, control=self._ctl_rows[1 + i])
        except ValueError as exc:            # a target the state machine refuses: counted drop
            self.drops += 1
            log.error("target row dropped", extra={"instrument": i, "error": str(exc)})
            return None
        if answers is None:
            return None
        return _RowAnswers(answers, (seen, int(row["quote_mono"]), int(row["md_publish_mono"])))

    async def _drain(self, insts: list[int]) -> DrainReport:
        """Before a halt's cancel-all (or the stop's): the instruments' applies end first.

        Awaited up to ``halt_drain_s`` (an answer normally takes milliseconds), then
        cancelled. A cancelled apply may have written a frame whose answer never came: its
        orders stay PENDING_* and are remembered in ``_cut`` so the halt cancel-all is
        repeated until each is settled (acked then cancelled, or known rejected).
        """
        rep = await self.dispatch.drain(insts, self.opt.halt_drain_s)
        if rep.cancelled:
            self.apply_cancelled += len(rep.cancelled)
            for i in rep.cancelled:
                cids = {o.client_id for o in self.session.working.live_orders(i) if o.is_pending}
                if cids:
                    self._cut.setdefault(i, set()).update(cids)
        if rep.finished or rep.cancelled or rep.dropped:
            log.info("applies drained", extra={"instruments": insts, "finished": rep.finished,
                                               "cancelled": rep.cancelled, "dropped": rep.dropped})
        return rep

    def _cut_orders_left(self, insts: list[int]) -> list[int]:
        """Instruments with an order of a cancelled apply that is still live locally."""
        left = []
        working = self.session.working
        for i in insts:
            cids = self._cut.get(i)
            if not cids:
                continue
            cids = {c for c in cids if (o := working.get(c)) is not None and o.is_live}
            if cids:
                self._cut[i] = cids
                left.append(i)
            else:
                del self._cut[i]
        return left

    def _on_send_latency(self, d: int) -> None:
        """A seen→socket sample from the session, taken in an apply task: quote→send and
        tick→order of the target row that task is applying (its context variable)."""
        ctx = _APPLYING.get()
        if ctx is None or self._lat_quote is None:
            return
        seen, qm, mm = ctx
        try:
            if qm > 0 and seen >= qm:
                self._lat_quote.record(seen - qm + d)
                if self._lat_seen is not None:          # quote_to_send = quote_to_seen + seen_to_send
                    self._lat_seen.record(seen - qm)
            if self._lat_send is not None:
                self._lat_send.record(d)
            if mm > 0 and seen >= mm:
                self._lat_tick.record(seen - mm + d)
        except Exception:  # noqa: BLE001 - called inside the session's request path: metrics never break it
            self.latency_errors += 1
            if self.latency_errors == 1:
                log.exception("stage latency record failed (counted, logged once)")

    def _hook_latency(self) -> None:
        """Route the session's seen→send samples (``latency_ns.append``) to the stage histograms."""
        lat = self.session.latency_ns
        if isinstance(lat, _SendLatency):
            return
        if not isinstance(lat, deque):
            log.warning("session.latency_ns is not a deque: quote_to_send/tick_to_order not recorded",
                        extra={"type": type(lat).__name__})
            return
        sink = _SendLatency(lat.maxlen, self._on_send_latency)
        sink.extend(lat)
        self.session.latency_ns = sink

    def _feed_shadow_trades(self) -> None:
        """Shadow mode: the public trades of the traded instruments, in the feed's order, go
        to the ShadowVenue, where a trade at our price consumes the queue ahead of our order
        and then fills it (before the book row that shows its effect is fed). A lapped reader
        (gaps counted by the ring) only loses shadow fills, never real ones."""
        shadow = self.session.shadow
        while True:
            n = self.md.poll_batch(self._md_buf)
            if not n:
                return
            ev = self._md_buf[:n]
            for r in ev[(ev["kind"] == MdKind.TRADE) & (ev["instrument"] < self.n_inst)]:
                shadow.on_trade(int(r["instrument"]), int(r["trade_px"]), int(r["trade_qty"]), int(r["side"]))
            if n < len(self._md_buf):
                return

    def _feed_shadow_book(self) -> None:
        """Shadow mode: each changed BOOK_ROW of a traded instrument goes to the ShadowVenue."""
        shadow = self.session.shadow
        for i in range(min(self.n_inst, self.book.rows)):
            v = self.book.version(i)
            if v != self._book_version[i] and v > 0:
                try:
                    row = self.book.read(i)
                except ShmError:
                    continue
                self._book_version[i] = v
                shadow.on_book_row(row)


#: (seen_mono, quote_mono, md_publish_mono) of the target row the current apply task is
#: applying; read by :meth:`ExecutorService._on_send_latency` (each task has its own context).
_APPLYING: contextvars.ContextVar[tuple[int, int, int] | None] = contextvars.ContextVar(
    "mmshm_executor_applying", default=None)


class _RowAnswers:
    """The answers of one target row's requests, awaitable; awaiting them puts the row's
    stage stamps in the awaiting task's context, where the seen→send samples (recorded as
    the answers come in) read them."""

    __slots__ = ("answers", "stamps")

    def __init__(self, answers: Awaitable[None], stamps: tuple[int, int, int]) -> None:
        self.answers = answers
        self.stamps = stamps

    def __await__(self):
        _APPLYING.set(self.stamps)
        return self.answers.__await__()


class _SendLatency(deque):
    """``session.latency_ns`` with a hook: every seen→send sample the session appends is also
    passed to ``on_sample`` at once, in the task that sent the request, so it is attributed
    to that task's target row even while other instruments' applies run concurrently."""

    def __init__(self, maxlen: int | None, on_sample: Callable[[int], None]) -> None:
        super().__init__(maxlen=maxlen)
        self._on_sample = on_sample

    def append(self, d: int) -> None:
        super().append(d)
        self._on_sample(d)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


# ---------------------------------------------------------------------- entry point

def install_loop_signals(flags: sig.SignalFlags, then: Callable[[], None] | None = None) -> None:
    """Signals through the event loop (wakes it; the handler still only sets flags), then
    ``then()`` (the service's poke: its idle wait must end to act on the flags)."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        flags._handle(signum, None)
        if then is not None:
            then()

    for signum in sig.HANDLED:
        loop.add_signal_handler(signum, handle, signum)


async def _amain(cfg, options: ServiceOptions | None) -> int:
    flags = sig.SignalFlags()
    table = ProcessTable.open(cfg.instance, cfg.segments.procs_rows)
    try:
        svc = ExecutorService(cfg, flags=flags, options=options, proc_table=table)
        install_loop_signals(flags, svc._poke)
        return await svc.run()
    finally:
        table.close()


def run_executor(cfg, options: ServiceOptions | None = None) -> int:
    """Run the executor process for ``cfg`` on uvloop (asyncio if uvloop is missing)."""
    cpu = cfg.role_cpu(ROLE)
    if cpu is not None:
        pin_current_process(cpu)
    apply_timer_slack(ROLE, cfg.idle.timer_slack_ns)   # before the row watcher thread starts
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        runner = asyncio.run
    return runner(_amain(cfg, options))


__all__ = ["ExecutorService", "ServiceOptions", "run_executor", "ROLE", "ORDERS_SEGMENT", "REQUIRED_READERS"]
