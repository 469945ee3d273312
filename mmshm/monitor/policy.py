"""What the watchdog considers stale, and what it does about it.

A plain dataclass with safe defaults; ``WatchdogPolicy.from_mapping`` builds one from a
config section or a dict (unknown keys are an error, so a typo in the config is not
silently ignored).
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class WatchdogPolicy:
    #: Seconds between two checks (the watchdog sleeps in between).
    interval_s: float = 0.25
    #: A RUNNING/PAUSED/HALTED process whose heartbeat is older than this is HUNG.
    heartbeat_timeout_s: float = 2.0
    #: Per-role overrides of ``heartbeat_timeout_s``.
    role_timeouts: Mapping[str, float] = field(default_factory=dict)
    #: Heartbeat timeout while a process is STARTING (its on_start may connect to a venue).
    starting_timeout_s: float = 30.0
    #: Heartbeat timeout while STOPPING (the stop hook may be a slow cancel-all).
    stopping_timeout_s: float = 60.0
    #: Per-role limit (seconds) for a fresh heartbeat with every segment the process writes
    #: standing still: past it the process is IDLE. Roles not listed are never IDLE.
    idle_limits: Mapping[str, float] = field(default_factory=lambda: {"feed": 30.0})
    #: Roles whose DEAD/HUNG/KILLED verdict raises the watchdog HALT flag.
    critical_roles: frozenset[str] = frozenset({"feed", "quoter", "risk"})
    #: Kill HUNG processes (with ``kill_signal``).
    kill_hung: bool = True
    kill_signal: int = int(signal.SIGKILL)
    #: A process still hung this long after ``kill_signal`` gets SIGKILL.
    kill_escalate_s: float = 5.0
    #: Raise HALT when a critical role is DEAD, HUNG or KILLED.
    halt_on_critical: bool = True
    #: HALT is latched. SIGHUP to the watchdog clears it when every critical role is OK;
    #: with ``auto_clear_halt_s`` set it also clears after that long with all critical OK.
    auto_clear_halt_s: float | None = None
    #: A reader whose lag grew on this many consecutive checks is a SLOW_READER ...
    slow_reader_checks: int = 3
    #: ... provided its lag is at least this many messages.
    slow_reader_min_lag: int = 1024
    #: A live pid whose process started this long after its row claimed it is a reused pid.
    pid_reuse_tolerance_s: float = 2.0
    #: Segments that are bookkeeping, not data: never used for idle checks.
    ignore_segments: frozenset[str] = frozenset({"procs", "verdicts"})

    def __post_init__(self) -> None:
        for name in ("interval_s", "heartbeat_timeout_s", "starting_timeout_s", "stopping_timeout_s",
                     "pid_reuse_tolerance_s", "kill_escalate_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"watchdog policy {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("role_timeouts", "idle_limits"):
            for role, value in getattr(self, name).items():
                if not (isinstance(value, (int, float)) and value > 0):
                    raise ValueError(f"watchdog policy {name}[{role!r}] must be > 0 seconds, got {value!r}")
        if self.slow_reader_checks < 1:
            raise ValueError(f"slow_reader_checks must be >= 1, got {self.slow_reader_checks}")
        try:
            signal.Signals(self.kill_signal)
        except ValueError:
            raise ValueError(f"kill_signal {self.kill_signal!r} is not a signal") from None
        if self.auto_clear_halt_s is not None and self.auto_clear_halt_s <= 0:
            raise ValueError("auto_clear_halt_s must be > 0 or None")

    def timeout_s(self, role: str) -> float:
        return float(self.role_timeouts.get(role, self.heartbeat_timeout_s))

    def is_critical(self, role: str) -> bool:
        return role in self.critical_roles

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "WatchdogPolicy":
        """A policy from a dict/config section; ``kill_signal`` may be a name ("SIGTERM", "TERM")."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown watchdog policy keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "kill_signal" in data:
            data["kill_signal"] = parse_signal(data["kill_signal"])
        for name in ("critical_roles", "ignore_segments"):
            if name in data:
                data[name] = frozenset(data[name])
        for name in ("role_timeouts", "idle_limits"):
            if name in data:
                data[name] = {str(k): float(v) for k, v in dict(data[name]).items()}
        return cls(**data)

    @classmethod
    def from_config(cls, watchdog_config: Any, **overrides: Any) -> "WatchdogPolicy":
        """A policy from ``mmshm.config.Config.watchdog`` (its keys mirror this class)."""
        from mmshm.config import section_mapping

        data = section_mapping(watchdog_config)
        data.update(overrides)
        return cls.from_mapping(data)

    def with_(self, **changes: Any) -> "WatchdogPolicy":
        return replace(self, **changes)


def parse_signal(value: int | str) -> int:
    """``9``, ``"9"``, ``"KILL"`` or ``"SIGKILL"`` -> 9 (ValueError naming the bad value)."""
    if isinstance(value, int):
        return int(signal.Signals(value))
    text = str(value).strip().upper()
    if text.isdigit():
        return int(signal.Signals(int(text)))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None
