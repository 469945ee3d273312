"""The process table (``procs`` segment) and the watchdog's verdicts table.

``procs`` is a seqlock table of ``PROCESS_ROW`` shared by every process of an instance:
whoever starts first creates it, everybody else attaches. Each process claims one row
(CAS on the table's per-row claim word, keyed by pid) and is that row's only writer; it
rewrites the whole row on every duty cycle (heartbeat, state, work, counters), which is
one seqlock write of 256 bytes. Readers (watchdog, `mmshm status`, exporter) copy rows
with the seqlock read and never block the writer.

``verdicts`` is a seqlock table of ``VERDICT_ROW`` written only by the watchdog: row 0
carries the HALT flag, row ``1 + i`` the verdict on process row ``i``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from mmshm._native.heartbeat import RowHeartbeat
from mmshm.agent.counters import counter_index
from mmshm.records import PROC_COUNTERS, PROCESS_ROW, VERDICT_ROW, ProcState
from mmshm.shm import SeqlockTable
from mmshm.shm import segment as segmod

PROCS_SEGMENT = "procs"
VERDICTS_SEGMENT = "verdicts"
#: Rows of a new process table (config ``segments.procs_rows``; >= the number of roles).
DEFAULT_ROWS = 16

ROLE_LEN = PROCESS_ROW.fields["role"][0].itemsize

# Byte offsets of the fields the per-cycle heartbeat rewrites (mmshm._native.heartbeat).
_OFF_HB_MONO = PROCESS_ROW.fields["heartbeat_mono"][1]
_OFF_HB_COUNT = PROCESS_ROW.fields["heartbeat_count"][1]
_OFF_WORK = PROCESS_ROW.fields["work_count"][1]
_OFF_IDLE = PROCESS_ROW.fields["idle_cycles"][1]


def process_alive(pid: int, started_ts: int = 0, reuse_tolerance_s: float = 2.0) -> bool:
    """True if ``pid`` runs and is the process that wrote ``started_ts`` (not a reused pid).

    Zombies are dead. A process created more than ``reuse_tolerance_s`` after the row's
    ``started_ts`` (realtime ns, written when the row was claimed) cannot have claimed it.
    """
    if not segmod.pid_alive(pid):
        return False
    if started_ts <= 0:
        return True
    try:
        import psutil

        created_ns = int(psutil.Process(pid).create_time() * 1e9)
    except Exception:  # gone meanwhile, or no permission: trust pid_alive
        return segmod.pid_alive(pid)
    return created_ns <= started_ts + int(reuse_tolerance_s * 1e9)


def _role_bytes(role: str) -> bytes:
    data = role.encode()
    if not role or len(data) > ROLE_LEN or "\0" in role:
        raise ValueError(f"role must be 1..{ROLE_LEN} bytes without NUL, got {role!r}")
    return data


def _text(value) -> str:
    return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")


class _InstanceTable:
    """A named seqlock table of an instance (``SEGMENT`` of ``RECORD`` rows), read by row."""

    SEGMENT: str
    RECORD: np.dtype

    def __init__(self, table: SeqlockTable, instance: str) -> None:
        self.table = table
        self.instance = instance

    @classmethod
    def attach(cls, instance: str):
        """Attach to the existing table (``SegmentNotFound`` if its writer has not created it)."""
        return cls(SeqlockTable.attach(instance, cls.SEGMENT, cls.RECORD), instance)

    @property
    def rows(self) -> int:
        return int(self.table.rows)

    def read(self, row: int) -> np.void:
        return self.table.read(row)

    def read_all(self) -> np.ndarray:
        return self.table.read_all()

    def close(self) -> None:
        self.table.close()


class ProcessTable(_InstanceTable):
    """The instance's ``procs`` table; ``claim()`` gives this process its own row."""

    SEGMENT = PROCS_SEGMENT
    RECORD = PROCESS_ROW

    @classmethod
    def open(cls, instance: str, rows: int = DEFAULT_ROWS) -> "ProcessTable":
        """Attach to the instance's table (any size), creating it with ``rows`` if absent."""
        try:
            return cls.attach(instance)
        except segmod.SegmentNotFound:
            pass
        return cls(SeqlockTable.create_or_attach(instance, PROCS_SEGMENT, PROCESS_ROW, rows), instance)

    def claims(self) -> list[int]:
        return list(self.table.claims())

    def claim(self, role: str, cpu: int = -1, pid: int | None = None) -> "ProcessSlot":
        """Claim a row for this process and write its first version (state STARTING).

        Preference: a row this pid already holds; else the row of a dead process of the
        same role (a restart replaces its predecessor's row, so a dead predecessor does
        not linger as DEAD); else a free row; else any dead process's row.
        """
        role_b = _role_bytes(role)
        me = os.getpid() if pid is None else pid
        claims = self.claims()
        if me in claims:
            row = claims.index(me)
            held = self.read(row)
            held_role = bytes(held["role"]).rstrip(b"\0")
            if held_role and held_role != role_b and int(held["state"]) not in (ProcState.FREE, ProcState.STOPPED):
                raise ValueError(f"pid {me} already holds process row {row} as role {held_role.decode()!r}: "
                                 f"one agent runner (one row) per process")
        else:
            row = self._claim_same_role_dead(role_b, claims, me)
        if row is None:
            row = int(self.table.claim_row(me, True))
        return ProcessSlot(self, row, role, me, cpu)

    def _claim_same_role_dead(self, role_b: bytes, claims: list[int], me: int) -> int | None:
        from mmshm._native.shm import cas_i64

        rows = self.read_all()
        for i, held in enumerate(claims):
            if held <= 0 or segmod.pid_alive(held):
                continue
            if bytes(rows[i]["role"]).rstrip(b"\0") != role_b:
                continue
            if cas_i64(self.table.segment.address + segmod.HEADER_SIZE + i * 8, held, me):
                return i
        return None


