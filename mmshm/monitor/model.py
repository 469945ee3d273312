"""Plain snapshots of an instance's shared memory, shared by the watchdog, `mmshm status`
and the exporter. No shared-memory access here: ``mmshm.monitor.snapshot`` fills them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mmshm.records import ProcState, Verdict


@dataclass
class ReaderInfo:
    slot: int
    name: str
    required: bool
    pid: int
    alive: bool
    cursor: int
    lag: int            # writer cursor - reader cursor (messages not yet read)
    gaps: int           # gap events (lapped, writer restarted)
    lost: int           # messages skipped over by gaps
    polled: int
    heartbeat_mono: int


@dataclass
class SegmentInfo:
    name: str           # short name ("md")
    posix_name: str     # "/mmshm-<instance>-md"
    kind: str           # BROADCAST | GATED | SEQLOCK
    dtype_name: str
    capacity: int
    creator_pid: int
    creator_alive: bool
    epoch: int
    cursor: int
    write_count: int
    refused: int
    alarm: int
    heartbeat_mono: int
    heartbeat_count: int
    created_ts: int
    readers: list[ReaderInfo] = field(default_factory=list)

    @property
    def progress(self) -> tuple[int, int, int]:
        """Changes whenever the writer publishes anything (rings move the cursor, tables count writes)."""
        return (self.epoch, self.cursor, self.write_count)


@dataclass
class ProcessInfo:
    row: int
    pid: int
    role: str
    state: ProcState
    cpu: int
    started_ts: int
    heartbeat_mono: int
    heartbeat_count: int
    work_count: int
    idle_cycles: int
    counters: dict[str, int]
    alive: bool


@dataclass
class VerdictInfo:
    row: int            # verdicts row (process row + 1)
    pid: int
    role: str
    verdict: Verdict
    critical: bool
    since_mono: int
    checked_mono: int
    heartbeat_age_ns: int
    reason: str


@dataclass
class AccountInfo:
    """The venue account the executor publishes (``account`` table, row 0), in asset units."""
    asset: str
    source: str          # STREAM | REST | NONE: where the latest figures came from
    wallet: float
    margin_balance: float
    unrealized_pnl: float
    initial_margin: float
    maint_margin: float
    available: float
    updated_mono: int
    margin_mono: int     # 0: no margin figures yet (they come from REST only)
    drops: int           # updates refused as malformed


@dataclass
class InstanceSnapshot:
    instance: str
    taken_mono: int
    processes: list[ProcessInfo] = field(default_factory=list)
    segments: list[SegmentInfo] = field(default_factory=list)
    verdicts: list[VerdictInfo] = field(default_factory=list)
    halt: bool = False
    halt_reason: str = ""
    halt_since_mono: int = 0
    watchdog_checked_mono: int = 0
    account: AccountInfo | None = None
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Why this instance is not healthy: HALT, and every process whose verdict is not OK."""
        out = [f"HALT: {self.halt_reason}"] if self.halt else []
        out += [f"{v.role} pid {v.pid} {v.verdict.name}: {v.reason}" for v in self.verdicts if v.verdict != Verdict.OK]
        return out

    def to_json(self) -> dict:
        """A JSON-ready dict (enums as names, ages in seconds relative to ``taken_mono``)."""
        def age(mono: int) -> float | None:
            return None if mono <= 0 else round(max(0, self.taken_mono - mono) / 1e9, 6)

        by_row = {(v.row - 1, v.pid): v for v in self.verdicts}
        procs = []
        for p in self.processes:
            d = asdict(p)
            d["state"] = p.state.name
            d["heartbeat_age_s"] = age(p.heartbeat_mono)
            v = by_row.get((p.row, p.pid))
            d["verdict"] = v.verdict.name if v is not None else None
            d["verdict_reason"] = v.reason if v is not None else None
            procs.append(d)
        segs = []
        for s in self.segments:
            d = asdict(s)
            d["heartbeat_age_s"] = age(s.heartbeat_mono)
            segs.append(d)
        verdicts = []
        for v in self.verdicts:
            d = asdict(v)
            d["verdict"] = v.verdict.name
            d["since_age_s"] = age(v.since_mono)
            verdicts.append(d)
        return {
            "instance": self.instance,
            "halt": self.halt,
            "halt_reason": self.halt_reason,
            "halt_age_s": age(self.halt_since_mono) if self.halt else None,
            "watchdog_check_age_s": age(self.watchdog_checked_mono),
            "processes": procs,
            "segments": segs,
            "verdicts": verdicts,
            "account": None if self.account is None else {
                **asdict(self.account), "age_s": age(self.account.updated_mono),
                "margin_age_s": age(self.account.margin_mono)},
            "errors": list(self.errors),
        }
