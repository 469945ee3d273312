"""The watchdog: classify every process each check, kill what is hung, raise HALT.

It is an ordinary agent (``WatchdogAgent``) run by the agent runner with a sleeping idle
strategy, so its own heartbeat lands in the process table and in systemd's watchdog
like any other process. Each check:

1. takes a snapshot (process table, every segment header, the verdicts table),
2. classifies each process (``mmshm.monitor.classify``),
3. kills HUNG processes with the policy's signal: only pids that are in the table, alive,
   not reused, not itself and not pid 1,
4. raises the HALT flag (verdicts row 0) when a critical role is DEAD, HUNG or KILLED,
5. writes every process's verdict (row = process row + 1) and logs each change, and each
   reader's new sequence gaps, as one JSON line.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mmshm.agent.proctable import VerdictTable
from mmshm.monitor.classify import Assessment, Classifier
from mmshm.monitor.model import InstanceSnapshot
from mmshm.monitor.policy import WatchdogPolicy
from mmshm.monitor.snapshot import SnapshotReader
from mmshm.records import VERDICT_ROW, Verdict

log = logging.getLogger("mmshm.watchdog")

#: Verdicts of a critical role that raise HALT.
HALTING = (Verdict.DEAD, Verdict.HUNG, Verdict.KILLED)
#: Counter slots of the watchdog's own process row (see mmshm.agent.counters).
C_CHECKS, C_CHANGES, C_KILLS, C_HALTS, C_KILL_ERRORS, C_SEGMENT_ERRORS = range(6)


@dataclass
class _Current:
    pid: int
    verdict: Verdict
    since_mono: int
    reason: str


def _fit(text: str, size: int = 64) -> bytes:
    data = text.encode("utf-8", "replace")
    return data if len(data) <= size else data[: size - 3] + b"..."


class Watchdog:
    """Checks one instance; ``check()`` does one full pass and returns the assessments.

    ``kill`` is ``os.kill`` unless a test injects another; ``counters`` is the watchdog's own
    process-row counter array when it runs under the agent runner.
    """

    def __init__(self, instance: str, policy: WatchdogPolicy | None = None, *,
                 kill: Callable[[int, int], None] = os.kill,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.instance = instance
        self.policy = policy or WatchdogPolicy()
        self.pid = os.getpid()
        self.reader = SnapshotReader(instance, self.policy.pid_reuse_tolerance_s, clock=clock)
        self.classifier = Classifier(self.policy, self.pid)
        self._kill = kill
        self._clock = clock
        self.verdicts: VerdictTable | None = None
        self.counters: np.ndarray = np.zeros(16, dtype=np.int64)
        self._current: dict[int, _Current] = {}     # process row -> current verdict
        self._gaps: dict[tuple[str, str, int], int] = {}  # (segment, reader, pid) -> gaps seen
        self._kills: dict[int, tuple[int, int]] = {}  # pid -> (signal sent, mono when)
        self._errors_seen: set[str] = set()  # snapshot errors already logged
        self.halt = False
        self.ring: Callable[[], None] | None = None   # the executor's doorbell: rung when HALT changes
        self._rung_halt: bool | None = None
        self.halt_reason = ""
        self.halt_since = 0
        self._all_critical_ok_since: int | None = None
        self._clear_requested = False
        self.last_snapshot: InstanceSnapshot | None = None

    # ------------------------------------------------------------------ public
    def open(self) -> None:
        """Create (or take over) the verdicts table. Idempotent."""
        if self.verdicts is None:
            self.verdicts = VerdictTable.open_writer(self.instance)
            self._restore_halt()

    def request_halt_clear(self) -> None:
        """Clear HALT at the next check if every critical role is OK then (SIGHUP)."""
        self._clear_requested = True

    def check(self) -> list:
        self.open()
        snap = self.reader.take()
        self.last_snapshot = snap
        now = snap.taken_mono
        assessments = self.classifier.assess(snap)
        for a in assessments:
            if a.verdict == Verdict.HUNG and self.policy.kill_hung:
                self._kill_hung(a, now)
        live = {a.process.pid for a in assessments if a.process.alive}
        for pid in [p for p in self._kills if p not in live]:
            del self._kills[pid]
        self._record(assessments, now)
        self._update_halt(assessments, now)
        self._log_gaps(snap)
        if snap.errors:
            self.counters[C_SEGMENT_ERRORS] += len(snap.errors)
            for err in set(snap.errors) - self._errors_seen:
                log.error("segment unreadable", extra={"event": "segment_error", "error": err,
                                                       "instance": self.instance})
        self._errors_seen = set(snap.errors)
        self.counters[C_CHECKS] += 1
        return assessments

    def close(self) -> None:
        self.reader.close()
        if self.verdicts is not None:
            self.verdicts.close()
            self.verdicts = None

    # ------------------------------------------------------------------ actions
    def _kill_hung(self, a: Assessment, now: int) -> None:
        """Signal a HUNG process once; escalate to SIGKILL if it is still hung later.

        A stopped (SIGSTOP) or stuck process may ignore a polite signal: after
        ``kill_escalate_s`` with the process still hung, SIGKILL follows. Until then the
        signal is not re-sent every check and the verdict stays KILLED.
        """
        pid = a.process.pid
        if pid <= 1 or pid == self.pid:
            return
        if not a.process.alive:  # re-checked in the snapshot: gone or a reused pid
            return
        sent = self._kills.get(pid)
        sig = self.policy.kill_signal
        if sent is not None:
            last_sig, at = sent
            if last_sig == signal.SIGKILL or now - at < self.policy.kill_escalate_s * 1e9:
                a.verdict = Verdict.KILLED
                a.reason = f"{signal.Signals(last_sig).name} sent {(now - at) / 1e9:.1f}s ago: {a.reason}"
                return
            sig = int(signal.SIGKILL)
        try:
            self._kill(pid, sig)
        except ProcessLookupError:
            a.verdict, a.reason = Verdict.DEAD, f"pid {pid} gone before kill ({a.reason})"
            return
        except OSError as exc:
            self.counters[C_KILL_ERRORS] += 1
            log.error("kill failed", extra={"event": "kill_failed", "proc_pid": pid, "proc_role": a.process.role,
                                            "error": str(exc), "instance": self.instance})
            return
        self._kills[pid] = (sig, now)
        self.counters[C_KILLS] += 1
        signame = signal.Signals(sig).name
        log.warning("killed hung process", extra={
            "event": "kill", "proc_pid": pid, "proc_role": a.process.role, "signal": signame,
            "escalated": sent is not None, "reason": a.reason, "instance": self.instance})
        a.verdict, a.reason = Verdict.KILLED, f"{signame}: {a.reason}"

    def _record(self, assessments: list[Assessment], now: int) -> None:
        assert self.verdicts is not None
        rows = self.verdicts.rows
        seen = set()
        for a in assessments:
            p = a.process
            row = p.row + 1
            if row >= rows:
                continue  # verdicts table smaller than the process table: status still shows the row
            seen.add(p.row)
            cur = self._current.get(p.row)
            if cur is not None and cur.pid == p.pid and cur.verdict == Verdict.KILLED and a.verdict == Verdict.DEAD:
                a.verdict, a.reason = Verdict.KILLED, cur.reason  # killed stays killed, not "dead"
            if cur is None or cur.pid != p.pid or cur.verdict != a.verdict:
                previous = None if cur is None or cur.pid != p.pid else cur.verdict
                cur = _Current(p.pid, a.verdict, now, a.reason)
                self._current[p.row] = cur
                self.counters[C_CHANGES] += 1
                level = logging.INFO if a.verdict == Verdict.OK else logging.WARNING
                log.log(level, "verdict", extra={
                    "event": "verdict", "instance": self.instance, "row": p.row, "proc_pid": p.pid,
                    "proc_role": p.role, "verdict": a.verdict.name,
                    "previous": previous.name if previous is not None else None,
                    "reason": a.reason, "critical": a.critical, "state": p.state.name,
                    "heartbeat_age_s": round(a.heartbeat_age_ns / 1e9, 6)})
            elif a.reason != cur.reason:
                cur.reason = a.reason
            rec = np.zeros((), dtype=VERDICT_ROW)
            rec["pid"] = p.pid
            rec["role"] = p.role.encode()[:16]
            rec["verdict"] = int(cur.verdict)
            rec["critical"] = int(a.critical)
            rec["since_mono"] = cur.since_mono
            rec["checked_mono"] = now
            rec["heartbeat_age_ns"] = a.heartbeat_age_ns
            rec["reason"] = _fit(cur.reason)
            self.verdicts.write(row, rec)
        for gone in set(self._current) - seen:
            del self._current[gone]
            self.verdicts.write(gone + 1, np.zeros((), dtype=VERDICT_ROW))

    def _update_halt(self, assessments: list[Assessment], now: int) -> None:
        bad = [a for a in assessments if a.critical and a.verdict in HALTING]
        if bad:
            self._all_critical_ok_since = None
            if self.policy.halt_on_critical and not self.halt:
                first = bad[0]
                self.halt, self.halt_since = True, now
                self.halt_reason = f"{first.process.role} pid {first.process.pid} {first.verdict.name}: {first.reason}"
                self.counters[C_HALTS] += 1
                log.critical("HALT raised", extra={
                    "event": "halt", "instance": self.instance, "reason": self.halt_reason,
                    "roles": sorted({a.process.role for a in bad})})
        else:
            if self._all_critical_ok_since is None:
                self._all_critical_ok_since = now
            auto = self.policy.auto_clear_halt_s
            if self.halt and (self._clear_requested or
                              (auto is not None and now - self._all_critical_ok_since >= auto * 1e9)):
                log.warning("HALT cleared", extra={
                    "event": "halt_cleared", "instance": self.instance, "was": self.halt_reason,
                    "by": "request" if self._clear_requested else "auto"})
                self.halt, self.halt_reason, self.halt_since = False, "", 0
        if self._clear_requested and bad and self.halt:
            log.warning("HALT not cleared: critical roles still failing", extra={
                "event": "halt_clear_refused", "instance": self.instance,
                "roles": sorted({a.process.role for a in bad})})
        self._clear_requested = False
        self._write_head(now)

    def _write_head(self, now: int) -> None:
        assert self.verdicts is not None
        rec = np.zeros((), dtype=VERDICT_ROW)
        rec["pid"] = self.pid
        rec["role"] = b"watchdog"
        rec["verdict"] = int(Verdict.OK)
        rec["since_mono"] = self.halt_since
        rec["checked_mono"] = now
        rec["halt"] = 1 if self.halt else 0
        rec["reason"] = _fit(self.halt_reason)
        self.verdicts.write(0, rec)
        if self.ring is not None and self.halt != self._rung_halt:
            self._rung_halt = self.halt
            self.ring()

    def _restore_halt(self) -> None:
        """A restarted watchdog keeps a HALT its predecessor raised (HALT is latched)."""
        assert self.verdicts is not None
        head = self.verdicts.read(0)
        if int(head["halt"]):
            self.halt = True
            self.halt_reason = bytes(head["reason"]).split(b"\0", 1)[0].decode("utf-8", "replace")
            self.halt_since = int(head["since_mono"])

    def _log_gaps(self, snap: InstanceSnapshot) -> None:
        live = set()
        for s in snap.segments:
            for r in s.readers:
                key = (s.name, r.name, r.pid)
                live.add(key)
                before = self._gaps.get(key)
                if before is not None and r.gaps > before:
                    log.warning("reader gaps", extra={
                        "event": "gaps", "instance": self.instance, "segment": s.name, "reader": r.name,
                        "reader_pid": r.pid, "gaps": r.gaps, "new_gaps": r.gaps - before, "lost": r.lost})
                self._gaps[key] = r.gaps
        for gone in set(self._gaps) - live:
            del self._gaps[gone]


class WatchdogAgent:
    """The watchdog as an agent: checks when ``interval_s`` has passed, else reports no work."""

    name = "watchdog"

    def __init__(self, watchdog: Watchdog, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.watchdog = watchdog
        self._clock = clock
        self._interval_ns = int(watchdog.policy.interval_s * 1e9)
        self._next = 0
        self.errors = 0

    def bind_runner(self, runner) -> None:
        """Publish the watchdog's counters in its own process-table row."""
        if runner.counters is not None:
            self.watchdog.counters = runner.counters

    def on_start(self) -> None:
        self.watchdog.open()

    def do_work(self) -> int:
        now = self._clock()
        if now < self._next:
            return 0
        self._next = now + self._interval_ns
        try:
            self.watchdog.check()
        except Exception as exc:  # one bad check (a segment torn down mid-read) must not stop supervision
            self.errors += 1
            self.watchdog.counters[C_SEGMENT_ERRORS] += 1
            log.exception("watchdog check failed", extra={"event": "check_failed", "error": str(exc),
                                                          "instance": self.watchdog.instance})
        return 1

    def on_close(self) -> None:
        self.watchdog.close()
