"""The agent runner: the duty cycle every mmshm process runs in.

One runner per process. It pins the process, claims the process's row in the shared
process table, starts the agents, then loops: act on signal flags, ``do_work()``, write
the heartbeat into its row, ping systemd's watchdog when due, idle. On stop (SIGTERM,
SIGINT, an agent error) it tells systemd STOPPING=1, runs the stop hook (the executor's
cancel-all), closes the agents and marks its row STOPPED.

Signal handlers only set flags (``mmshm.agent.signals``); everything they ask for
happens here, between two duty cycles, never in the middle of one.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Sequence

from mmshm.agent.base import Agent, CompositeAgent
from mmshm.agent.doorbell import BELL_ROLES, Doorbell
from mmshm.agent.gcpolicy import GcPolicy, open_gc_policy
from mmshm.agent.idle import IdleStrategy, make_idle, resolve_idle_kind
from mmshm.agent.pinning import pin_current_process
from mmshm.agent.proctable import DEFAULT_ROWS, ProcessSlot, ProcessTable
from mmshm.agent.sdnotify import SdNotifier
from mmshm.agent.timerslack import apply_timer_slack
from mmshm.agent import signals as sig
from mmshm.config import HOT_ROLES
from mmshm.records import ProcState

log = logging.getLogger("mmshm.agent")

Hook = Callable[[], object]


def default_instance() -> str:
    """The instance name: ``$MMSHM_INSTANCE`` or ``main``."""
    return os.environ.get("MMSHM_INSTANCE") or "main"


class AgentRunner:
    """Runs ``agents`` in one duty cycle until stopped; see the module docstring.

    An agent (or each agent of a composite) may define ``bind_runner(runner)``: it is called
    once, after pinning and the row claim and before ``on_start``, so the agent can keep
    ``runner.counters`` (its row's counter slots) and read ``runner.paused``/``halted``.

    Hooks (all optional, all called from the duty-cycle thread, never from a handler):

    - ``on_stop()``: before the agents close on a stop (cancel-all goes here); runs on
      every exit path, including an agent raising.
    - ``on_halt()``: once, when SIGUSR1 (or ``request_halt``) latches the halt flag.
    - ``on_pause(paused: bool)``: on every SIGUSR2 toggle.
    - ``on_reload()``: on SIGHUP. If it raises, the error is logged and counted
      (``reload_errors``) and the process keeps running; an exception from ``on_halt`` or
      ``on_pause`` stops the runner (exit code 1, the stop hook still runs).

    A long hook calls ``runner.keepalive()`` now and then to keep its heartbeat fresh.

    ``skip_work_when_paused``: when True a paused runner stops calling ``do_work`` (but
    keeps heartbeating); by default agents keep running and read ``runner.paused``, since
    pausing quoting must not stop market data or order acknowledgements.
    """

    def __init__(
        self,
        agents: Agent | Sequence[Agent],
        idle: IdleStrategy | None = None,
        role: str = "agent",
        cpu: int | None = None,
        proc_table: ProcessTable | None = None,
        *,
        notifier: SdNotifier | None = None,
        on_stop: Hook | None = None,
        on_halt: Hook | None = None,
        on_pause: Callable[[bool], object] | None = None,
        on_reload: Hook | None = None,
        flags: sig.SignalFlags | None = None,
        install_signals: bool = True,
        skip_work_when_paused: bool = False,
        status_interval_s: float = 10.0,
        n_processes: int | None = None,
        gc_policy: GcPolicy | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if isinstance(agents, (list, tuple)):
            agent: Agent = agents[0] if len(agents) == 1 else CompositeAgent(agents)
        else:
            agent = agents  # type: ignore[assignment]
        self.agent = agent
        self.idle = idle if idle is not None else make_idle(None, n_processes)
        self.role = role
        self.cpu = cpu
        self.proc_table = proc_table
        self.notifier = notifier if notifier is not None else SdNotifier()
        self.on_stop = on_stop
        self.on_halt = on_halt
        self.on_pause = on_pause
        self.on_reload = on_reload
        self.flags = flags if flags is not None else sig.SignalFlags()
        bell = getattr(self.idle, "bell", None)
        if bell is not None and self.flags.wake is None:
            self.flags.wake = bell.ring_self        # a signal ends a park on the doorbell at once
        self.install_signals = install_signals
        self.skip_work_when_paused = skip_work_when_paused
        self.status_interval_ns = int(status_interval_s * 1e9)
        self._clock = clock
        # started once the agents run; collects where the loop is about to idle
        self.gc_policy = gc_policy
        self.slot: ProcessSlot | None = None
        self.work_count = 0
        self.idle_cycles = 0
        self.exit_reason = ""
        self._halt_handled = False
        self._paused_seen = False
        self._previous_handlers: dict = {}
        self.reload_errors = 0

    # ------------------------------------------------------------------ flags, from code
    @property
    def paused(self) -> bool:
        return self.flags.paused

    @property
    def halted(self) -> bool:
        return self.flags.halt

    def request_stop(self) -> None:
        self.flags.request_stop()

    def request_halt(self) -> None:
        self.flags.request_halt()

    def clear_halt(self) -> None:
        """Lift the process-local halt latch (an operator decision; never automatic)."""
        self.flags.clear_halt()

    def keepalive(self) -> None:
        """Heartbeat (row and systemd watchdog) from inside a long hook, e.g. a cancel-all
        in ``on_stop`` that takes seconds: call it between steps so nobody kills us mid-way."""
        now = self._clock()
        if self.slot is not None:
            self.slot.flush(now)
        self.notifier.maybe_ping(now)

    @property
    def counters(self):
        """The row's int64 counter slots (``mmshm.agent.counters`` names them); None without a table."""
        return None if self.slot is None else self.slot.counters

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> int:
        """Run until stopped. Returns the exit code: 0 on a requested stop, 1 on an error."""
        code = 1
        started = False
        try:
            self._setup()
            self.agent.on_start()
            started = True
            self._set_state(self._current_state())
            self.notifier.ready(status=self._status_text())
            log.info("agent runner started", extra={"role": self.role, "agent": self.agent.name})
            if self.gc_policy is not None:
                self.gc_policy.start()
            self._loop()
            code = 0
            self.exit_reason = _stop_reason(self.flags)
        except KeyboardInterrupt:  # only without our handlers (install_signals=False)
            code = 0
            self.exit_reason = "KeyboardInterrupt"
        except Exception as exc:
            self.exit_reason = f"{type(exc).__name__}: {exc}"
            log.exception("agent runner failed", extra={"role": self.role})
        finally:
            # Also on SystemExit and friends: cancel-all must run on every way out.
            self._shutdown(started)
        return code

    def _setup(self) -> None:
        if self.install_signals:
            self._previous_handlers = sig.install(self.flags)
        if self.cpu is not None:
            pin_current_process(self.cpu)
        if self.proc_table is not None:
            self.slot = self.proc_table.claim(self.role, cpu=-1 if self.cpu is None else self.cpu)
        self._paused_seen = self.flags.paused
        bind = getattr(self.agent, "bind_runner", None)
        if bind is not None:
            bind(self)

    def _loop(self) -> None:
        """The duty cycle. Everything per cycle is a local; rare things hang off two checks:
        ``flags.events`` (a signal or request arrived) and ``next_tick`` (sd_notify due)."""
        flags = self.flags
        do_work = self.agent.do_work
        idle = self.idle.idle
        gc_idle = self.gc_policy.collect_if_due if self.gc_policy is not None else None
        beat = self.slot.heartbeat if self.slot is not None else None
        clock = self._clock
        notifier = self.notifier
        periods = [p for p in (notifier.watchdog_interval_ns if notifier.watchdog_enabled else 0,
                               self.status_interval_ns if notifier.enabled else 0) if p > 0]
        tick_ns = min(periods) if periods else 1 << 62
        next_tick = clock()
        next_status = next_tick + self.status_interval_ns
        seen = -1  # act on flags raised before the loop started
        skipping = False
        work_total, idle_total = self.work_count, self.idle_cycles
        try:
            while True:
                if flags.events != seen:
                    seen = flags.events
                    self.work_count, self.idle_cycles = work_total, idle_total
                    self._handle_flags()
                    if flags.stop:
                        break
                    skipping = self.skip_work_when_paused and flags.paused
                work = 0 if skipping else do_work()
                now = clock()
                if work > 0:
                    work_total += work
                else:
                    idle_total += 1
                if beat is not None:
                    beat(now, work_total, idle_total)
                if now >= next_tick:
                    next_tick = now + tick_ns
                    notifier.maybe_ping(now)
                    if notifier.enabled and now >= next_status:
                        self.work_count, self.idle_cycles = work_total, idle_total
                        notifier.status(self._status_text())
                        next_status = now + self.status_interval_ns
                if work <= 0 and gc_idle is not None:
                    gc_idle()                  # off the tick's path: nothing to do right now
                idle(work)
        finally:
            self.work_count, self.idle_cycles = work_total, idle_total

    def _handle_flags(self) -> None:
        """Act on what the signal handlers asked for (between duty cycles)."""
        flags = self.flags
        if flags.halt and not self._halt_handled:
            self._halt_handled = True
            log.warning("emergency halt requested", extra={"role": self.role})
            self._set_state(self._current_state())
            self.notifier.status(self._status_text())
            if self.on_halt is not None:
                self.on_halt()
        elif not flags.halt and self._halt_handled:  # cleared from code (clear_halt)
            self._halt_handled = False
            log.warning("halt cleared", extra={"role": self.role})
            self._set_state(self._current_state())
        if flags.paused != self._paused_seen:
            self._paused_seen = flags.paused
            log.warning("paused" if flags.paused else "resumed", extra={"role": self.role})
            self._set_state(self._current_state())
            self.notifier.status(self._status_text())
            if self.on_pause is not None:
                self.on_pause(flags.paused)
        while flags.take_reload():
            log.info("reload requested", extra={"role": self.role})
            if self.on_reload is not None:
                try:
                    self.on_reload()
                except Exception:  # a bad reload (e.g. an invalid new config) keeps the old state running
                    self.reload_errors += 1
                    log.exception("reload hook failed; keeping the current settings", extra={"role": self.role})

    def _shutdown(self, started: bool) -> None:
        """STOPPING=1, stop hook, on_close, row STOPPED; each step runs even if one fails."""
        self.notifier.stopping(status=f"{self.role}: stopping ({self.exit_reason or 'stop'})")
        self._set_state(ProcState.STOPPING)
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception:
                log.exception("stop hook failed", extra={"role": self.role})
        if started:
            try:
                self.agent.on_close()
            except Exception:
                log.exception("agent close failed", extra={"role": self.role})
        if self.slot is not None:
            try:
                self.slot.release(self._clock())
            except Exception:
                log.exception("could not mark process row stopped", extra={"role": self.role})
        if self._previous_handlers:
            sig.restore(self._previous_handlers)
            self._previous_handlers = {}
        self.notifier.close()
        if self.gc_policy is not None:
            self.gc_policy.close()
        log.info("agent runner stopped", extra={"agent": self.agent.name, "reason": self.exit_reason,
                                                "work_count": self.work_count, "idle_cycles": self.idle_cycles})

    # ------------------------------------------------------------------ helpers
    def _current_state(self) -> ProcState:
        if self.flags.halt:
            return ProcState.HALTED
        if self.flags.paused:
            return ProcState.PAUSED
        return ProcState.RUNNING

    def _set_state(self, state: ProcState) -> None:
        if self.slot is not None:
            self.slot.set_state(state, self._clock())

    def _status_text(self) -> str:
        state = self._current_state().name.lower()
        return (f"{self.role}: {state}, work={self.work_count} idle_cycles={self.idle_cycles} "
                f"idle={self.idle.name}")


def _stop_reason(flags: sig.SignalFlags) -> str:
    if flags.stop_signal is not None:
        import signal

        return f"signal {signal.Signals(flags.stop_signal).name}"
    return "stop requested"


def run_agents(
    role: str,
    agents: Agent | Sequence[Agent],
    *,
    instance: str | None = None,
    cpu: int | None = None,
    idle: IdleStrategy | None = None,
    idle_kind: str | None = None,
    idle_options: dict | None = None,
    n_processes: int | None = None,
    use_proc_table: bool = True,
    proc_rows: int | None = None,
    **runner_kwargs,
) -> int:
    """The entry point every ``procs/<role>.py`` main calls; returns the exit code.

    Opens (creating if needed) the instance's process table, builds the idle strategy
    (``idle`` as given, else ``make_idle(idle_kind)``, where ``$MMSHM_IDLE`` wins), runs an
    ``AgentRunner`` and closes the table. ``runner_kwargs`` go to ``AgentRunner``
    (``on_stop``, ``on_halt``, ``on_pause``, ``on_reload``, ``notifier``, ...).
    """
    if idle is None:
        idle = make_idle(idle_kind, n_processes, **(idle_options or {}))
    table = None
    if use_proc_table:
        table = ProcessTable.open(instance or default_instance(), proc_rows or DEFAULT_ROWS)
    try:
        runner = AgentRunner(agents, idle, role, cpu, table, n_processes=n_processes, **runner_kwargs)
        return runner.run()
    finally:
        if table is not None:
            table.close()


def run_role(role: str, agents: Agent | Sequence[Agent], config, **kwargs) -> int:
    """``run_agents`` with the role's settings from an ``mmshm.config.Config``.

    Takes the instance, the role's CPU (``[cpus]``), idle strategy and backoff parameters
    (``[idle]``) and the process-table size (``segments.procs_rows``); ``kwargs`` override
    or add (hooks, ``n_processes``...). A hot role that sleeps (``idle.bells``, strategy
    ``sleep``) parks on its doorbell, so its producers' rings wake it at once.
    """
    idle_cfg = config.idle
    if role in HOT_ROLES:
        apply_timer_slack(role, idle_cfg.timer_slack_ns)   # before any thread of the role starts
    kwargs.setdefault("instance", config.instance)
    kwargs.setdefault("cpu", config.role_cpu(role))
    kwargs.setdefault("idle_kind", config.role_idle(role))
    sleeping = (kwargs.get("idle") is None
                and resolve_idle_kind(kwargs["idle_kind"], kwargs.get("n_processes")) == "sleep")
    if sleeping:
        options: dict = idle_cfg.backoff_for(role)
    else:                                        # yield: spins before each sched_yield (busy: none)
        options = {"max_spins": idle_cfg.spins}
    bell = None
    if (idle_cfg.bells and role in BELL_ROLES and kwargs.get("idle") is None
            and "idle_options" not in kwargs and sleeping):
        bell = Doorbell(config.instance, role)
        options["bell"] = bell
    kwargs.setdefault("idle_options", options)
    kwargs.setdefault("proc_rows", config.segments.procs_rows)
    own_gc = None
    if "gc_policy" not in kwargs and getattr(config, "gc", None) is not None:
        own_gc = kwargs["gc_policy"] = open_gc_policy(role, config)
    try:
        return run_agents(role, agents, **kwargs)
    finally:
        if own_gc is not None:
            own_gc.close()                       # idempotent: also when the runner never ran
        if bell is not None:
            log.info("doorbell closed", extra={"role": role, "rings": bell.rings, "waits": bell.waits,
                                               "woken": bell.wakes})
            bell.close()