class ProcessSlot:
    """This process's row: a local copy rewritten into the table on every change.

    ``counters`` is a live int64 view of the local copy's counter slots; increment it
    freely, it is published with the next heartbeat (``mmshm.agent.counters`` names them).
    """

    def __init__(self, table: ProcessTable, row: int, role: str, pid: int, cpu: int = -1) -> None:
        self.table = table
        self.row = row
        self.role = role
        self.pid = pid
        self._rec = np.zeros(1, dtype=PROCESS_ROW)
        rec = self._rec[0]
        rec["pid"] = pid
        rec["role"] = _role_bytes(role)
        rec["state"] = int(ProcState.STARTING)
        rec["cpu"] = -1 if cpu is None else int(cpu)
        rec["started_ts"] = time.time_ns()
        self.counters: np.ndarray = self._rec["counters"][0]
        self._hb = RowHeartbeat(table.table, row, self._rec, _OFF_HB_MONO, _OFF_HB_COUNT, _OFF_WORK, _OFF_IDLE)
        #: ``heartbeat(now_mono, work_count, idle_cycles)``: the per-cycle write (C).
        self.heartbeat = self._hb.beat
        self.released = False
        self.flush(time.monotonic_ns())

    @property
    def state(self) -> ProcState:
        return ProcState(int(self._rec[0]["state"]))

    @property
    def heartbeats(self) -> int:
        return int(self._rec[0]["heartbeat_count"])

    def set_state(self, state: ProcState, now_mono: int | None = None) -> None:
        """Change the state (and heartbeat) and publish at once."""
        self._rec[0]["state"] = int(state)
        self.flush(time.monotonic_ns() if now_mono is None else now_mono)

    def flush(self, now_mono: int) -> None:
        """Publish the row now (heartbeat time and count included), e.g. after counters changed."""
        self._hb.publish(now_mono)

    def counter_index(self, name: str) -> int:
        return counter_index(self.role, name)

    def add(self, name: str, n: int = 1) -> None:
        """``counters[name] += n`` by name (slower than indexing ``counters`` directly)."""
        self.counters[counter_index(self.role, name)] += n

    def release(self, now_mono: int | None = None, state: ProcState = ProcState.STOPPED) -> None:
        """Final write (STOPPED) and give the row's claim back. The row keeps its content
        (pid, counters, stop time) for post-mortems until another process claims it."""
        if self.released:
            return
        self.set_state(state, now_mono)
        self.table.table.release_row(self.row, self.pid)
        self.released = True


class VerdictTable(_InstanceTable):
    """The watchdog's ``verdicts`` table (row 0: HALT; row 1 + i: verdict on process row i)."""

    SEGMENT = VERDICTS_SEGMENT
    RECORD = VERDICT_ROW

    @classmethod
    def open_writer(cls, instance: str, rows: int | None = None) -> "VerdictTable":
        """Create the table as its single writer, or take over from a dead watchdog.

        ``rows`` defaults to the process table's rows + 1 (or ``DEFAULT_ROWS + 1``); an
        existing table keeps its size. A live watchdog already owning it: ``SegmentInUse``.
        """
        try:
            existing = segmod.attach(instance, VERDICTS_SEGMENT, segmod.Kind.SEQLOCK, VERDICT_ROW)
            rows = int(existing.header["capacity"])
            existing.close()
        except segmod.SegmentNotFound:
            if rows is None:
                try:
                    procs = ProcessTable.attach(instance)
                    rows = procs.rows + 1
                    procs.close()
                except segmod.SegmentNotFound:
                    rows = DEFAULT_ROWS + 1
        try:
            return cls(SeqlockTable.create(instance, VERDICTS_SEGMENT, VERDICT_ROW, rows), instance)
        except segmod.SegmentInUse:
            # This very process created it earlier (a watchdog re-opened in-process): attach.
            table = SeqlockTable.attach(instance, VERDICTS_SEGMENT, VERDICT_ROW)
            if int(table.segment.header["creator_pid"]) != os.getpid():
                table.close()
                raise
            return cls(table, instance)

    def write(self, row: int, rec) -> None:
        self.table.write(row, rec)


def read_halt(instance: str) -> tuple[bool, str]:
    """(HALT raised by the watchdog?, its reason) for ``instance``; (False, "") without a watchdog.

    For processes that poll it often, attach ``VerdictTable`` once and read row 0 instead.
    """
    try:
        table = VerdictTable.attach(instance)
    except segmod.SegmentNotFound:
        return False, ""
    try:
        head = table.read(0)
        return bool(int(head["halt"])), _text(head["reason"])
    finally:
        table.close()


__all__ = [
    "DEFAULT_ROWS", "PROCS_SEGMENT", "VERDICTS_SEGMENT", "PROC_COUNTERS", "ProcessSlot",
    "ProcessTable", "VerdictTable", "process_alive", "read_halt",
]
