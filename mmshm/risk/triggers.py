"""Triggers: measured values against configured thresholds, each with an action.

:func:`evaluate` is pure: given the :class:`Metrics` it returns every breach, where a
breach is ``value >= threshold`` (AT the threshold fires, below does not). The stateful
counters behind some values (rate-limit rejects in a row, losing fills in a row, errors
in a sliding hour) live in :class:`Counters`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mmshm.risk.params import TRIGGER_CODES, Action, RiskParams, TriggerCode

NS = 1_000_000_000


@dataclass(frozen=True)
class Breach:
    name: str
    code: TriggerCode
    action: Action
    value: float
    threshold: float
    instrument: int | None = None   # None = account-wide

    def as_dict(self) -> dict:
        return {"trigger": self.name, "code": int(self.code), "action": self.action.name,
                "value": self.value, "threshold": self.threshold, "instrument": self.instrument}


@dataclass
class Metrics:
    """The values the triggers look at (fractions, counts, seconds)."""
    daily_loss: float = 0.0          # loss today / equity at the start of the UTC day
    drawdown: float = 0.0            # (hwm - equity) / hwm
    margin_utilisation: float = 0.0  # initial margin / equity
    maintenance_ratio: float = 0.0   # maintenance margin / equity (reported, not a trigger)
    rate_limit: float = 0            # rate-limit rejects in a row
    losing_fills: float = 0          # losing closing fills in a row
    error_burst: float = 0           # errors in the last error_window_s
    position_runaway: dict[int, float] = field(default_factory=dict)   # |pos| / max_position
    stale_md: dict[int, float] = field(default_factory=dict)           # seconds since LIVE update
    cascade: dict[int, float] = field(default_factory=dict)            # quoter severity


ACCOUNT = ("daily_loss", "drawdown", "rate_limit", "losing_fills", "error_burst")
MARGIN = (("margin_alert", "margin_utilisation"), ("margin_reduce", "margin_utilisation"),
          ("margin_halt", "margin_utilisation"))
PER_INSTRUMENT = ("position_runaway", "stale_md", "cascade")


def evaluate(params: RiskParams, m: Metrics) -> list[Breach]:
    """Every trigger whose value is at or above its threshold."""
    out: list[Breach] = []

    def check(name: str, value: float, instrument: int | None = None) -> None:
        spec = getattr(params, name)
        if spec.enabled and value >= spec.threshold:
            out.append(Breach(name, TRIGGER_CODES[name], spec.action, float(value), float(spec.threshold), instrument))

    for name in ACCOUNT:
        check(name, getattr(m, name))
    for name, metric in MARGIN:
        check(name, getattr(m, metric))
    for name in PER_INSTRUMENT:
        for inst, value in sorted(getattr(m, name).items()):
            check(name, value, inst)
    return out


class Counters:
    """Streaks and the sliding error window, fed from order events and reported errors."""

    def __init__(self, error_window_s: float) -> None:
        self.window_ns = int(error_window_s * NS)
        self.rate_limit_streak = 0
        self.losing_streak = 0
        self.errors: deque[int] = deque()
        self.errors_total = 0

    def on_request_ok(self) -> None:
        """A venue request succeeded: the rate-limit streak is broken."""
        self.rate_limit_streak = 0

    def on_rate_limited(self, now_mono: int) -> None:
        self.rate_limit_streak += 1
        self.on_error(now_mono)

    def on_error(self, now_mono: int) -> None:
        self.errors.append(now_mono)
        self.errors_total += 1

    def on_closing_fill(self, net_pnl: int) -> None:
        """A fill that reduced a position: net loss extends the streak, anything else ends it."""
        self.losing_streak = self.losing_streak + 1 if net_pnl < 0 else 0

    def errors_in_window(self, now_mono: int) -> int:
        while self.errors and now_mono - self.errors[0] >= self.window_ns:
            self.errors.popleft()
        return len(self.errors)

    def reset(self, name: str) -> None:
        """A counter trigger fired: its count starts again (the action was the response)."""
        if name == "rate_limit":
            self.rate_limit_streak = 0
        elif name == "losing_fills":
            self.losing_streak = 0
        elif name == "error_burst":
            self.errors.clear()
