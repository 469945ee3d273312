"""The supervisor: start the simulated venue and every role in order, restart what dies, stop in order.

Readiness is the process-table row: a child is ready when the row it claimed (keyed by
its pid) says RUNNING (or PAUSED/HALTED). Why not sd_notify READY through our own
``NOTIFY_SOCKET``: the row is written by the same runner call that would send READY (after
``on_start``), every role already has it, the watchdog and ``mmshm status`` read the
same row, and it needs no socket per child. It also keeps ``NOTIFY_SOCKET`` meaning one
thing: systemd's, when the roles run as units instead of under this supervisor.

Children run as ``python -m mmshm.supervisor.launch <our pid> -- python -m mmshm.procs.<role>
<config args>``: the wrapper sets the parent-death signal and execs, so a killed
supervisor takes its children down gracefully (SIGTERM) and the pid we hold is the
role's pid. Each child gets its own process group, so a Ctrl-C in the terminal reaches
only the supervisor, which then stops the children in order.

Lifecycle: ``start()`` (refuse if the instance is already running, sweep dead segments,
create the process and commands tables, start the venue, then each role waiting for
readiness), ``poll()`` repeatedly (reap, restart with backoff, give up and halt),
``stop()`` (executor first with SIGTERM so it cancels all, ... venue last; SIGKILL after
each role's timeout; then unlink every ``/dev/shm/mmshm-<instance>-*``).
"""
from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import orjson

from mmshm.records import ProcState
from mmshm.shm import segment as segmod
from mmshm.supervisor.backoff import RestartPolicy, RestartTracker
from mmshm.supervisor.logs import RoleLog, pump
from mmshm.supervisor.roles import VENUE, RoleSpec, select_roles, stop_order

log = logging.getLogger("mmshm.supervisor")

READY_STATES = (ProcState.RUNNING, ProcState.PAUSED, ProcState.HALTED)

EventSink = Callable[[dict], None]


class SupervisorError(RuntimeError):
    """Start-up cannot proceed (instance already running, venue did not come up, bad CPU)."""


