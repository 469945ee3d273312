"""Operator actions on a running instance: halt, resume, pause (library of ``mmshm halt|resume|pause``).

How each reaches the processes (found through the process table, live pids only):

- **halt**: the HALT command (with the reason) in the commands table, then SIGUSR1 to risk
  and to the executor. The signal is the emergency path that needs nobody to poll:
  risk's runner latches HALT (manual: only ``resume`` lifts it) and the executor's
  runner cancels every order. Confirmed when the control block's mode is HALT.
- **resume**: the RESUME command: risk calls ``RiskEngine.resume()`` (its manual-resume
  path, the only way back after the day's third halt or a manual halt) and clears its
  runner latch; the executor clears its halt latch. If the watchdog's HALT is raised,
  the watchdog also gets SIGHUP (it clears its HALT once every critical role is OK).
  Confirmed when the control mode is no longer HALT and the paused flag is clear.
- **pause** (``on``/``off``): the PAUSE/UNPAUSE command; risk sets or clears the control
  block's paused flag (bit0) and the quoter pulls its quotes while it is set. Not SIGUSR2:
  a toggle is not idempotent (running ``mmshm pause`` twice would resume) and two
  processes toggled separately can disagree. Confirmed from the control flags.

Each function returns an :class:`ActionResult`; ``NotRunning`` when no live process of
the instance is in the process table.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from mmshm.records import CONTROL_ROW, CommandKind, Mode, ProcState
from mmshm.risk.modes import FLAG_PAUSED
from mmshm.shm import SeqlockBusy, SeqlockTable
from mmshm.shm import segment as segmod
from mmshm.supervisor.commands import Command, send_command

CONTROL_SEGMENT = "control"


class NotRunning(RuntimeError):
    """The instance has no live process (no process table, or every row's pid is gone)."""


@dataclass(frozen=True)
class LiveProcess:
    row: int
    pid: int
    role: str
    state: ProcState


@dataclass
class ActionResult:
    """What an action did and whether its effect was seen in shared memory."""

    action: str
    command: Command | None
    signalled: dict[str, list[int]] = field(default_factory=dict)
    confirmed: bool = False
    detail: str = ""

    def to_json(self) -> dict:
        return {"action": self.action, "command_seq": self.command.seq if self.command else None,
                "signalled": self.signalled, "confirmed": self.confirmed, "detail": self.detail}


def live_processes(instance: str) -> list[LiveProcess]:
    """Every process-table row whose pid is alive (and is the process that claimed the row)."""
    from mmshm.agent.proctable import ProcessTable, process_alive

    try:
        table = ProcessTable.attach(instance)
    except segmod.SegmentNotFound:
        raise NotRunning(f"instance {instance!r} is not running (no process table "
                         f"/dev/shm{segmod.segment_name(instance, 'procs')})") from None
    try:
        rows = table.read_all()
        claims = table.claims()
    finally:
        table.close()
    out = []
    for i, r in enumerate(rows):
        pid = int(r["pid"])
        if pid <= 0 or claims[i] != pid:
            continue                           # free, or released at a clean stop
        if not process_alive(pid, int(r["started_ts"])):
            continue
        state = int(r["state"])
        role = bytes(r["role"]).split(b"\0", 1)[0].decode("utf-8", "replace")
        out.append(LiveProcess(i, pid, role,
                               ProcState(state) if state in ProcState._value2member_map_ else ProcState.FREE))
    if not out:
        raise NotRunning(f"instance {instance!r} is not running (no live process in its process table)")
    return out


def pids_of(procs: list[LiveProcess], role: str) -> list[int]:
    return [p.pid for p in procs if p.role == role]


def read_control(instance: str) -> tuple[Mode | None, int]:
    """(global mode, global flags) from control row 0; (None, 0) while risk has not written it."""
    try:
        t = SeqlockTable.attach(instance, CONTROL_SEGMENT, CONTROL_ROW)
    except segmod.SegmentNotFound:
        return None, 0
    try:
        row = t.read(0)
    except SeqlockBusy:
        return None, 0
    finally:
        t.close()
    if int(row["version"]) == 0:
        return None, 0
    mode = int(row["mode"])
    return (Mode(mode) if mode in Mode._value2member_map_ else None), int(row["flags"])


def _signal(pids: list[int], sig: int) -> list[int]:
    sent = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent.append(pid)
        except ProcessLookupError:
            pass
    return sent


def _wait_for(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def halt(instance: str, reason: str = "manual", timeout_s: float = 2.0) -> ActionResult:
    """HALT command + SIGUSR1 to risk and executor; confirmed by control mode HALT."""
    procs = live_processes(instance)
    cmd = send_command(instance, CommandKind.HALT, reason)
    res = ActionResult("halt", cmd)
    for role in ("risk", "executor"):
        sent = _signal(pids_of(procs, role), signal.SIGUSR1)
        if sent:
            res.signalled[role] = sent
    if "risk" not in res.signalled:
        res.detail = ("risk is not running: no control-block HALT; "
                      + ("the executor was signalled (cancel-all)" if "executor" in res.signalled
                         else "no executor either: nothing can trade"))
        return res
    res.confirmed = _wait_for(lambda: read_control(instance)[0] == Mode.HALT, timeout_s)
    res.detail = ("control mode HALT" if res.confirmed
                  else f"risk did not show HALT in the control block within {timeout_s:g} s")
    return res


def resume(instance: str, timeout_s: float = 2.0) -> ActionResult:
    """RESUME command (+ SIGHUP to the watchdog if its HALT is raised); confirmed by mode != HALT."""
    from mmshm.agent.proctable import read_halt

    procs = live_processes(instance)
    cmd = send_command(instance, CommandKind.RESUME, "resume")
    res = ActionResult("resume", cmd)
    wd_halt, _ = read_halt(instance)
    if wd_halt:
        sent = _signal(pids_of(procs, "watchdog"), signal.SIGHUP)
        if sent:
            res.signalled["watchdog"] = sent
    if not pids_of(procs, "risk"):
        res.detail = "risk is not running: the command waits in the commands table for nobody"
        return res

    def resumed() -> bool:
        mode, flags = read_control(instance)
        return mode is not None and mode != Mode.HALT and not flags & FLAG_PAUSED

    res.confirmed = _wait_for(resumed, timeout_s)
    mode, flags = read_control(instance)
    res.detail = (f"control mode {mode.name if mode is not None else 'n/a'}" if res.confirmed
                  else f"risk did not leave HALT/pause within {timeout_s:g} s "
                       f"(mode {mode.name if mode is not None else 'n/a'}, paused={bool(flags & FLAG_PAUSED)})")
    if wd_halt and "watchdog" not in res.signalled:
        res.detail += "; the watchdog HALT is raised but no watchdog is running to clear it"
    return res


def pause(instance: str, on: bool | None = True, timeout_s: float = 2.0) -> ActionResult:
    """PAUSE (``on=True``), UNPAUSE (``False``) or the opposite of the current flag (``None``)."""
    procs = live_processes(instance)
    if on is None:
        _, flags = read_control(instance)
        on = not flags & FLAG_PAUSED
    cmd = send_command(instance, CommandKind.PAUSE if on else CommandKind.UNPAUSE, "pause" if on else "unpause")
    res = ActionResult("pause" if on else "unpause", cmd)
    if not pids_of(procs, "risk"):
        res.detail = "risk is not running: nothing applies the pause"
        return res
    res.confirmed = _wait_for(lambda: bool(read_control(instance)[1] & FLAG_PAUSED) == on, timeout_s)
    res.detail = (("paused: quotes pulled" if on else "unpaused") if res.confirmed
                  else f"risk did not {'set' if on else 'clear'} the paused flag within {timeout_s:g} s")
    return res
