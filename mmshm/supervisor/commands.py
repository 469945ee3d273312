"""The operator commands table (``commands`` segment): how ``mmshm halt|resume|pause`` reach risk.

Why a table and not only signals: SIGUSR1 (halt) is a latch and SIGUSR2 (pause) a toggle,
so neither can say "resume" or "pause = off", and a toggle sent to two processes can
leave them disagreeing. A command row carries an explicit, idempotent request with a
sequence number, a reason and who sent it; risk applies the newest one exactly once.
The emergency path stays a signal: ``mmshm halt`` also sends SIGUSR1 to risk and the
executor, so a halt does not depend on anyone polling this table.

Layout: a seqlock table of one ``COMMAND_ROW`` (``/mmshm-<instance>-commands``). Writers
are short-lived CLI processes: each takes the row's claim word (CAS, keyed by pid; a
dead holder's claim is taken over), writes ``seq = previous seq + 1`` and releases the
claim, so writers are serialised and the seqlock keeps its single-writer rule. Readers
(risk; the executor to lift its own halt latch) keep the last ``seq`` they acted on and
act when it changes: latest-value semantics, so of a burst (pause, then pause --off) the
last command wins, which is what an operator means.

Whoever comes first creates the table (``create_or_attach``): the supervisor at start-up,
risk, or the CLI. A process attaching ignores the command already in the row (it
predates it: a restarted risk starts from its own fresh state).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from mmshm.records import COMMAND_ROW, CommandKind
from mmshm.shm import SeqlockTable, ShmError
from mmshm.shm import segment as segmod

COMMANDS_SEGMENT = "commands"
REASON_LEN = COMMAND_ROW.fields["reason"][0].itemsize


@dataclass(frozen=True)
class Command:
    """One operator command as read from (or written to) the table."""

    seq: int
    kind: CommandKind
    issued_ts: int
    issued_mono: int
    issuer_pid: int
    reason: str

    @classmethod
    def from_row(cls, row) -> "Command":
        kind = int(row["kind"])
        return cls(seq=int(row["seq"]),
                   kind=CommandKind(kind) if kind in CommandKind._value2member_map_ else CommandKind.NONE,
                   issued_ts=int(row["issued_ts"]), issued_mono=int(row["issued_mono"]),
                   issuer_pid=int(row["issuer_pid"]),
                   reason=bytes(row["reason"]).split(b"\0", 1)[0].decode("utf-8", "replace"))


def open_table(instance: str) -> SeqlockTable:
    """The instance's commands table, created if absent (one row)."""
    return SeqlockTable.create_or_attach(instance, COMMANDS_SEGMENT, COMMAND_ROW, 1)


def _reason_bytes(reason: str) -> bytes:
    """UTF-8, cut to the field without splitting a character."""
    data = reason.replace("\0", " ").encode("utf-8")
    if len(data) <= REASON_LEN:
        return data
    return data[:REASON_LEN].decode("utf-8", "ignore").encode("utf-8")


def send_command(instance: str, kind: CommandKind, reason: str = "", *, claim_timeout_s: float = 2.0,
                 table: SeqlockTable | None = None) -> Command:
    """Write ``kind`` as the next command (seq + 1) and return it.

    Waits up to ``claim_timeout_s`` for another writer holding the row (a concurrent
    ``mmshm`` command); ``TimeoutError`` after that.
    """
    if kind == CommandKind.NONE:
        raise ValueError("kind NONE is not a command")
    own = table is None
    t = open_table(instance) if own else table
    try:
        me = os.getpid()
        deadline = time.monotonic() + claim_timeout_s
        while True:
            try:
                row = t.claim_row(me)
            except ShmError:
                if time.monotonic() > deadline:
                    holder = t.claims()[0]
                    raise TimeoutError(f"commands table of instance {instance!r} is held by pid {holder} "
                                       f"(another mmshm command?) for more than {claim_timeout_s:.1f} s") from None
                time.sleep(0.01)
                continue
            break
        try:
            prev = t.read(row)
            rec = np.zeros(1, dtype=COMMAND_ROW)
            rec[0]["seq"] = int(prev["seq"]) + 1
            rec[0]["kind"] = int(kind)
            rec[0]["issued_ts"] = time.time_ns()
            rec[0]["issued_mono"] = time.monotonic_ns()
            rec[0]["issuer_pid"] = me
            rec[0]["reason"] = _reason_bytes(reason)
            t.write(row, rec)
            return Command.from_row(rec[0])
        finally:
            t.release_row(row, me)
    finally:
        if own:
            t.close()


def read_command(instance: str) -> Command | None:
    """The latest command of ``instance`` (None if the table does not exist or none was sent)."""
    try:
        t = SeqlockTable.attach(instance, COMMANDS_SEGMENT, COMMAND_ROW)
    except segmod.SegmentNotFound:
        return None
    try:
        cmd = Command.from_row(t.read(0))
        return cmd if cmd.seq > 0 else None
    finally:
        t.close()


