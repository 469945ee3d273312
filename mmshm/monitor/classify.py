"""Classify each process of an instance from successive snapshots.

Stateful only where a verdict needs history: how long a writer's segments have stood
still (IDLE) and how many checks in a row a reader's lag has grown (SLOW_READER).
Deciding is separate from acting (``mmshm.monitor.watchdog`` kills and halts), so every
rule here is testable without processes or shared memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from mmshm.monitor.model import InstanceSnapshot, ProcessInfo
from mmshm.monitor.policy import WatchdogPolicy
from mmshm.records import ProcState, Verdict


@dataclass
class Assessment:
    process: ProcessInfo
    verdict: Verdict
    reason: str
    heartbeat_age_ns: int
    critical: bool


def _fmt_s(ns: int) -> str:
    return f"{ns / 1e9:.3f}s"


class Classifier:
    """Turns snapshots into verdicts; call ``assess`` once per watchdog check."""

    def __init__(self, policy: WatchdogPolicy, self_pid: int) -> None:
        self.policy = policy
        self.self_pid = self_pid
        # (segment posix name) -> (progress, mono when it last changed)
        self._progress: dict[str, tuple[tuple[int, int, int], int]] = {}
        # (segment posix name, reader slot, reader pid) -> (last lag, consecutive growths)
        self._lag: dict[tuple[str, int, int], tuple[int, int]] = {}

    def assess(self, snap: InstanceSnapshot) -> list[Assessment]:
        now = snap.taken_mono
        self._track_segments(snap, now)
        slow = self._track_readers(snap)
        out = []
        for proc in snap.processes:
            if proc.state == ProcState.FREE:
                continue
            verdict, reason, age = self._classify(proc, snap, now, slow)
            out.append(Assessment(proc, verdict, reason, age, self.policy.is_critical(proc.role)))
        return out

    # ------------------------------------------------------------------ rules
    def _classify(self, p: ProcessInfo, snap: InstanceSnapshot, now: int,
                  slow: dict[int, str]) -> tuple[Verdict, str, int]:
        age = now - p.heartbeat_mono if p.heartbeat_mono > 0 else 0
        if p.pid == self.self_pid:
            return Verdict.OK, "this watchdog", age
        if not p.alive:
            if p.state == ProcState.STOPPED:
                return Verdict.OK, "stopped cleanly", age
            successor = next((q for q in snap.processes if q.role == p.role and q.alive
                              and q.started_ts > p.started_ts and q.row != p.row), None)
            if successor is not None:
                return Verdict.OK, f"pid {p.pid} gone, replaced by pid {successor.pid}", age
            return Verdict.DEAD, f"pid {p.pid} gone while {p.state.name}", age
        if p.state == ProcState.STOPPED:
            return Verdict.OK, "stopped", age
        if p.state == ProcState.STARTING:
            timeout_s = self.policy.starting_timeout_s
        elif p.state == ProcState.STOPPING:
            timeout_s = self.policy.stopping_timeout_s
        else:
            timeout_s = self.policy.timeout_s(p.role)
        if p.heartbeat_mono <= 0 or age > timeout_s * 1e9:
            what = "no heartbeat yet" if p.heartbeat_mono <= 0 else f"heartbeat {_fmt_s(age)} old"
            if p.heartbeat_mono <= 0 and p.state == ProcState.STARTING:
                # A row is claimed before the first heartbeat: give start-up its timeout.
                started_age = _claimed_age_ns(p)
                if started_age is not None and started_age < timeout_s * 1e9:
                    return Verdict.OK, "starting", age
            return Verdict.HUNG, f"{what} > {timeout_s:g}s while {p.state.name}", age
        if p.state == ProcState.RUNNING:  # a paused or halted process is expected to be still
            idle = self._idle_reason(p, snap, now)
            if idle:
                return Verdict.IDLE, idle, age
        if p.pid in slow:
            return Verdict.SLOW_READER, slow[p.pid], age
        return Verdict.OK, "", age

    def _idle_reason(self, p: ProcessInfo, snap: InstanceSnapshot, now: int) -> str:
        limit_s = self.policy.idle_limits.get(p.role)
        if limit_s is None:
            return ""
        owned = [s for s in snap.segments
                 if s.creator_pid == p.pid and s.name not in self.policy.ignore_segments]
        if not owned:
            return ""
        still_since = [self._progress[s.posix_name][1] for s in owned if s.posix_name in self._progress]
        if len(still_since) != len(owned):
            return ""
        last_move = max(still_since)
        if now - last_move > limit_s * 1e9:
            names = ",".join(s.name for s in owned)
            cursors = ",".join(str(s.cursor) for s in owned)
            return f"{names} still for {_fmt_s(now - last_move)} > {limit_s:g}s (cursor {cursors})"
        return ""

    # ------------------------------------------------------------------ history
    def _track_segments(self, snap: InstanceSnapshot, now: int) -> None:
        seen = set()
        for s in snap.segments:
            seen.add(s.posix_name)
            prev = self._progress.get(s.posix_name)
            if prev is None or prev[0] != s.progress:
                self._progress[s.posix_name] = (s.progress, now)
        for gone in set(self._progress) - seen:
            del self._progress[gone]

    def _track_readers(self, snap: InstanceSnapshot) -> dict[int, str]:
        """pid -> reason for every reader whose lag grew on enough consecutive checks."""
        slow: dict[int, str] = {}
        seen = set()
        for s in snap.segments:
            for r in s.readers:
                if r.pid <= 0 or not r.alive:
                    continue
                key = (s.posix_name, r.slot, r.pid)
                seen.add(key)
                last, growths = self._lag.get(key, (r.lag, 0))
                growths = growths + 1 if r.lag > last else 0
                self._lag[key] = (r.lag, growths)
                if growths >= self.policy.slow_reader_checks and r.lag >= self.policy.slow_reader_min_lag:
                    slow.setdefault(r.pid, f"{s.name} reader {r.name!r} lag {r.lag} grew "
                                            f"{growths} checks in a row")
        for gone in set(self._lag) - seen:
            del self._lag[gone]
        return slow


def _claimed_age_ns(p: ProcessInfo) -> int | None:
    """ns since the row was claimed (realtime), None when unknown."""
    if p.started_ts <= 0:
        return None
    return time.time_ns() - p.started_ts
