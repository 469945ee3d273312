"""/health and /ready decisions from one shared-memory snapshot (pure functions).

- health: the exporter runs and the process table is readable → 200 with each process's
  state, heartbeat age and the watchdog's verdict; no process table → 503.
- ready: every critical role has a RUNNING row whose pid is alive and whose heartbeat
  is fresher than the role's timeout, and neither the watchdog's HALT nor a risk mode
  of HALT/FLATTEN is in force → 200; otherwise 503 with every reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from mmshm.monitor.model import InstanceSnapshot
from mmshm.records import Mode, ProcState


@dataclass
class Decision:
    ok: bool
    body: dict = field(default_factory=dict)

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


def health(snap: InstanceSnapshot, procs_present: bool) -> Decision:
    verdicts = {v.row - 1: v for v in snap.verdicts}
    procs = []
    for p in snap.processes:
        v = verdicts.get(p.row)
        procs.append({
            "role": p.role, "pid": p.pid, "row": p.row, "state": p.state.name, "alive": p.alive,
            "heartbeat_age_s": None if p.heartbeat_mono <= 0 else round(max(0, snap.taken_mono - p.heartbeat_mono) / 1e9, 6),
            "verdict": v.verdict.name if v is not None and v.pid == p.pid else None,
            "verdict_reason": v.reason if v is not None and v.pid == p.pid else None,
        })
    body = {"instance": snap.instance, "status": "ok" if procs_present else "no process table",
            "halt": snap.halt, "halt_reason": snap.halt_reason, "processes": procs, "errors": snap.errors}
    return Decision(procs_present, body)


def ready(snap: InstanceSnapshot, procs_present: bool, critical: Sequence[str],
          timeouts_s: Mapping[str, float], default_timeout_s: float,
          global_mode: int | None = None) -> Decision:
    reasons: list[str] = []
    if not procs_present:
        reasons.append("process table not found")
    for role in critical:
        rows = [p for p in snap.processes if p.role == role]
        timeout_ns = int(timeouts_s.get(role, default_timeout_s) * 1e9)
        good = [p for p in rows if p.state == ProcState.RUNNING and p.alive and p.heartbeat_mono > 0
                and snap.taken_mono - p.heartbeat_mono <= timeout_ns]
        if good:
            continue
        if not rows:
            reasons.append(f"{role}: no process")
            continue
        p = max(rows, key=lambda r: r.heartbeat_mono)
        age = max(0, snap.taken_mono - p.heartbeat_mono) / 1e9
        if not p.alive:
            reasons.append(f"{role}: pid {p.pid} is dead")
        elif p.state != ProcState.RUNNING:
            reasons.append(f"{role}: state {p.state.name}")
        else:
            reasons.append(f"{role}: heartbeat {age:.2f}s old (> {timeout_ns / 1e9:g}s)")
    if snap.halt:
        reasons.append(f"watchdog HALT: {snap.halt_reason or 'no reason given'}")
    if global_mode is not None and global_mode >= Mode.HALT:
        try:
            name = Mode(global_mode).name
        except ValueError:
            name = str(global_mode)
        reasons.append(f"risk mode {name}")
    body = {"instance": snap.instance, "ready": not reasons, "reasons": reasons, "critical": list(critical)}
    return Decision(not reasons, body)
