"""The status line of ``mmshm up``: values in, one line (or one JSON object) out. No shared memory here.

``PnL=$12.34 Pos=0.005BTC Spread=4.2bps Fills=47 Mode=NORMAL FillRate=3.2/min
Signals: imb=+0.12 leadlag=+0.8bps Risk: dd=0.3% margin=15% kill=OK Procs=8/8``

Every value may be missing (its process is not running or does not publish it yet):
it then shows as ``n/a`` and is ``null`` in JSON, never a made-up zero.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

NA = "n/a"


@dataclass
class StatusValues:
    """What the status line shows; ``None`` = not available."""

    pnl: float | None = None              # net PnL (realized + unrealized - fees), quote asset
    position: Decimal | None = None       # base-asset units of the first instrument
    base_asset: str = ""
    spread_bp: float | None = None        # own best ask - best bid, bp of their mid
    fills: int | None = None
    mode: str | None = None               # NORMAL, WIDEN, ... with +PAUSED / +PULL
    fill_rate_per_min: float | None = None
    imbalance: float | None = None
    leadlag_bp: float | None = None
    drawdown: float | None = None         # fraction (0.003 = 0.3%)
    margin: float | None = None           # fraction of equity used as initial margin
    kill: str | None = None               # OK, HALT:<trigger>, WATCHDOG:<reason>
    procs_up: int | None = None
    procs_total: int | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["position"] = None if self.position is None else str(self.position)
        return d


def _money(v: float | None) -> str:
    if v is None:
        return NA
    sign = "-" if v < 0 else ""
    return f"{sign}${abs(v):,.2f}"


def _qty(v: Decimal | None, unit: str) -> str:
    if v is None:
        return NA
    text = format(v.normalize(), "f") if v != 0 else "0"
    return f"{text}{unit}"


def _num(v: float | None, fmt: str, suffix: str = "") -> str:
    return NA if v is None else f"{v:{fmt}}{suffix}"


def _pct(v: float | None, digits: int) -> str:
    return NA if v is None else f"{v * 100:.{digits}f}%"


def format_status_line(s: StatusValues) -> str:
    """The one-line status (see the module docstring)."""
    parts = [
        f"PnL={_money(s.pnl)}",
        f"Pos={_qty(s.position, s.base_asset)}",
        f"Spread={_num(s.spread_bp, '.1f', 'bps')}",
        f"Fills={NA if s.fills is None else s.fills}",
        f"Mode={s.mode or NA}",
        f"FillRate={_num(s.fill_rate_per_min, '.1f', '/min')}",
        f"Signals: imb={_num(s.imbalance, '+.2f')} leadlag={_num(s.leadlag_bp, '+.1f', 'bps')}",
        f"Risk: dd={_pct(s.drawdown, 1)} margin={_pct(s.margin, 0)} kill={s.kill or NA}",
    ]
    if s.procs_total is not None:
        parts.append(f"Procs={NA if s.procs_up is None else s.procs_up}/{s.procs_total}")
    return " ".join(parts)


class FillRate:
    """Fills per minute over a sliding window of samples (default the last minute)."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._samples: list[tuple[float, int]] = []

    def update(self, now_s: float, fills: int | None) -> float | None:
        """Add a sample; the rate over the window (None until two samples or without fills)."""
        if fills is None:
            self._samples.clear()
            return None
        if self._samples and fills < self._samples[-1][1]:
            self._samples.clear()            # the counter restarted with its process
        self._samples.append((now_s, fills))
        while len(self._samples) > 2 and now_s - self._samples[1][0] >= self.window_s:
            self._samples.pop(0)
        t0, f0 = self._samples[0]
        if now_s - t0 <= 0:
            return None
        return (fills - f0) / (now_s - t0) * 60.0
