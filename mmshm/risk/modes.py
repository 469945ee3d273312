"""Modes and the re-entry state machine after a halt.

Rules (issue 5): after a halt wait ``reentry_wait_s`` (5 min), then quote again at
``reentry_scale_bp`` (50%) of limits; limits return to 100% after ``full_limits_after_s``
without a halt. A halt within ``rehalt_window_s`` (1 h) of the last re-entry stays halted
until the next UTC midnight. The ``max_halts_per_day``-th (3rd) halt of a UTC day, and any
manual halt, stays halted until a person runs ``mmshm resume``. All times come from the
injected clock (realtime ns: the UTC day matters).

CONTROL_ROW.flags bits are defined here (the quoter reads the same bits, see
mmshm.strategy.params): bit0 paused, bit1 pull quotes, bit2 alert.
"""
from __future__ import annotations

from dataclasses import dataclass

from mmshm.records import Mode
from mmshm.risk.clock import NS, next_utc_midnight, utc_day
from mmshm.risk.limits import FULL_SCALE_BP
from mmshm.risk.params import RiskParams, TriggerCode
from mmshm.strategy.params import CONTROL_FLAG_ALERT, CONTROL_FLAG_PAUSED, CONTROL_FLAG_PULL

FLAG_PAUSED = CONTROL_FLAG_PAUSED
FLAG_PULL = CONTROL_FLAG_PULL
FLAG_ALERT = CONTROL_FLAG_ALERT


@dataclass
class HaltState:
    """What the state machine looks like now (for status and post-mortems)."""
    halted: bool
    reason: TriggerCode
    since_ns: int
    resume_at_ns: int | None   # None: manual resume required (or not halted)
    manual_required: bool
    halts_today: int
    scale_bp: int


class HaltController:
    """HALT and re-entry; every method takes the realtime ns from the caller's clock."""

    def __init__(self, params: RiskParams, now_ns: int) -> None:
        self.p = params
        self.halted = False
        self.reason = TriggerCode.NONE
        self.since_ns = 0
        self.resume_at_ns: int | None = None
        self.manual_required = False
        self.day = utc_day(now_ns)
        self.halts_today = 0
        self.last_reentry_ns: int | None = None
        self.scale_bp = FULL_SCALE_BP
        self.restore_at_ns: int | None = None

    def _roll_day(self, now_ns: int) -> None:
        day = utc_day(now_ns)
        if day != self.day:
            self.day = day
            self.halts_today = 0

    def halt(self, now_ns: int, reason: TriggerCode, manual: bool = False) -> bool:
        """Enter HALT; False if already halted (one halt is counted once)."""
        self._roll_day(now_ns)
        if self.halted:
            if manual and not self.manual_required:
                self.manual_required = True       # a person's halt overrides automatic re-entry
                self.resume_at_ns = None
            return False
        self.halts_today += 1
        self.halted = True
        self.reason = reason
        self.since_ns = now_ns
        if manual or self.halts_today >= self.p.max_halts_per_day:
            self.manual_required = True
            self.resume_at_ns = None
        elif self.last_reentry_ns is not None and now_ns - self.last_reentry_ns < self.p.rehalt_window_s * NS:
            self.resume_at_ns = next_utc_midnight(now_ns)
        else:
            self.resume_at_ns = now_ns + int(self.p.reentry_wait_s * NS)
        return True

    def _reenter(self, now_ns: int) -> None:
        self.halted = False
        self.manual_required = False
        self.resume_at_ns = None
        self.reason = TriggerCode.NONE
        self.last_reentry_ns = now_ns
        self.scale_bp = self.p.reentry_scale_bp
        self.restore_at_ns = now_ns + int(self.p.full_limits_after_s * NS)

    def tick(self, now_ns: int) -> bool:
        """Advance time; returns True when this call re-entered quoting."""
        self._roll_day(now_ns)
        if self.halted:
            if not self.manual_required and self.resume_at_ns is not None and now_ns >= self.resume_at_ns:
                self._reenter(now_ns)
                return True
            return False
        if self.scale_bp < FULL_SCALE_BP and self.restore_at_ns is not None and now_ns >= self.restore_at_ns:
            self.scale_bp = FULL_SCALE_BP
            self.restore_at_ns = None
        return False

    def resume(self, now_ns: int) -> bool:
        """Manual resume (``mmshm resume``): re-enter now at the re-entry scale."""
        self._roll_day(now_ns)
        if not self.halted:
            return False
        self._reenter(now_ns)
        return True

    def state(self) -> HaltState:
        return HaltState(self.halted, self.reason, self.since_ns, self.resume_at_ns, self.manual_required,
                         self.halts_today, self.scale_bp)


def most_restrictive(*modes: Mode) -> Mode:
    return Mode(max(int(m) for m in modes)) if modes else Mode.NORMAL
