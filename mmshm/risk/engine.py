"""The risk engine: fills, books, signals and errors in; mode, control rows, post-mortems out.

One object per risk process, single-threaded, every time from the injected clock. The
process (procs/risk.py) feeds it from the orders ring (``on_order_event``), the book
table (``on_book_row``), the md status and the quoter's signals, calls ``evaluate()``
on each duty cycle, and copies ``control_rows()`` into the control seqlock table.

Control rows: row 0 is global, row 1+i instrument i. Each instrument row is
self-sufficient: its mode is the most restrictive of the global and the instrument mode,
its flags include the global flags, and ``max_position`` / ``max_order_qty`` are the
EFFECTIVE limits (already multiplied by ``limit_scale_bp``, which is informational).
Readers must not scale them again.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmshm.records import CONTROL_ROW, FEE_SCALE, MdStatus, Mode, OrderEventKind, Side
from mmshm.risk.account import MARGIN_OWN, MARGIN_VENUE, VenueAccount
from mmshm.risk.clock import NS, Clock, SystemClock, utc_day
from mmshm.risk.limits import base_max_position, scaled
from mmshm.risk.modes import FLAG_ALERT, FLAG_PAUSED, FLAG_PULL, HaltController, most_restrictive
from mmshm.risk.params import Action, InstrumentRisk, RiskParams, TriggerCode
from mmshm.risk.pnl import Fill, Positions, money
from mmshm.risk.postmortem import write_postmortem
from mmshm.risk.triggers import Breach, Counters, Metrics, evaluate

log = logging.getLogger("mmshm.risk")

_MODE_OF_ACTION = {Action.WIDEN: Mode.WIDEN, Action.REDUCE_ONLY: Mode.REDUCE_ONLY}


class _Market:
    __slots__ = ("bid", "ask", "status", "last_live_mono", "md_seq")

    def __init__(self, now_mono: int) -> None:
        self.bid = 0
        self.ask = 0
        self.status = MdStatus.UNKNOWN
        self.last_live_mono = now_mono     # staleness counts from start-up until the first LIVE book
        self.md_seq = 0


class RiskEngine:
    """Positions, PnL, limits, triggers and modes for one account."""

    def __init__(self, params: RiskParams, instruments: Sequence[InstrumentRisk], clock: Clock | None = None) -> None:
        if not instruments:
            raise ValueError("risk needs at least one instrument")
        self.p = params
        self.clock = clock or SystemClock()
        self.specs = {s.index: s for s in instruments}
        if len(self.specs) != len(instruments):
            raise ValueError("duplicate instrument index")
        now_r, now_m = self.clock.realtime_ns(), self.clock.monotonic_ns()
        self.positions = Positions({i: s.quote_per_tick_lot for i, s in self.specs.items()},
                                   params.dedup_capacity, params.last_fills)
        self.counters = Counters(params.error_window_s)
        self.halts = HaltController(params, now_r)
        self.equity_base = Fraction(params.initial_equity)
        self.hwm = Fraction(params.initial_equity)
        self.day = utc_day(now_r)
        self.day_start_equity = Fraction(params.initial_equity)
        self.market = {i: _Market(now_m) for i in self.specs}
        self.signals: dict[int, dict[str, float]] = {i: {} for i in self.specs}
        self.paused_until_ns = 0
        self.manual_pause = False
        self.flatten_requested = False
        self.breaches: list[Breach] = []
        self.mode = Mode.NORMAL
        self.reason = TriggerCode.NONE
        self.mode_changed_ns = now_r
        self.global_flags = 0
        self.inst_mode: dict[int, Mode] = {i: Mode.NORMAL for i in self.specs}
        self.inst_flags: dict[int, int] = {i: 0 for i in self.specs}
        self.inst_reason: dict[int, TriggerCode] = {i: TriggerCode.NONE for i in self.specs}
        self.postmortems: list[Path] = []
        self.postmortem_docs: deque[dict] = deque(maxlen=16)
        self.events: deque[dict] = deque(maxlen=256)
        self.drops: dict[str, int] = {}
        self.metrics = Metrics()
        self.external_halt = ""
        # the venue's account (mmshm.risk.account): equity anchor and margin figures
        self.account = VenueAccount(params.account_max_age_s)
        self.equity_source = self.account.equity_source(now_m)
        self.margin_source = MARGIN_OWN

    # ------------------------------------------------------------------ inputs
    def _drop(self, why: str) -> None:
        self.drops[why] = self.drops.get(why, 0) + 1

    def on_order_event(self, ev) -> Fill | None:
        """One ORDER_EVENT record from the orders ring. Returns the Fill applied, if any."""
        kind = int(ev["kind"])
        now_m = self.clock.monotonic_ns()
        if kind == OrderEventKind.FILL:
            return self.on_fill(int(ev["instrument"]), int(ev["side"]), int(ev["fill_px"]), int(ev["fill_qty"]),
                                int(ev["fee"]), int(ev["client_id"]), int(ev["trade_id"]), int(ev["venue_ts"]))
        if kind == OrderEventKind.RECONCILE and int(ev["client_id"]) == 0:
            self.on_position_report(int(ev["instrument"]), int(ev["side"]), int(ev["qty"]), int(ev["price"]))
            return None
        if kind in (OrderEventKind.ACK, OrderEventKind.AMENDED, OrderEventKind.CANCELED):
            self.counters.on_request_ok()
        elif kind in (OrderEventKind.REJECT, OrderEventKind.CANCEL_REJECT):
            code = int(ev["reason"])
            if code in self.p.rate_limit_codes:
                self.counters.on_rate_limited(now_m)
            elif code not in self.p.benign_codes:
                self.counters.on_error(now_m)
        return None

    def on_fill(self, instrument: int, side: int, px: int, qty: int, fee: int, client_id: int,
                trade_id: int, ts: int | None = None) -> Fill | None:
        """Apply a fill once (deduplicated by (client_id, trade_id)); bad fills are counted drops."""
        if instrument not in self.specs:
            self._drop("fill_unknown_instrument")
            return None
        if qty <= 0 or px <= 0 or side not in (Side.BUY, Side.SELL):
            self._drop("fill_invalid")
            return None
        f = self.positions.fill(instrument, side, px, qty, fee, client_id, trade_id,
                                self.clock.realtime_ns() if ts is None else ts)
        if f is None:
            self._drop("fill_duplicate")
            return None
        self.account.on_fill(f.ts, f.realized - f.fee)
        if f.closing:
            self.counters.on_closing_fill(f.realized - f.fee)
        return f

    def on_book(self, instrument: int, bid_px: int, ask_px: int, status: int = MdStatus.LIVE, md_seq: int = 0) -> None:
        """Top of book for marking and staleness (a LIVE, uncrossed book refreshes the clock)."""
        mk = self.market.get(instrument)
        if mk is None:
            self._drop("book_unknown_instrument")
            return
        mk.status = MdStatus(status) if status in MdStatus._value2member_map_ else MdStatus.UNKNOWN
        mk.md_seq = md_seq
        if bid_px > 0 and ask_px > bid_px:
            mk.bid, mk.ask = bid_px, ask_px
            self.positions[instrument].mark = Fraction(bid_px + ask_px, 2)
            if mk.status == MdStatus.LIVE:
                mk.last_live_mono = self.clock.monotonic_ns()

    def on_book_row(self, row) -> None:
        """A BOOK_ROW record from the book table."""
        nb, na = int(row["n_bids"]), int(row["n_asks"])
        self.on_book(int(row["instrument"]), int(row["bid_px"][0]) if nb else 0, int(row["ask_px"][0]) if na else 0,
                     int(row["status"]), int(row["md_seq"]))

    def on_md_status(self, instrument: int, status: int) -> None:
        mk = self.market.get(instrument)
        if mk is None:
            self._drop("status_unknown_instrument")
            return
        mk.status = MdStatus(status) if status in MdStatus._value2member_map_ else MdStatus.UNKNOWN

    def on_signals(self, instrument: int, **values: float) -> None:
        """The quoter's published signals (``cascade`` drives the cascade trigger)."""
        if instrument not in self.signals:
            self._drop("signals_unknown_instrument")
            return
        self.signals[instrument].update({k: float(v) for k, v in values.items()})

    def on_error(self, kind: str = "error") -> None:
        """An error seen elsewhere (executor disconnects, bad responses): counts toward error_burst."""
        self.counters.on_error(self.clock.monotonic_ns())
        self.events.append({"ts": self.clock.realtime_ns(), "event": "error", "kind": kind})

    def reconcile_position(self, instrument: int, position: int, entry_px: int | Fraction) -> None:
        """Adopt the venue's position (start-up / reconnect reconcile) without booking PnL:
        ``position`` lots at average entry ``entry_px`` ticks."""
        if instrument not in self.specs:
            raise KeyError(f"unknown instrument {instrument}")
        p = self.positions[instrument]
        p.position = int(position)
        p.cost = Fraction(entry_px) * abs(p.position) if p.position else Fraction(0)
        self.events.append({"ts": self.clock.realtime_ns(), "event": "reconcile", "instrument": instrument,
                            "position": int(position), "entry_px": float(entry_px)})

    def on_position_report(self, instrument: int, side: int, qty: int, entry_px: int) -> None:
        """The venue's position from an executor RECONCILE event with ``client_id`` 0
        (docs/CONTRACTS.md): ``side`` BUY long / SELL short / NONE flat, ``qty`` lots,
        ``entry_px`` average entry in ticks. Adopted only when it differs from ours."""
        if instrument not in self.specs:
            self._drop("position_unknown_instrument")
            return
        if qty < 0 or (qty > 0 and (side not in (Side.BUY, Side.SELL) or entry_px <= 0)):
            self._drop("position_invalid")
            return
        venue = 0 if qty == 0 else (qty if side == Side.BUY else -qty)
        if venue != self.positions[instrument].position:
            log.warning("risk: adopting the venue's position for %s: %d lots (ours %d)",
                        self.specs[instrument].symbol, venue, self.positions[instrument].position)
            self.reconcile_position(instrument, venue, entry_px)

    def hold_halt(self, reason: str) -> None:
        """Keep mode HALT while an outside authority says so (the watchdog's HALT flag);
        ``""`` releases the hold. The halt itself (count, post-mortem, re-entry) is
        :meth:`halt`; this only stops re-entry from quoting while the flag is up."""
        self.external_halt = reason
        self._recompute(self.clock.realtime_ns())

    def on_account_row(self, row) -> bool:
        """An ACCOUNT_ROW from the executor's ``account`` table (read when its version
        changed). Re-bases equity on the venue's wallet and applies the switching rules
        of :mod:`mmshm.risk.account` (first anchor and transfers shift the high-water
        mark and day-start equity; later anchors move equity like PnL). Returns True if
        the row was taken (False: never written, same version, or another asset)."""
        acc = self.account
        f = acc.accept(row)
        if f is None:
            return False
        now_r, now_m = self.clock.realtime_ns(), self.clock.monotonic_ns()
        moved = 0 if acc.last_transfers is None else f.transfers - acc.last_transfers
        acc.last_transfers = f.transfers
        acc.figures = f
        if not acc.fresh(now_m):
            return True                 # kept for the record (post-mortem), not trusted for equity
        if moved and acc.anchored:      # money in/out is not PnL (rule 3)
            self.hwm += moved
            self.day_start_equity += moved
            self.events.append({"ts": now_r, "event": "account_transfer", "amount": moved})
            log.warning("risk: account transfer of %.8f %s: high-water mark and day start moved with it",
                        moved / FEE_SCALE, f.asset)
        before = self.equity()
        self.equity_base = Fraction(f.wallet) + acc.pending_after(f.venue_ts) - self.positions.realized_net()
        if not acc.anchored:            # the configured equity was an assumption (rule 1)
            offset = self.equity() - before
            self.hwm += offset
            self.day_start_equity += offset
            acc.anchored = True
            self.events.append({"ts": now_r, "event": "equity_rebased", "offset": money(offset),
                                "equity": money(self.equity())})
            log.warning("risk: equity re-based on the venue's account: %.2f -> %.2f %s (high-water mark and "
                        "day start moved with it)", before / FEE_SCALE, self.equity() / FEE_SCALE, f.asset)
        acc.anchors += 1
        return True

    def set_equity_base(self, equity: int) -> None:
        """Re-base equity from the venue's balance (FEE_SCALE units) without touching PnL."""
        self.equity_base = Fraction(equity) - self.positions.realized_net() - self.positions.unrealized()

    # ------------------------------------------------------------------ commands
    def halt(self, reason: TriggerCode = TriggerCode.MANUAL, value: float = 0.0, threshold: float = 0.0,
             manual: bool = True) -> bool:
        """Halt now (``mmshm halt``, watchdog, broken invariant); manual halts need ``resume``."""
        b = Breach(reason.name.lower(), reason, Action.HALT, value, threshold, None)
        return self._fire_halt(b, self.clock.realtime_ns(), manual=manual)

    def resume(self) -> None:
        """``mmshm resume``: a person restarts quoting (re-entry scale), clears pause and flatten."""
        now = self.clock.realtime_ns()
        self.halts.resume(now)
        self.manual_pause = False
        self.paused_until_ns = 0
        self.flatten_requested = False
        self.events.append({"ts": now, "event": "resume"})
        self._recompute(now)

    def pause(self, on: bool = True) -> None:
        """``mmshm pause`` / SIGUSR2: stop quoting without halting (orders are pulled)."""
        self.manual_pause = on
        self.events.append({"ts": self.clock.realtime_ns(), "event": "pause" if on else "unpause"})

    def flatten(self) -> None:
        """Mode FLATTEN: the executor closes positions and sends nothing else, until resume."""
        self.flatten_requested = True

    # ------------------------------------------------------------------ evaluation
    def equity(self) -> Fraction:
        return self.equity_base + self.positions.realized_net() + self.positions.unrealized()

    def max_position(self, instrument: int) -> int:
        """The unscaled max position (configured or Kelly) in lots."""
        mark = self.positions[instrument].mark
        return base_max_position(money(self.equity()), self.specs[instrument], mark)

    def compute_metrics(self) -> Metrics:
        now_r, now_m = self.clock.realtime_ns(), self.clock.monotonic_ns()
        eq = self.equity()
        day = utc_day(now_r)
        if day != self.day:
            self.day = day
            self.day_start_equity = eq
        if eq > self.hwm:
            self.hwm = eq
        m = Metrics()
        m.drawdown = float((self.hwm - eq) / self.hwm) if self.hwm > 0 else 0.0
        m.daily_loss = float(max(Fraction(0), self.day_start_equity - eq) / self.day_start_equity) \
            if self.day_start_equity > 0 else 0.0
        source = self.account.equity_source(now_m)
        if source != self.equity_source:
            log.warning("risk: equity source %s -> %s", self.equity_source, source)
            self.events.append({"ts": now_r, "event": "equity_source", "from": self.equity_source, "to": source})
            self.equity_source = source
        venue_margin = self.account.margins(now_m)
        if venue_margin is not None:    # the venue's own figures (positions + open orders)
            initial, maint = venue_margin
            self.margin_source = MARGIN_VENUE
        else:                           # own estimate: notional / leverage, notional x maintenance rate
            initial = sum((p.notional() / Fraction(self.specs[i].leverage)
                           for i, p in self.positions.by_instrument.items()), Fraction(0))
            maint = sum((p.notional() * Fraction(self.specs[i].maint_margin_rate)
                         for i, p in self.positions.by_instrument.items()), Fraction(0))
            self.margin_source = MARGIN_OWN
        m.margin_utilisation = float(initial / eq) if eq > 0 else (float("inf") if initial > 0 else 0.0)
        m.maintenance_ratio = float(maint / eq) if eq > 0 else (float("inf") if maint > 0 else 0.0)
        m.rate_limit = self.counters.rate_limit_streak
        m.losing_fills = self.counters.losing_streak
        m.error_burst = self.counters.errors_in_window(now_m)
        for i in self.specs:
            pos = self.positions[i].position
            mx = self.max_position(i)
            m.position_runaway[i] = abs(pos) / mx if mx > 0 else 0.0
            m.stale_md[i] = (now_m - self.market[i].last_live_mono) / NS
            m.cascade[i] = self.signals[i].get("cascade", 0.0)
        self.metrics = m
        return m

    def evaluate(self) -> list[Breach]:
        """Run every trigger once; returns the breaches that fired an edge action this call
        (a halt or a pause). ``self.breaches`` holds every breach currently at/above threshold."""
        now = self.clock.realtime_ns()
        if self.halts.tick(now):
            self.events.append({"ts": now, "event": "reentry", "scale_bp": self.halts.scale_bp})
            log.warning("risk: re-entry at %d bp of limits", self.halts.scale_bp)
        self.breaches = evaluate(self.p, self.compute_metrics())
        fired: list[Breach] = []
        for b in self.breaches:
            if b.action == Action.HALT:
                if self._fire_halt(b, now, manual=False):
                    fired.append(b)
                    self.counters.reset(b.name)
            elif b.action == Action.PAUSE:
                if now >= self.paused_until_ns:
                    self.paused_until_ns = now + int(self.p.pause_s * NS)
                    self.counters.reset(b.name)
                    self.events.append({"ts": now, "event": "pause", **b.as_dict()})
                    log.warning("risk: pause %.0f s on %s=%s", self.p.pause_s, b.name, b.value)
                    fired.append(b)
        self._recompute(now)
        return fired

    def _fire_halt(self, b: Breach, now: int, manual: bool) -> bool:
        mode_before = self.mode
        if not self.halts.halt(now, b.code, manual=manual):
            return False
        self._recompute(now)
        self.events.append({"ts": now, "event": "halt", **b.as_dict()})
        log.error("risk: HALT on %s value=%s threshold=%s", b.name, b.value, b.threshold)
        doc = self.postmortem_doc(b, mode_before)
        self.postmortem_docs.append(doc)
        if self.p.postmortem_dir is not None:
            try:
                self.postmortems.append(write_postmortem(Path(self.p.postmortem_dir), now, b.name, doc))
            except OSError as e:      # a full disk must not stop the halt itself
                self._drop("postmortem_write_failed")
                log.error("risk: post-mortem not written: %s", e)
        return True

    def _recompute(self, now: int) -> None:
        """Mode and flags from the halt state, commands and the current level breaches."""
        gmodes = [Mode.NORMAL]
        gflags = 0
        reason = TriggerCode.NONE
        imode = {i: Mode.NORMAL for i in self.specs}
        iflags = {i: 0 for i in self.specs}
        ireason = {i: TriggerCode.NONE for i in self.specs}
        for b in sorted(self.breaches, key=lambda x: int(x.action)):
            if b.instrument is not None:
                ireason[b.instrument] = b.code     # the most severe instrument breach wins
        for b in self.breaches:
            if b.action in _MODE_OF_ACTION:
                if b.instrument is None:
                    gmodes.append(_MODE_OF_ACTION[b.action])
                else:
                    imode[b.instrument] = most_restrictive(imode[b.instrument], _MODE_OF_ACTION[b.action])
            elif b.action == Action.PULL:
                if b.instrument is None:
                    gflags |= FLAG_PULL
                else:
                    iflags[b.instrument] |= FLAG_PULL
            elif b.action == Action.ALERT:
                gflags |= FLAG_ALERT
        if self.halts.halted or self.external_halt:
            gmodes.append(Mode.HALT)
        if self.flatten_requested:
            gmodes.append(Mode.FLATTEN)
        if self.manual_pause or now < self.paused_until_ns:
            gflags |= FLAG_PAUSED
        mode = most_restrictive(*gmodes)
        if self.halts.halted:
            reason = self.halts.reason
        elif self.external_halt:
            reason = TriggerCode.WATCHDOG
        else:
            for b in sorted(self.breaches, key=lambda x: -int(x.action)):
                if b.instrument is None and b.action != Action.HALT:
                    reason = b.code
                    break
        if mode != self.mode or reason != self.reason:
            self.mode_changed_ns = now
        self.mode, self.reason, self.global_flags = mode, reason, gflags
        self.inst_mode, self.inst_flags, self.inst_reason = imode, iflags, ireason

    # ------------------------------------------------------------------ outputs
    def control_rows(self, out: np.ndarray | None = None) -> np.ndarray:
        """Fill (or make) CONTROL_ROW rows: row 0 global, row 1+i instrument i.

        ``version`` is left alone (the seqlock table owns it)."""
        n = 1 + max(self.specs) + 1
        if out is None:
            out = np.zeros(n, dtype=CONTROL_ROW)
        elif out.dtype != CONTROL_ROW or len(out) < n:
            raise ValueError(f"control_rows needs {n} CONTROL_ROW rows")
        now_m = self.clock.monotonic_ns()
        scale = self.halts.scale_bp
        g = out[0]
        g["mode"], g["reason"], g["updated_ts"] = int(self.mode), int(self.reason), self.mode_changed_ns
        g["heartbeat_mono"], g["limit_scale_bp"], g["widen_bp"] = now_m, scale, self.p.widen_bp
        g["max_position"] = g["max_order_qty"] = g["position"] = 0
        g["flags"] = self.global_flags
        for i, spec in self.specs.items():
            r = out[1 + i]
            r["mode"] = int(most_restrictive(self.mode, self.inst_mode[i]))
            r["reason"] = int(self.reason or self.inst_reason[i])
            r["updated_ts"] = self.mode_changed_ns
            r["heartbeat_mono"] = now_m
            r["limit_scale_bp"] = scale
            r["max_position"] = scaled(self.max_position(i), scale)
            r["max_order_qty"] = scaled(spec.max_order_qty, scale)
            r["position"] = self.positions[i].position
            r["widen_bp"] = self.p.widen_bp
            r["flags"] = self.global_flags | self.inst_flags[i]
        return out

    def position_state(self) -> dict[str, dict]:
        out = {}
        for i, spec in self.specs.items():
            p = self.positions[i]
            mk = self.market[i]
            out[spec.symbol] = {
                "instrument": i, "position": p.position,
                "avg_entry": float(p.avg_entry) if p.avg_entry is not None else None,
                "mark": float(p.mark) if p.mark is not None else None,
                "unrealized": money(p.unrealized()), "realized": money(p.realized), "fees": p.fees,
                "fills": p.fills, "volume": p.volume, "max_position": self.max_position(i),
                "bid": mk.bid, "ask": mk.ask, "md_status": mk.status.name, "md_seq": mk.md_seq,
            }
        return out

    def postmortem_doc(self, b: Breach, mode_before: Mode) -> dict:
        m = self.metrics
        hs = asdict(self.halts.state())
        hs["reason"] = TriggerCode(hs["reason"]).name
        return {
            "trigger": b.name, "code": int(b.code), "value": b.value, "threshold": b.threshold,
            "instrument": b.instrument, "action": b.action.name,
            "mode_before": mode_before.name, "mode": self.mode.name, "halt": hs,
            "positions": self.position_state(),
            "unrealized_pnl": money(self.positions.unrealized()),
            "realized_pnl_net": money(self.positions.realized_net()),
            "equity": money(self.equity()), "high_water_mark": money(self.hwm),
            "drawdown": m.drawdown, "daily_loss": m.daily_loss, "margin_utilisation": m.margin_utilisation,
            "maintenance_ratio": m.maintenance_ratio,
            "equity_source": self.equity_source, "margin_source": self.margin_source,
            "account": self._account_doc(),
            "last_fills": [f.as_dict() for f in self.positions.last],
            "signals": {self.specs[i].symbol: dict(v) for i, v in self.signals.items()},
            "market": {self.specs[i].symbol: {"bid": mk.bid, "ask": mk.ask, "status": mk.status.name,
                                              "md_seq": mk.md_seq, "stale_s": m.stale_md.get(i, 0.0)}
                       for i, mk in self.market.items()},
            "breaches": [x.as_dict() for x in self.breaches],
            "counters": {"rate_limit_streak": self.counters.rate_limit_streak,
                         "losing_streak": self.counters.losing_streak,
                         "errors_in_window": len(self.counters.errors)},
            "fee_scale": FEE_SCALE,
        }

    def snapshot(self) -> dict:
        """Everything the status line and the exporter show (money in quote units, floats)."""
        m = self.metrics
        eq = self.equity()
        hs = self.halts.state()
        return {
            "mode": self.mode.name, "reason": self.reason.name, "halted": hs.halted,
            "kill": f"HALT:{hs.reason.name}" if hs.halted else "OK",
            "manual_required": hs.manual_required, "resume_at_ns": hs.resume_at_ns,
            "halts_today": hs.halts_today, "limit_scale_bp": hs.scale_bp,
            "paused": bool(self.global_flags & FLAG_PAUSED),
            "pnl": float(self.positions.realized_net() + self.positions.unrealized()) / FEE_SCALE,
            "equity": float(eq) / FEE_SCALE, "drawdown": m.drawdown, "daily_loss": m.daily_loss,
            "daily_pnl": float(eq - self.day_start_equity) / FEE_SCALE,
            "margin_utilisation": m.margin_utilisation, "maintenance_ratio": m.maintenance_ratio,
            "equity_source": self.equity_source, "margin_source": self.margin_source,
            "account": self._account_doc(),
            "fills": sum(p.fills for p in self.positions.by_instrument.values()),
            "positions": {s.symbol: self.positions[i].position for i, s in self.specs.items()},
            "breaches": [b.name for b in self.breaches], "drops": dict(self.drops),
            "duplicates": self.positions.duplicates,
        }


    def _account_doc(self) -> dict | None:
        f = self.account.figures
        return None if f is None else f.as_dict(self.clock.monotonic_ns())


def instruments_from_rows(rows: Iterable, **kw) -> list[InstrumentRisk]:
    """InstrumentRisk for each INSTRUMENT_ROW (same keyword overrides for all)."""
    return [InstrumentRisk.from_instrument_row(r, **kw) for r in rows]
