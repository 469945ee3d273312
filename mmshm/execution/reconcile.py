"""Reconciliation with the venue, and the venue-side dead-man switch.

:func:`reconcile` runs at start-up and after every reconnect of the order session or the
user stream (any event may have been missed while down). It merges, in this order:

1. open orders at the venue: ours are brought up to date (an order we thought pending
   is acked; one we were cancelling is cancelled again); *unknown* orders (not in local
   state: a previous run's, or another tool's) are cancelled and reported;
2. local live orders missing at the venue are queried one by one to learn their fate
   (an order the venue does not know was never accepted: REJECTED);
3. recent fills (``userTrades`` since ``since_ms``) are applied by trade id, so nothing
   missed is lost and nothing already seen is counted twice;
4. final statuses from step 2 are applied after the fills they imply;
5. positions: the venue's figure is the truth; a difference from the sum of our fills
   is reported and (by default) adopted.

:class:`DeadManSwitch` refreshes the venue's countdown cancel-all while the executor is
healthy, so if the executor dies or hangs the venue cancels everything by itself.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from mmshm.execution.orders import LIVE, VenueEvent, WorkingOrders
from mmshm.execution.venue import TradingVenue
from mmshm.records import OrderEventKind as K, OrderStatus as S

log = logging.getLogger("mmshm.execution.reconcile")


@dataclass
class ReconcileReport:
    unknown_canceled: list[str] = field(default_factory=list)    # venue orders we did not know
    unknown_cancel_failed: list[str] = field(default_factory=list)
    recanceled: list[str] = field(default_factory=list)          # were PENDING_CANCEL, still open
    acked: list[str] = field(default_factory=list)               # were PENDING_NEW, found open
    resolved: dict[str, str] = field(default_factory=dict)       # missing locally-live → venue status
    still_pending: list[str] = field(default_factory=list)       # unknown to the venue, request maybe in flight
    fills_added: int = 0
    fills_duplicate: int = 0
    unmatched_trades: int = 0                                    # trades of orders not in local state
    position_diffs: dict[int, tuple[int, int]] = field(default_factory=dict)  # inst → (local, venue)
    positions: dict[int, tuple[int, str]] = field(default_factory=dict)  # inst → (venue lots, entry price)
    records: list = field(default_factory=list)                  # ORDER_EVENTs to publish
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.unknown_cancel_failed


async def reconcile(venue: TradingVenue, working: WorkingOrders, symbols: Sequence[str],
                    symbol_of: Callable[[int], str], *, since_ms: int | None = None,
                    cancel_unknown: bool = True, adopt_positions: bool = True,
                    in_flight_grace_ns: int = 6_000_000_000) -> ReconcileReport:
    """Merge the venue's view into ``working`` (see module doc). ``symbol_of(instrument)``.

    A PENDING_NEW order the venue does not know is only declared REJECTED once its request
    is older than ``in_flight_grace_ns`` (recvWindow + margin): before that the request
    may still be in flight and be executed after our query.
    """
    rep = ReconcileReport()
    open_keys: set[str] = set()
    venue_open = []
    for sym in symbols:
        try:
            venue_open.extend(await venue.open_orders(sym))
        except Exception as exc:  # noqa: BLE001
            rep.errors.append(f"openOrders {sym}: {type(exc).__name__}: {exc}")
            return rep  # without the open orders nothing else can be trusted
    # 1. venue open orders
    for vo in venue_open:
        local = working.get(vo.client_id) if vo.client_id else None
        if local is None and vo.venue_order_id in working.by_venue_id:
            local = working.get(working.by_venue_id[vo.venue_order_id])
        if local is None or local.status not in LIVE:
            if not cancel_unknown:
                rep.unknown_cancel_failed.append(vo.client_id or str(vo.venue_order_id))
                continue
            try:
                await venue.cancel(vo.symbol, vo.client_id or None, vo.venue_order_id or None)
                rep.unknown_canceled.append(vo.client_id or str(vo.venue_order_id))
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "code", 0) in (-2011, -2013):
                    rep.unknown_canceled.append(vo.client_id or str(vo.venue_order_id))
                else:
                    rep.unknown_cancel_failed.append(vo.client_id or str(vo.venue_order_id))
                    rep.errors.append(f"cancel unknown {vo.client_id}: {type(exc).__name__}: {exc}")
            continue
        open_keys.add(local.client_id)
        if local.status == S.PENDING_NEW:
            res = working.apply(VenueEvent(K.ACK, local.client_id, vo.venue_order_id, vo.price, vo.qty,
                                           venue_ts=vo.update_ts, local_ts=time.time_ns()))
            rep.records += res.records
            rep.acked.append(local.client_id)
        elif local.status == S.PENDING_CANCEL:
            if not local.venue_order_id:
                res = working.apply(VenueEvent(K.ACK, local.client_id, vo.venue_order_id, vo.price, vo.qty,
                                               venue_ts=vo.update_ts, local_ts=time.time_ns()))
                rep.records += res.records
            try:
                await venue.cancel(vo.symbol, local.client_id)
                rep.recanceled.append(local.client_id)
            except Exception as exc:  # noqa: BLE001
                rep.errors.append(f"re-cancel {local.client_id}: {type(exc).__name__}: {exc}")
    # 2. local live orders the venue no longer lists
    finals: dict[str, tuple[S, int, int]] = {}
    for o in working.live_orders():
        sym = symbol_of(o.instrument)
        if sym not in symbols or o.client_id in open_keys:
            continue
        try:
            vo = await venue.query(sym, o.client_id)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "code", 0) in (-2011, -2013):
                if o.unacknowledged and time.monotonic_ns() - o.placed_mono < in_flight_grace_ns:
                    rep.still_pending.append(o.client_id)  # may still arrive: decide later
                else:
                    finals[o.client_id] = (S.REJECTED, 0, 0)   # never accepted by the venue
            else:
                rep.errors.append(f"query {o.client_id}: {type(exc).__name__}: {exc}")
            continue
        if vo.venue_order_id and not o.venue_order_id:
            o.venue_order_id = vo.venue_order_id
            working.by_venue_id[vo.venue_order_id] = o.client_id
        if vo.status in LIVE:
            # listed as open now (raced with step 1): treat as open next time round
            if o.status == S.PENDING_NEW:
                rep.records += working.apply(VenueEvent(K.ACK, o.client_id, vo.venue_order_id, vo.price,
                                                        vo.qty, venue_ts=vo.update_ts)).records
            continue
        finals[o.client_id] = (S(vo.status), vo.filled_qty, vo.update_ts)
    # 3. fills
    for sym in symbols:
        try:
            trades = await venue.user_trades(sym, start_time_ms=since_ms) if since_ms is not None \
                else await venue.user_trades(sym)
        except Exception as exc:  # noqa: BLE001
            rep.errors.append(f"userTrades {sym}: {type(exc).__name__}: {exc}")
            continue
        for t in sorted(trades, key=lambda t: t.trade_id):
            cid = working.by_venue_id.get(t.venue_order_id)
            if cid is None:
                rep.unmatched_trades += 1
                continue
            res = working.apply(VenueEvent(K.FILL, cid, t.venue_order_id, fill_px=t.price, fill_qty=t.qty,
                                           fee=t.fee, trade_id=t.trade_id, maker=t.maker,
                                           venue_ts=t.ts, local_ts=time.time_ns()))
            if res.duplicate:
                rep.fills_duplicate += 1
            elif res.records:
                rep.fills_added += 1
                rep.records += res.records
            elif res.illegal:
                rep.errors.append(res.illegal)
    # 4. final statuses
    for cid, (st, filled, ts) in finals.items():
        o = working.get(cid)
        if o is None or o.status not in LIVE:
            continue
        res = working.force_status(cid, st, filled_qty=filled, venue_ts=ts)
        rep.records += res.records
        rep.resolved[cid] = S(st).name
        if res.illegal:
            rep.errors.append(res.illegal)
    # 5. positions
    try:
        wanted = set(symbols)
        for p in await venue.positions():
            if p.symbol not in wanted:
                continue
            rep.positions[p.instrument] = (p.amount, getattr(p, "entry_price", "0"))
            local = working.position.get(p.instrument, 0)
            if local != p.amount:
                rep.position_diffs[p.instrument] = (local, p.amount)
                if adopt_positions:
                    working.position[p.instrument] = p.amount
    except Exception as exc:  # noqa: BLE001
        rep.errors.append(f"positions: {type(exc).__name__}: {exc}")
    if rep.unknown_canceled or rep.position_diffs or rep.errors:
        log.warning("reconciliation found differences", extra={
            "unknown_canceled": rep.unknown_canceled, "position_diffs": rep.position_diffs,
            "errors": rep.errors[-5:]})
    return rep


class DeadManSwitch:
    """Keeps the venue's countdown cancel-all armed while ``healthy()``.

    Every ``refresh_s`` it re-arms ``countdown_ms`` for each symbol. When the executor is
    unhealthy (or dead) the refresh stops and the venue cancels every order when the
    countdown runs out. ``stop(disarm=True)`` on an orderly shutdown (after our own
    cancel-all) sends countdown 0, which turns the timer off.
    """

    def __init__(self, venue: TradingVenue, symbols: Sequence[str], *, countdown_ms: int = 10_000,
                 refresh_s: float = 3.0, healthy: Callable[[], bool] = lambda: True) -> None:
        if refresh_s * 1000 >= countdown_ms:
            raise ValueError("the refresh interval must be shorter than the countdown")
        self.venue = venue
        self.symbols = list(symbols)
        self.countdown_ms = countdown_ms
        self.refresh_s = refresh_s
        self.healthy = healthy
        self.armed_mono = 0
        self.refreshes = 0
        self.failures = 0
        self.skipped = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def refresh_once(self) -> bool:
        ok = True
        for sym in self.symbols:
            try:
                await self.venue.countdown_cancel_all(sym, self.countdown_ms)
            except Exception as exc:  # noqa: BLE001
                ok = False
                self.failures += 1
                log.warning("dead-man refresh failed", extra={"symbol": sym, "err": str(exc)})
        if ok:
            self.armed_mono = time.monotonic_ns()
            self.refreshes += 1
        return ok

    async def run(self) -> None:
        while not self._stop.is_set():
            if self.healthy():
                await self.refresh_once()
            else:
                self.skipped += 1
            try:
                await asyncio.wait_for(self._stop.wait(), self.refresh_s)
            except asyncio.TimeoutError:
                pass

    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self._task

    async def stop(self, disarm: bool = True) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        if disarm:
            for sym in self.symbols:
                try:
                    await self.venue.countdown_cancel_all(sym, 0)
                except Exception as exc:  # noqa: BLE001
                    log.warning("dead-man disarm failed", extra={"symbol": sym, "err": str(exc)})