@dataclass
class Child:
    """One supervised process (a role or the venue) across its restarts."""

    name: str
    argv_fn: Callable[[], list[str]]
    stop_timeout_s: float
    ready_timeout_s: float
    tracker: RestartTracker
    popen: subprocess.Popen | None = None
    started_mono: float = 0.0
    ready: bool = False
    state: str = "new"                  # starting | running | backoff | failed | stopped
    next_start_mono: float = 0.0
    starts: int = 0
    last_exit: int | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def _exit_text(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Runs the pipeline of one instance. See the module docstring."""

    def __init__(self, cfg, config_args: Sequence[str] = (), *, log_dir: str | os.PathLike | None = None,
                 policy: RestartPolicy | None = None, only: Sequence[str] | None = None,
                 skip: Sequence[str] = (), env: dict[str, str] | None = None,
                 on_event: EventSink | None = None, venue_timeout_s: float = 20.0,
                 ready_timeout_s: float | None = None, python: str = sys.executable) -> None:
        self.cfg = cfg
        self.instance: str = cfg.instance
        self.config_args = list(config_args)
        self.log_dir = Path(log_dir) if log_dir else Path(cfg.state_dir) / cfg.instance / "logs"
        self.policy = policy or RestartPolicy()
        self.roles, self.missing = select_roles(only, skip)
        self.env = dict(os.environ if env is None else env)
        self.env["MMSHM_INSTANCE"] = self.instance
        # systemd's notify socket and watchdog are the supervisor's (when `mmshm up` is a unit):
        # a child sending READY=1/MAINPID would otherwise speak for the whole service.
        for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            self.env.pop(var, None)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.on_event = on_event
        self.venue_timeout_s = venue_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.python = python
        self.children: dict[str, Child] = {}
        self.venue_urls: dict[str, str] = {}
        self.venue_overrides: list[str] = []
        self.stopping = False
        self.gave_up: list[str] = []
        self._procs = None            # ProcessTable (we create it so it outlives any one child)
        self._commands = None
        self._logs: dict[str, RoleLog] = {}
        self._events_log: RoleLog | None = None
        self._owns_instance = False

    # ------------------------------------------------------------------ events
    def _event(self, event: str, msg: str, level: str = "INFO", **fields) -> None:
        rec = {"event": event, "msg": msg, "level": level, "instance": self.instance, **fields}
        if self._events_log is not None:
            self._events_log.event(msg, level=level, event=event, **fields)
        log.debug("%s", msg)
        if self.on_event is not None:
            self.on_event(rec)

    # ------------------------------------------------------------------ start
    def check(self) -> None:
        """Refuse to start over a live instance; check the configured CPUs exist here."""
        from mmshm.agent.pinning import allowed_cpus
        from mmshm.shm.registry import list_segments

        live = [s for s in list_segments(self.instance) if s.alive]
        if live:
            owners = sorted({p for s in live for p in [s.owner_pid, *s.row_writers] if p and segmod.pid_alive(p)})
            raise SupervisorError(f"instance {self.instance!r} is already running (live segments "
                                  f"{', '.join(s.segment for s in live)}; pids {owners}); "
                                  f"stop it first or use --instance NAME")
        allowed = allowed_cpus()
        bad = [(r.name, self.cfg.role_cpu(r.name)) for r in self.roles
               if self.cfg.role_cpu(r.name) is not None and self.cfg.role_cpu(r.name) not in allowed]
        if bad:
            desc = ", ".join(f"cpus.{n} = {c}" for n, c in bad)
            raise SupervisorError(f"{desc}: not among this machine's allowed CPUs {sorted(allowed)}; "
                                  f"set them (e.g. --set cpus.{bad[0][0]}=none) or use --profile laptop")

    def start(self) -> None:
        """Sweep, tables, venue, then every role in order (each waited for, up to its timeout)."""
        from mmshm.agent.proctable import ProcessTable
        from mmshm.shm.registry import sweep_dead
        from mmshm.supervisor.commands import open_table

        self.check()
        self._owns_instance = True    # from here on, stop() cleans the instance up
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._events_log = RoleLog(self.log_dir, "supervisor")
        swept = sweep_dead(self.instance)
        if swept:
            self._event("swept", f"removed {len(swept)} dead segment(s): {', '.join(swept)}", segments=swept)
        for spec in self.missing:
            self._event("skipped", f"{spec.name}: module {spec.module} does not exist yet; not started",
                        level="WARNING", role=spec.name)
        self._procs = ProcessTable.open(self.instance, self.cfg.segments.procs_rows)
        self._commands = open_table(self.instance)
        if self.cfg.venue.name == "sim":
            self._start_venue()
        for spec in self.roles:
            if self.stopping:
                return
            child = self._make_child(spec)
            self._launch(child)
            self._await_ready(child)

    def _make_child(self, spec: RoleSpec) -> Child:
        stop_timeout = spec.stop_timeout_s
        if spec.name == "executor":   # SIGTERM runs a verified cancel-all: give it its budget and more
            stop_timeout = max(stop_timeout, float(self.cfg.executor.cancel_all_timeout_s) + 5.0)
        argv = [self.python, "-m", spec.module, *self.config_args, *self.venue_overrides]
        ready_timeout = spec.ready_timeout_s if self.ready_timeout_s is None else self.ready_timeout_s
        child = Child(spec.name, lambda: list(argv), stop_timeout, ready_timeout,
                      RestartTracker(self.policy))
        self.children[spec.name] = child
        return child

    def _wrap(self, argv: list[str]) -> list[str]:
        return [self.python, "-m", "mmshm.supervisor.launch", str(os.getpid()), "--", *argv]

    def _log(self, name: str) -> RoleLog:
        if name not in self._logs:
            self._logs[name] = RoleLog(self.log_dir, name)
        return self._logs[name]

    def _launch(self, child: Child, read_first_line: bool = False) -> None:
        argv = self._wrap(child.argv_fn())
        rl = self._log(child.name)
        rl.event(f"starting {child.name}", argv=argv[5:])
        child.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=self.env, process_group=0, close_fds=True)
        child.started_mono = time.monotonic()
        child.ready = False
        child.state = "starting"
        child.starts += 1
        child.pids.append(child.popen.pid)
        self._event("started", f"{child.name} started (pid {child.popen.pid})", role=child.name,
                    pid=child.popen.pid, start=child.starts)
        if not read_first_line:
            self._pump(child)

    def _pump(self, child: Child) -> None:
        rl = self._log(child.name)
        assert child.popen is not None
        pump(child.popen.stdout, rl, child.name, child.popen.pid, "stdout")
        pump(child.popen.stderr, rl, child.name, child.popen.pid, "stderr")

    def _row_state(self, pid: int) -> ProcState | None:
        """State of the process-table row claimed by ``pid`` (None if it has no row)."""
        if self._procs is None:
            return None
        try:
            claims = self._procs.claims()
            if pid not in claims:
                return None
            state = int(self._procs.read(claims.index(pid))["state"])
        except segmod.ShmError:
            return None
        return ProcState(state) if state in ProcState._value2member_map_ else None

    def _check_ready(self, child: Child) -> bool:
        if child.ready or child.popen is None:
            return child.ready
        if self._row_state(child.popen.pid) in READY_STATES:
            child.ready = True
            child.state = "running"
            self._event("ready", f"{child.name} ready (pid {child.popen.pid}, "
                                 f"{time.monotonic() - child.started_mono:.1f} s)", role=child.name,
                        pid=child.popen.pid)
        return child.ready

    def _await_ready(self, child: Child) -> None:
        """Wait for the row to say RUNNING, the child to die, a stop request, or the timeout.

        Supervision goes on meanwhile (``poll``): an earlier role that dies now is restarted.
        """
        deadline = time.monotonic() + child.ready_timeout_s
        while not self.stopping:
            self.poll()
            if child.ready or child.state in ("backoff", "failed"):
                return                   # ready, or died (its restart is scheduled): go on
            if time.monotonic() >= deadline:
                self._event("slow_start", f"{child.name} not RUNNING after {child.ready_timeout_s:g} s; "
                                          f"starting the next role anyway", level="WARNING", role=child.name)
                return
            time.sleep(0.05)

    # ------------------------------------------------------------------ venue
    def _start_venue(self, port: int | None = None) -> None:
        v = self.cfg.venue
        if VENUE not in self.children:
            def argv() -> list[str]:
                # After the first start the port is kept, so a restarted venue is where the roles reconnect.
                # The paper account holds what risk.equity says: risk takes equity from the venue's
                # account once the executor publishes it, so the configured sizing is what trades.
                p = self.venue_urls.get("port", str(v.sim_port))
                return [self.python, "-m", "mmshm", "venue", "--host", v.sim_host, "--port", p,
                        "--seed", str(v.sim_seed), "--symbols", ",".join(v.symbols),
                        "--maker-fee-ppm", str(v.sim_maker_fee_ppm), "--taker-fee-ppm", str(v.sim_taker_fee_ppm),
                        "--balance", f"{self.cfg.risk.equity:.8f}".rstrip("0").rstrip(".")]

            self.children[VENUE] = Child(VENUE, argv, 10.0, self.venue_timeout_s, RestartTracker(self.policy))
        child = self.children[VENUE]
        self._launch(child, read_first_line=True)
        line = self._read_line(child, self.venue_timeout_s)
        if self.stopping and not line:
            self._pump(child)
            return                       # Ctrl-C during start-up: stop() takes it from here
        try:
            info = orjson.loads(line) if line else None
        except orjson.JSONDecodeError:
            info = None
        if not info or "rest" not in info:
            self._pump(child)
            if child.alive:
                child.popen.kill()
                child.popen.wait()
            raise SupervisorError(f"simulated venue did not report its URLs within {self.venue_timeout_s:g} s "
                                  f"(first line {line!r}); see {self._log(VENUE).path}")
        self._log(VENUE).write(line.encode() + b"\n")
        self._pump(child)
        child.ready = True
        child.state = "running"
        port = int(info["port"])
        host = v.sim_host
        self.venue_urls = {"rest": info["rest"], "ws": f"ws://{host}:{port}", "wsapi": info["wsapi"],
                           "control": info.get("control", ""), "port": str(port)}
        self.venue_overrides = [
            "--set", f"venue.sim_host={host}", "--set", f"venue.sim_port={port}",
            "--set", f"venue.rest_url={info['rest']}", "--set", f"venue.ws_url=ws://{host}:{port}",
            "--set", f"venue.ws_api_url={info['wsapi']}",
        ]
        # The sim accepts its default test key; hand it to the roles unless the operator set one.
        from mmshm.venues.sim import auth

        self.env.setdefault("MMSHM_API_KEY", auth.DEFAULT_API_KEY)
        self.env.setdefault("MMSHM_API_SECRET", auth.DEFAULT_API_SECRET)
        self._event("venue", f"simulated venue listening on {info['rest']}", urls=self.venue_urls,
                    pid=child.popen.pid)

    def _read_line(self, child: Child, timeout_s: float) -> str:
        """First stdout line of ``child`` (raw fd reads, so the pump can take over after)."""
        assert child.popen is not None and child.popen.stdout is not None
        fd = child.popen.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + timeout_s
        try:
            while b"\n" not in buf and not self.stopping:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(min(left, 0.2)):
                    if left <= 0 or child.popen.poll() is not None and not sel.select(0):
                        break
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            sel.close()
        line, _, rest = buf.partition(b"\n")
        if rest:
            self._log(child.name).write(rest)
        return line.decode("utf-8", "replace")

    # ------------------------------------------------------------------ supervision
    def poll(self) -> None:
        """One supervision pass: readiness, reaping, restarts due. Never blocks for long."""
        if self.stopping:
            return
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.state == "backoff" and now >= child.next_start_mono:
                self._restart(child)
            elif child.popen is not None and child.state in ("starting", "running"):
                if child.popen.poll() is not None:
                    self._reap(child)
                elif not child.ready and child.name != VENUE:
                    self._check_ready(child)

    def _restart(self, child: Child) -> None:
        if child.name == VENUE:
            try:
                self._start_venue()
            except SupervisorError as exc:
                self._event("venue_failed", str(exc), level="ERROR")
                self._reap(child)
            return
        self._launch(child)

    def _reap(self, child: Child) -> None:
        assert child.popen is not None
        code = child.popen.wait()
        child.last_exit = code
        ran = time.monotonic() - child.started_mono
        decision = child.tracker.on_exit(time.monotonic(), ran)
        if decision.restart:
            child.state = "backoff"
            child.ready = False
            child.next_start_mono = time.monotonic() + decision.delay_s
            self._event("exited", f"{child.name} (pid {child.popen.pid}) {_exit_text(code)} after {ran:.1f} s; "
                                  f"restart in {decision.delay_s:.1f} s ({decision.restarts_in_window} in "
                                  f"{self.policy.window_s:g} s)", level="WARNING", role=child.name,
                        pid=child.popen.pid, code=code, delay_s=decision.delay_s)
            return
        child.state = "failed"
        self.gave_up.append(child.name)
        self._event("gave_up", f"{child.name} (pid {child.popen.pid}) {_exit_text(code)}; giving up: "
                               f"{decision.reason}", level="ERROR", role=child.name, code=code)
        if self._halt_on_give_up(child.name):
            self._halt(f"supervisor: {child.name} gave up")

    def _halt_on_give_up(self, name: str) -> bool:
        from mmshm.supervisor.roles import role_spec

        try:
            return role_spec(name).halt_on_give_up
        except KeyError:
            return True                  # the venue: nothing can trade without it anyway

    def _halt(self, reason: str) -> None:
        """The same halt as ``mmshm halt`` (commands table + SIGUSR1 to risk and executor)."""
        from mmshm.supervisor.control import NotRunning, halt

        try:
            res = halt(self.instance, reason, timeout_s=0.5)
            self._event("halt", f"HALT requested: {reason} ({res.detail})", level="ERROR",
                        signalled=res.signalled, confirmed=res.confirmed)
        except (NotRunning, TimeoutError, segmod.ShmError) as exc:
            self._event("halt", f"HALT ({reason}) could not be delivered: {exc}", level="ERROR", confirmed=False)

    def summary(self) -> dict:
        """Per child: state, pid, starts, last exit (for the status line and --json)."""
        return {name: {"state": c.state, "pid": c.pid if c.alive else None, "starts": c.starts,
                       "ready": c.ready, "last_exit": c.last_exit}
                for name, c in self.children.items()}

    def running_count(self) -> tuple[int, int]:
        """(children up, children supervised)."""
        return sum(1 for c in self.children.values() if c.alive), len(self.children)

    # ------------------------------------------------------------------ stop
    def request_stop(self) -> None:
        self.stopping = True

    def stop(self) -> None:
        """Stop every child in STOP_ORDER (venue last), then remove the instance's segments.

        A supervisor that never got past ``check()`` (e.g. the instance was already running)
        touches nothing: the segments belong to the live instance.
        """
        self.stopping = True
        if not self._owns_instance:
            return
        names = stop_order([n for n in self.children if n != VENUE])
        if VENUE in self.children:
            names.append(VENUE)
        for name in names:
            self._stop_child(self.children[name])
        for table in (self._procs, self._commands):
            if table is not None:
                try:
                    table.close()
                except Exception:  # noqa: BLE001 - closing must not stop the cleanup
                    pass
        self._procs = self._commands = None
        removed = remove_instance_segments(self.instance)
        self._event("stopped", f"stopped; removed {len(removed)} segment(s)", segments=removed)
        for rl in self._logs.values():
            rl.close()
        if self._events_log is not None:
            self._events_log.close()
            self._events_log = None

    def _stop_child(self, child: Child) -> None:
        child.state = "stopped"
        if not child.alive:
            return
        p = child.popen
        assert p is not None
        t0 = time.monotonic()
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            code = p.wait(timeout=child.stop_timeout_s)
            self._event("child_stopped", f"{child.name} stopped ({_exit_text(code)}, {time.monotonic() - t0:.1f} s)",
                        role=child.name, pid=p.pid, code=code)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self._event("child_killed", f"{child.name} did not stop within {child.stop_timeout_s:g} s: SIGKILL",
                        level="ERROR", role=child.name, pid=p.pid)


def remove_instance_segments(instance: str) -> list[str]:
    """Unlink every ``/dev/shm/mmshm-<instance>-*`` (only after every writer is stopped)."""
    removed = []
    prefix = f"{segmod.PREFIX}{instance}-"
    try:
        names = sorted(n for n in os.listdir(segmod.SHM_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return removed
    for n in names:
        try:
            os.unlink(os.path.join(segmod.SHM_DIR, n))
            removed.append(n)
        except FileNotFoundError:
            pass
    return removed