class CommandInbox:
    """Reader side for risk and the executor: ``poll()`` returns each new command once.

    ``poll`` costs one atomic load of the row's version when nothing changed, so it can
    sit in a duty cycle; the row is copied only when the version moved.
    """

    def __init__(self, table: SeqlockTable, skip_existing: bool = True) -> None:
        self.table = table
        self._buf = np.zeros(1, dtype=COMMAND_ROW)
        self._version = -1
        self.last_seq = 0
        if skip_existing:
            self._version = int(table.version(0))
            if self._version:
                table.read_into(0, self._buf)
                self.last_seq = int(self._buf[0]["seq"])

    @classmethod
    def open(cls, instance: str, skip_existing: bool = True) -> "CommandInbox":
        """Attach (creating the table if needed); commands already there are not returned."""
        return cls(open_table(instance), skip_existing)

    def poll(self) -> Command | None:
        """The newest command not returned before, or None."""
        v = self.table.version(0)
        if v == self._version or v & 1:
            return None
        self.table.read_into(0, self._buf)
        self._version = int(self._buf[0]["version"])
        seq = int(self._buf[0]["seq"])
        if seq == self.last_seq:
            return None
        self.last_seq = seq
        return Command.from_row(self._buf[0])

    def close(self) -> None:
        self.table.close()


class CommandAgent:
    """Agent that polls the commands table every ``interval_s`` and hands each new command to ``handler``.

    Add it to a process's agents (risk, executor): ``run_role("risk", [RiskAgent(...),
    CommandAgent(instance, risk_command_handler(engine))], cfg, on_halt=...)``. The handler
    gets ``(command, runner)``; ``runner`` is the AgentRunner (None outside one). A failing
    handler is logged and counted (``errors``), never fatal: a bad command must not stop risk.
    """

    name = "commands"

    def __init__(self, instance: str, handler, interval_s: float = 0.05, clock=time.monotonic_ns) -> None:
        self.instance = instance
        self.handler = handler
        self.interval_ns = int(interval_s * 1e9)
        self.clock = clock
        self.inbox: CommandInbox | None = None
        self.runner = None
        self.applied = 0
        self.errors = 0
        self._next = 0

    def bind_runner(self, runner) -> None:
        self.runner = runner

    def on_start(self) -> None:
        self.inbox = CommandInbox.open(self.instance)

    def do_work(self) -> int:
        now = self.clock()
        if now < self._next or self.inbox is None:
            return 0
        self._next = now + self.interval_ns
        cmd = self.inbox.poll()
        if cmd is None:
            return 0
        import logging

        log = logging.getLogger("mmshm.commands")
        log.warning("operator command", extra={"command": cmd.kind.name, "seq": cmd.seq, "reason": cmd.reason,
                                               "issuer_pid": cmd.issuer_pid})
        try:
            self.handler(cmd, self.runner)
            self.applied += 1
        except Exception:
            self.errors += 1
            log.exception("operator command failed", extra={"command": cmd.kind.name, "seq": cmd.seq})
        return 1

    def on_close(self) -> None:
        if self.inbox is not None:
            self.inbox.close()
            self.inbox = None


def risk_command_handler(engine):
    """The risk process's reaction to commands, on a :class:`mmshm.risk.engine.RiskEngine`.

    HALT: a manual halt (only RESUME lifts it). RESUME: ``engine.resume()`` (the manual
    path, also after the day's last allowed halt) and the runner's SIGUSR1 latch is
    cleared. PAUSE/UNPAUSE: ``engine.pause(on)``. The control rows are rewritten by the
    risk agent's next evaluation.
    """
    from mmshm.risk.params import TriggerCode

    def handle(cmd: Command, runner) -> None:
        if cmd.kind == CommandKind.HALT:
            engine.halt(TriggerCode.MANUAL)
        elif cmd.kind == CommandKind.RESUME:
            engine.resume()
            if runner is not None and runner.halted:
                runner.clear_halt()
        elif cmd.kind in (CommandKind.PAUSE, CommandKind.UNPAUSE):
            engine.pause(cmd.kind == CommandKind.PAUSE)

    return handle


def executor_command_handler(cmd: Command, runner) -> None:
    """The executor's reaction: RESUME lifts its SIGUSR1 halt latch (quoting follows the control block)."""
    if cmd.kind == CommandKind.RESUME and runner is not None and runner.halted:
        runner.clear_halt()


__all__ = ["COMMANDS_SEGMENT", "Command", "CommandAgent", "CommandInbox", "executor_command_handler",
           "risk_command_handler", "CommandKind", "open_table", "read_command",
           "send_command"]
