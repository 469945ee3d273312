"""Reads the status-line values from an instance's shared memory (no process is asked anything).

Sources, each optional (missing -> ``None`` -> ``n/a``):

| value | source |
|---|---|
| Mode, kill | control row 0 (risk): ``mode``, ``flags`` (paused/pull), ``reason`` when HALT; watchdog HALT (verdicts row 0) |
| Pos | control row 1 (risk's position, lots) x the lot size of instrument 0 (instruments table) |
| Spread | targets row 0 (quoter): best own ask - best own bid |
| Fills, FillRate | executor counter ``fills`` (else risk counter ``fills``) |
| PnL | risk counter ``pnl_e8`` (net PnL in 1e-8 quote units, ``FEE_SCALE``) |
| dd, margin | risk counters ``drawdown_e6``, ``margin_e6`` (fraction x 1e6) |
| imb, leadlag | quoter counters ``imbalance_e6`` (x 1e6), ``leadlag_bp_e6`` (bp x 1e6) |

Counters are process-table counter slots named in ``mmshm.agent.counters.ROLE_COUNTERS``;
a value shows as soon as its role names the counter there and writes it.
"""
from __future__ import annotations

import time
from decimal import Decimal

from mmshm.agent.counters import ROLE_COUNTERS
from mmshm.records import (CONTROL_ROW, FEE_SCALE, INSTRUMENT_ROW, PROCESS_ROW, TARGET_ROW, VERDICT_ROW,
                           Mode)
from mmshm.shm import SeqlockBusy, SeqlockTable, ShmError
from mmshm.supervisor.statusline import FillRate, StatusValues

#: (role, counter name, scale): value = counter / scale.
COUNTER_SOURCES: dict[str, tuple[tuple[str, str, float], ...]] = {
    "pnl": (("risk", "pnl_e8", float(FEE_SCALE)),),
    "fills": (("executor", "fills", 1.0), ("risk", "fills", 1.0)),
    "drawdown": (("risk", "drawdown_e6", 1e6),),
    "margin": (("risk", "margin_e6", 1e6),),
    "imbalance": (("quoter", "imbalance_e6", 1e6),),
    "leadlag_bp": (("quoter", "leadlag_bp_e6", 1e6),),
}

FLAG_PAUSED = 1
FLAG_PULL = 2


def _text(v) -> str:
    return bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")


def _read_rows(instance: str, name: str, dtype) -> list | None:
    """Every written row of a table (None if it does not exist or stays busy)."""
    try:
        t = SeqlockTable.attach(instance, name, dtype)
    except ShmError:
        return None
    try:
        rows = t.read_all()
    except (SeqlockBusy, ShmError):
        return None
    finally:
        t.close()
    return list(rows)


def _trigger_name(code: int) -> str:
    try:
        from mmshm.risk.params import TriggerCode

        return TriggerCode(code).name
    except (ImportError, ValueError):
        return str(code)


class StatusSampler:
    """``sample()`` -> :class:`StatusValues`; keeps the fill history for the rate."""

    def __init__(self, instance: str, fill_window_s: float = 60.0) -> None:
        self.instance = instance
        self.fill_rate = FillRate(fill_window_s)

    def _counters(self) -> dict[str, dict[str, int]]:
        """role -> {counter name: value} of the live (else latest) row of each role."""
        from mmshm.agent.proctable import process_alive

        rows = _read_rows(self.instance, "procs", PROCESS_ROW)
        if not rows:
            return {}
        best: dict[str, tuple[tuple[bool, int], object]] = {}
        for r in rows:
            pid = int(r["pid"])
            if pid <= 0:
                continue
            role = _text(r["role"])
            key = (process_alive(pid, int(r["started_ts"])), int(r["started_ts"]))
            if role not in best or key > best[role][0]:
                best[role] = (key, r)
        out = {}
        for role, (_, r) in best.items():
            names = ROLE_COUNTERS.get(role, ())
            out[role] = {n: int(r["counters"][i]) for i, n in enumerate(names)}
        return out

    def sample(self, now_s: float | None = None) -> StatusValues:
        s = StatusValues()
        counters = self._counters()
        for field_name, sources in COUNTER_SOURCES.items():
            for role, name, scale in sources:
                if name in counters.get(role, {}):
                    v = counters[role][name]
                    setattr(s, field_name, int(v) if scale == 1.0 else v / scale)
                    break
        s.fill_rate_per_min = self.fill_rate.update(time.monotonic() if now_s is None else now_s, s.fills)

        control = _read_rows(self.instance, "control", CONTROL_ROW)
        if control and int(control[0]["version"]):
            g = control[0]
            mode = int(g["mode"])
            name = Mode(mode).name if mode in Mode._value2member_map_ else str(mode)
            flags = int(g["flags"])
            s.mode = name + ("+PAUSED" if flags & FLAG_PAUSED else "") + ("+PULL" if flags & FLAG_PULL else "")
            s.kill = f"HALT:{_trigger_name(int(g['reason']))}" if mode == Mode.HALT else "OK"
            if len(control) > 1 and int(control[1]["version"]):
                s.position = self._position(int(control[1]["position"]), s)
        verdicts = _read_rows(self.instance, "verdicts", VERDICT_ROW)
        if verdicts and int(verdicts[0]["version"]):
            if int(verdicts[0]["halt"]):
                reason = _text(verdicts[0]["reason"])
                s.kill = f"WATCHDOG:{reason}" if reason else "WATCHDOG"
            elif s.kill is None:
                s.kill = "OK"
        targets = _read_rows(self.instance, "targets", TARGET_ROW)
        if targets and int(targets[0]["version"]):
            t = targets[0]
            if int(t["n_bids"]) and int(t["n_asks"]) and not int(t["flags"]) & 1:
                b, a = int(t["bid_px"][0]), int(t["ask_px"][0])
                if b > 0 and a > 0:
                    s.spread_bp = (a - b) / ((a + b) / 2) * 1e4
        return s

    def _position(self, lots: int, s: StatusValues) -> Decimal | None:
        rows = _read_rows(self.instance, "instruments", INSTRUMENT_ROW)
        if not rows or not int(rows[0]["version"]):
            return None
        r = rows[0]
        symbol, quote = _text(r["symbol"]), _text(r["quote_asset"])
        s.base_asset = symbol[: -len(quote)] if quote and symbol.endswith(quote) else symbol
        return Decimal(lots * int(r["lot_mantissa"])).scaleb(int(r["qty_exp"]))
