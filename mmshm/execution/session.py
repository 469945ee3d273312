"""One trading session with one venue: what ``procs/executor.py`` drives.

It ties the library parts together so the process stays thin:

- ``on_targets(row, mode)``: diff the quote targets (TARGET_ROW) against our working
  orders and send the actions (cancels, then amends, then places; concurrently over the
  WebSocket API, batched over REST when the session is down), respecting the risk mode;
- ``on_user_event(ev)``: venue reports (user-data stream) into the state machine;
- ``tick()``: pending-state timeouts (query, then cancel-all), reconciliation after a
  reconnect, dead-man health;
- ``cancel_all()``, ``reconcile()``, ``start()``, ``stop()``.

Every ORDER_EVENT the state machine produces is handed to ``publish`` (the orders
gated ring's ``try_publish`` in the process; a list in tests). A refused publish is
counted: the ring is full, and the process must treat that as a halt condition.

Modes: observe computes and counts the actions and sends nothing; shadow runs the whole
session against :class:`~mmshm.execution.shadow.ShadowVenue` (our orders matched locally
against the live book the process feeds it); paper, testnet and live use the real adapter.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import numpy as np

from mmshm._native.execplan import TooManyOrders, plan as _native_plan
from mmshm._native.orderpath import OrderPath
from mmshm.deferred import Deferred
from mmshm.execution.cancel_all import CancelAllReport, cancel_all
from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.diff import Actions, Amend, Cancel, Place, diff
from mmshm.execution.orders import (FLAG_POST_ONLY, FLAG_REDUCE_ONLY, ActionKind, VenueEvent,
                                    WorkingOrders)
from mmshm.execution.reconcile import DeadManSwitch, ReconcileReport, reconcile
from mmshm.records import ORDER_EVENT, Mode, OrderEventKind as K, OrderStatus as S, Side
from mmshm.execution.ratelimit import cost_of
from mmshm.venues.binance_usdm.trading import (AccountUpdate, BinanceError, BinanceTrading, BinanceWsApi,
                                               ExchangeEnv, InstrumentIndex, NotSent, OrderRequest,
                                               OrderUpdate, StreamStatus, UnknownOrder, UnknownStatus,
                                               UserStream, VenueOrder, WsOrderBatch, write_frames)

log = logging.getLogger("mmshm.execution.session")

#: ORDER_EVENT.reason for a request refused locally (rate budget, breaker, no session):
#: positive, so it can never be confused with a venue code (those are negative).
REASON_NOT_SENT = 1


@dataclass
class SessionConfig:
    px_tol: int = 0                 # ticks
    qty_tol: int = 0                # lots
    tol_bp: float = 0.0             # price tolerance, bp of the price (see diff.level_tolerance)
    tol_frac: float = 0.0           # price tolerance, fraction of the level's distance from the mid
    requote_rate: float = 0.0       # places+amends per second per instrument (0 = unlimited)
    requote_burst: int = 0          # token-bucket depth of that budget
    prefer_amend: bool = True
    post_only: bool = True
    pending_timeout_ns: int = 2_000_000_000
    deadman_countdown_ms: int = 10_000
    deadman_refresh_s: float = 3.0
    deadman: bool = True
    cancel_all_deadline_s: float = 10.0
    cancel_retry_backoff_s: float = 0.05
    reconcile_on_start: bool = True
    latency_samples: int = 100_000


class ExecutionSession:
    def __init__(self, trading: BinanceTrading | None, instruments: InstrumentIndex, ids: ClientIdGenerator,
                 publish: Callable[[np.void], bool], *, mode: ExchangeEnv = ExchangeEnv.PAPER,
                 user_stream: UserStream | None = None, config: SessionConfig | None = None) -> None:
        self.mode = ExchangeEnv(mode)
        if self.mode.sends_orders and trading is None:
            raise ValueError(f"mode {self.mode.value} needs a venue adapter")
        if self.mode == ExchangeEnv.SHADOW:
            from mmshm.execution.shadow import ShadowVenue
            if not isinstance(trading, ShadowVenue):
                trading = ShadowVenue(instruments)   # never the real adapter: shadow sends nothing
            trading.on_event = self.on_user_event
        elif self.mode == ExchangeEnv.OBSERVE:
            trading = None
        self.trading = trading
        self.instruments = instruments
        self.ids = ids
        self.publish = publish
        self.cfg = config or SessionConfig()
        self.working = WorkingOrders(self.cfg.pending_timeout_ns)
        self.user_stream = user_stream if self.mode.sends_orders else None
        self.shadow = trading if self.mode == ExchangeEnv.SHADOW else None
        self.deadman: DeadManSwitch | None = None
        self._tasks: list[asyncio.Task] = []
        self._need_reconcile = False
        self._flatten_ids: set[str] = set()    # FLATTEN's reduce-only market orders (never quoted/diffed)
        self.latency_ns: deque[int] = deque(maxlen=self.cfg.latency_samples)  # target seen → socket
        self.venue_positions: dict[int, int] = {}
        self.account = None                    # mmshm.execution.account.AccountWriter (set by the process)
        self.last_reconcile: ReconcileReport | None = None
        self.last_cancel_all: CancelAllReport | None = None
        self.counters = {"publish_refused": 0, "places": 0, "amends": 0, "cancels": 0, "not_sent": 0,
                         "unknown_status": 0, "rejects": 0, "would_send": 0, "reconciles": 0,
                         "cancel_alls": 0, "illegal": 0, "flattens": 0, "requote_deferred": 0,
                         "plan_fallbacks": 0}
        self._requote_tokens: dict[int, float] = {}
        self._requote_at: dict[int, int] = {}
        #: the plan (and, over the WebSocket API, budget and frames) of a target change in C
        self._path = OrderPath()
        #: the venue adapter takes the native order path's frames (the real one: not shadow)
        self._native_ws = isinstance(self.trading, BinanceTrading)

    @property
    def symbols(self) -> list[str]:
        return self.instruments.symbols

    def _symbol(self, instrument: int) -> str:
        return self.instruments.spec(instrument).symbol

    def _emit(self, records: Sequence[np.void]) -> None:
        for r in records:
            if not self.publish(r):
                self.counters["publish_refused"] += 1

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect, reconcile (cancelling unknown orders), start the stream and the dead-man switch."""
        if self.trading is None:
            return
        await self.trading.start()
        if self.cfg.reconcile_on_start:
            await self.reconcile()
        if self.user_stream is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self.user_stream.run(self.on_user_event)))
        if self.cfg.deadman:
            self.deadman = DeadManSwitch(self.trading, self.symbols, countdown_ms=self.cfg.deadman_countdown_ms,
                                         refresh_s=self.cfg.deadman_refresh_s, healthy=self.healthy)
            self.deadman.start()

    async def stop(self, cancel: bool = True) -> CancelAllReport | None:
        """Orderly shutdown: cancel-all (verified), disarm the dead-man switch, close."""
        rep = None
        if self.trading is not None:
            if cancel:
                rep = await self.cancel_all()
            if self.deadman is not None:
                await self.deadman.stop(disarm=bool(rep and rep.ok))
        if self.user_stream is not None:
            self.user_stream.stop()
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001
                t.cancel()
        self._tasks.clear()
        if self.trading is not None:
            await self.trading.close()
        return rep

    def healthy(self) -> bool:
        """False stops the dead-man refresh (the venue then cancels by itself)."""
        return self.counters["publish_refused"] == 0

    # ------------------------------------------------------------------ targets
    def plan(self, row: np.void, mode: Mode = Mode.NORMAL, control: np.void | None = None) -> Actions:
        """The actions for one TARGET_ROW under the risk ``mode`` (nothing is sent).

        ``control`` is the instrument's CONTROL_ROW: its ``max_order_qty`` and
        ``max_position`` cap every order and the worst-case position if every working order
        filled. Risk writes them as the EFFECTIVE limits (``limit_scale_bp`` already applied,
        docs/CONTRACTS.md), so they are used as they are. A zero limit allows no new exposure.
        Without ``control`` no limits are applied (library use; the process always passes it).

        Runs in C (``mmshm._native.execplan``): this is on the path from "target seen" to
        "request on the socket". :meth:`plan_py` states the same plan in Python; the tests
        hold the two to identical actions. More live orders on a side than the native
        planner holds (128) fall back to it, counted in ``plan_fallbacks``.
        """
        try:
            return _native_plan(row, self.working.books, self.working.position, self._flatten_ids, int(mode),
                                control, self.cfg.px_tol, self.cfg.qty_tol, self.cfg.prefer_amend,
                                self.cfg.tol_bp, self.cfg.tol_frac)
        except TooManyOrders:
            self.counters["plan_fallbacks"] += 1
            return self.plan_py(row, mode, control)

    def plan_py(self, row: np.void, mode: Mode = Mode.NORMAL, control: np.void | None = None) -> Actions:
        """:meth:`plan` in Python: the reference the native planner is tested against (and
        its fallback); the module doc of :mod:`mmshm.execution.diff` says why each rule."""
        inst = int(row["instrument"])
        # an order with an amend in flight is planned at the price/qty it is moving to, so a
        # new order is never placed beside it for the same level
        working = [o if o.pending_amend is None else
                   dataclasses.replace(o, price=o.pending_amend[0], qty=o.pending_amend[1])
                   for o in self.working.live_orders(inst) if o.client_id not in self._flatten_ids]
        if mode >= Mode.HALT:
            r = row.copy()
            r["flags"] = int(r["flags"]) | 1
            return diff(r, working)
        acts = diff(row, working, self.cfg.px_tol, self.cfg.qty_tol, self.cfg.prefer_amend,
                    self.cfg.tol_bp, self.cfg.tol_frac)
        if mode == Mode.REDUCE_ONLY:
            pos = self.working.position.get(inst, 0)
            grow = Side.BUY if pos >= 0 else Side.SELL
            acts.places = [p for p in acts.places if p.side != grow]
            acts.amends = [a for a in acts.amends if a.side != grow]
            acts.cancels += [Cancel(o.client_id, inst, o.side) for o in working
                             if o.side == grow and all(c.client_id != o.client_id for c in acts.cancels)]
        if control is not None:
            self._apply_limits_py(acts, inst, working, int(control["max_order_qty"]),
                               int(control["max_position"]))
        return acts

    def _apply_limits_py(self, acts: Actions, inst: int, working: list, max_order_qty: int,
                      max_position: int) -> None:
        """Clip sizes to ``max_order_qty``; drop places, then cancel orders, worst price
        first, until the position if everything on a side filled stays within ``max_position``."""
        by_id = {o.client_id: o for o in working}
        amends = []
        for a in acts.amends:
            o = by_id[a.client_id]
            rem = min(a.qty - o.filled_qty, max_order_qty)
            if rem > 0:
                if a.price == o.price and o.filled_qty + rem == o.qty:
                    continue   # clipped back to what the order already is: the venue rejects it (-5027)
                amends.append(dataclasses.replace(a, qty=o.filled_qty + rem))
            else:
                acts.cancels.append(Cancel(a.client_id, inst, a.side))
        acts.amends = amends
        acts.places = [dataclasses.replace(p, qty=min(p.qty, max_order_qty)) for p in acts.places
                       if min(p.qty, max_order_qty) > 0]
        pos = self.working.position.get(inst, 0)
        for side, exposure0 in ((Side.BUY, pos), (Side.SELL, -pos)):
            worse = (lambda px: px) if side == Side.SELL else (lambda px: -px)   # larger = worse price
            cancelled = {c.client_id for c in acts.cancels}
            new_qty = {a.client_id: a.qty for a in acts.amends}
            resting = [o for o in working if o.side == side and o.client_id not in cancelled]
            exposure = exposure0 + sum(new_qty.get(o.client_id, o.qty) - o.filled_qty for o in resting)
            places = sorted((p for p in acts.places if p.side == side), key=lambda p: worse(p.price))
            exposure += sum(p.qty for p in places)
            while exposure > max_position and places:
                drop = places.pop()                      # the worst-priced new order first
                acts.places.remove(drop)
                exposure -= drop.qty
            for o in sorted(resting, key=lambda o: worse(o.price), reverse=True):
                if exposure <= max_position:
                    break
                acts.cancels.append(Cancel(o.client_id, inst, side))
                acts.amends = [a for a in acts.amends if a.client_id != o.client_id]
                exposure -= new_qty.get(o.client_id, o.qty) - o.filled_qty

    async def on_targets(self, row: np.void, mode: Mode = Mode.NORMAL, seen_mono: int = 0,
                         control: np.void | None = None) -> Actions:
        """Bring the instrument's orders to ``row`` within ``mode`` and the ``control`` row's
        limits (see :meth:`plan`); returns the actions taken, once every answer is in."""
        acts, answers = self.send_targets(row, mode, seen_mono, control)
        if answers is not None:
            await answers
        return acts

    def send_targets(self, row: np.void, mode: Mode = Mode.NORMAL, seen_mono: int = 0,
                     control: np.void | None = None) -> tuple[Actions, Awaitable[None] | None]:
        """:meth:`on_targets` up to the socket: plan, then over the WebSocket API frame every
        request in C and write them all in one socket write (cancels, then amends, then
        places), then register each order change in the state machine and publish its
        ORDER_EVENT (see :meth:`_send_ws_batch`); over REST, register then send each.
        Returns the actions and an awaitable that takes in the answers (None when nothing
        was sent).

        Why split: nothing that is not this change runs between "target seen" and the last
        frame on the socket (no event-loop turn per request), and the working orders show
        every change before this returns, so the next plan can never miss one. Requests
        that cannot be written now (REST while the WebSocket session is down) start when
        the awaitable is awaited; one never awaited (a halt cancelled its task first) leaves
        its orders pending, settled by the pending-timeout query and the cancel-all.
        """
        seen_mono = seen_mono or time.monotonic_ns()
        path, cfg = self._path, self.cfg
        try:
            n = path.plan(row, self.working.books, self.working.position, self._flatten_ids, int(mode), control,
                          cfg.px_tol, cfg.qty_tol, cfg.prefer_amend, cfg.tol_bp, cfg.tol_frac)
        except TooManyOrders:
            self.counters["plan_fallbacks"] += 1
            acts = self.plan_py(row, mode, control)
            if acts and cfg.requote_rate > 0 and mode < Mode.HALT and (acts.places or acts.amends):
                self._trim_requotes(acts, self._requote_allowance(int(row["instrument"]),
                                                                  len(acts.places) + len(acts.amends), seen_mono))
            return self._send_actions(acts, mode, seen_mono)
        if not n:
            return Actions(), None
        if cfg.requote_rate > 0 and mode < Mode.HALT and (path.n_place or path.n_amend):
            path.keep_nearest(self._requote_allowance(path.instrument, path.n_place + path.n_amend, seen_mono))
            if not (path.n_cancel or path.n_amend or path.n_place):
                return Actions(), None
        api = self.trading.ws_session() if self._native_ws else None
        if api is not None:
            sent = self._send_native(path, api, mode, seen_mono)
            if sent is not None:
                return sent
        return self._send_actions(path.actions(), mode, seen_mono)

    def _send_native(self, path: OrderPath, api: BinanceWsApi, mode: Mode,
                     seen_mono: int) -> tuple[Actions, Awaitable[None] | None] | None:
        """The planned change over the WebSocket API by the native order path: budget debits
        and every frame in C (``OrderPath.frames``), ONE socket write, THEN the Python side:
        the actions, the batch's answers, registration and ORDER_EVENTs (as
        :meth:`_send_ws_batch`, whose docstring says why the write comes first). None when
        the change must take the general path (nothing was debited or sent then)."""
        reduce_only = mode == Mode.REDUCE_ONLY
        ids = [self.ids.next(path.md_seq) for _ in range(path.n_place)] if path.n_place else []
        data = path.frames(api, [cid for cid, _ in ids], self.cfg.post_only, reduce_only)
        if data is None:
            return None
        ws = api._ws
        write_mono = time.monotonic_ns()
        why = write_frames(ws, data) if data else None   # (b"": the budget refused every request)
        sent_mono = time.monotonic_ns()
        # --- after the write: nothing below is on the latency path
        acts = path.actions()
        outcomes = path.outcomes()
        n_c, n_a = len(acts.cancels), len(acts.amends)
        slots: list = [self._slot(method, rid) for method, rid in zip(
            ["order.cancel"] * n_c + ["order.modify"] * n_a + ["order.place"] * len(acts.places), outcomes)]
        batch = WsOrderBatch.written(api, ws, slots, write_mono, sent_mono, why)
        if why is None:
            self.trading.counters["via_ws"] += sum(1 for rid in outcomes if rid > 0)
        elif not api.connected:
            # nothing written and the session is gone: the per-request way (REST) with fresh ids
            return self._send_actions(acts, mode, seen_mono)
        jobs = self._register_batch(batch, acts, [(n_c + n_a + k, cid, num) for k, (cid, num) in enumerate(ids)],
                                    seen_mono, reduce_only)
        return self._jobs_result(acts, jobs)

    @staticmethod
    def _slot(method: str, rid: int) -> tuple | NotSent:
        """A WsOrderBatch slot from an ``OrderPath`` outcome: sent (request id) or refused
        by the rate budget (minus the ns to wait), as ``WsOrderBatch._admit`` leaves it."""
        if rid > 0:
            return (method, str(rid))
        cost = cost_of(method)
        return NotSent(0, f"rate budget: rate budget refuses weight={cost.weight} orders={cost.orders}", 0,
                       -rid / 1e9)

    def _send_actions(self, acts: Actions, mode: Mode, seen_mono: int) -> tuple[Actions, Awaitable[None] | None]:
        """The general path of planned ``acts``: counted only (observe), one ``WsOrderBatch``
        over the WebSocket API, or per request (REST; the API when a batch is refused)."""
        if not acts:
            return acts, None
        if self.trading is None:
            self.counters["would_send"] += acts.n_orders
            return acts, None
        reduce_only = mode == Mode.REDUCE_ONLY
        batch = self.trading.ws_batch()
        jobs = None if batch is None else self._send_ws_batch(batch, acts, seen_mono, reduce_only)
        if jobs is None:                             # REST, or the session died under the write
            jobs = [self._cancel_now(c) for c in acts.cancels]
            jobs += [self._amend_now(a, seen_mono) for a in acts.amends]
            if self.trading.ws.connected or len(acts.places) <= 1:
                jobs += [self._place_now(p, seen_mono, reduce_only) for p in acts.places]
            else:
                for i in range(0, len(acts.places), 5):
                    jobs.append(self._place_batch(acts.places[i:i + 5], seen_mono, reduce_only))
        return self._jobs_result(acts, jobs)

    @staticmethod
    def _jobs_result(acts: Actions, jobs: list) -> tuple[Actions, Awaitable[None] | None]:
        jobs = [j for j in jobs if j is not None]
        if not jobs:
            return acts, None
        return acts, (jobs[0] if len(jobs) == 1 else Deferred(_all_answers, jobs))

    def _send_ws_batch(self, batch: WsOrderBatch, acts: Actions, seen_mono: int,
                       reduce_only: bool) -> list[Awaitable[None] | None] | None:
        """Every request of ``acts`` framed and written in ONE socket write, THEN registered
        in the state machine (ORDER_EVENTs published) and given its answer handling.

        Why the write comes first: it is the latency that counts, and nothing can observe
        the order between the two (the answers and the venue's reports are read by the
        event loop, which does not run before this returns). A process killed in between
        leaves an order the journal never saw: start-up reconciliation cancels it and
        reports it (unknown venue order), as for any order of a crashed run.
        None: nothing was written (the connection closed meanwhile); the caller then sends
        the same actions the per-request way (REST when the session is down)."""
        cancels = [(c, batch.cancel(c.instrument, c.client_id)) for c in acts.cancels]
        amends = [(a, batch.modify(a.instrument, a.client_id, a.side, a.price, a.qty))
                  for a in acts.amends if self.working.get(a.client_id) is not None]
        places = []
        for p in acts.places:
            cid, num = self.ids.next(p.md_seq)
            req = OrderRequest(self._symbol(p.instrument), p.side, p.price, p.qty, cid,
                               post_only=self.cfg.post_only, reduce_only=reduce_only)
            places.append((batch.place(p.instrument, req), cid, num))
        if batch.write():
            self.trading.counters["via_ws"] += len(batch.frames)
        elif not self.trading.ws.connected:
            return None                             # (else every request is refused: not sent)
        acts = dataclasses.replace(acts, amends=[a for a, _ in amends])
        return self._register_batch(batch, acts, places, seen_mono, reduce_only,
                                    [slot for _, slot in cancels] + [slot for _, slot in amends])

    def _register_batch(self, batch: WsOrderBatch, acts: Actions, places: list[tuple[int, str, int]],
                        seen_mono: int, reduce_only: bool,
                        slots: list[int] | None = None) -> list[Awaitable[None] | None]:
        """After a batch's write: each order change registered in the state machine (its
        ORDER_EVENT published) and given its answer handling. ``places``: (slot, client id,
        numeric id) per place; ``slots``: the cancels' then the amends' slots (default: in
        order from 0)."""
        jobs: list[Awaitable[None] | None] = []
        # the records carry the time the write started (0: nothing written; a stamp after it
        # returns moves later whenever the venue it wakes preempts us inside the syscall)
        sent = batch.write_mono if batch.sent_mono else 0
        slots = slots if slots is not None else list(range(len(acts.cancels) + len(acts.amends)))
        for c, slot in zip(acts.cancels, slots):
            self._register_cancel(c, sent)
            jobs.append(self._cancel_outcome(c, batch.outcome(slot)))
        for a, slot in zip(acts.amends, slots[len(acts.cancels):]):
            self._register_amend(a, sent)
            jobs.append(self._amend_outcome(a, batch.outcome(slot), seen_mono))
        for p, (slot, cid, num) in zip(acts.places, places):
            req = OrderRequest(self._symbol(p.instrument), p.side, p.price, p.qty, cid,
                               post_only=self.cfg.post_only, reduce_only=reduce_only)
            self._register_place(p, req, num, sent)
            jobs.append(self._place_outcome(req, batch.outcome(slot), seen_mono))
        return jobs

    def _requote_allowance(self, inst: int, want: int, now_mono: int) -> int:
        """How many of ``want`` places + amends the instrument's requote budget lets go now
        (a token bucket; cancels always go: they only reduce exposure). Over budget, the
        caller keeps the levels nearest the touch (``OrderPath.keep_nearest`` /
        :meth:`_trim_requotes`) and the rest wait for the next target row (the diff
        recomputes them). Why: quotes that chase every tick spend the venue's order count
        (Binance: 300 per 10 s per account) for almost no change in fill probability, and
        venues penalise such churn."""
        rate, burst = self.cfg.requote_rate, float(max(1, self.cfg.requote_burst))
        last = self._requote_at.get(inst)
        tokens = burst if last is None else min(burst, self._requote_tokens[inst] + (now_mono - last) * 1e-9 * rate)
        self._requote_at[inst] = now_mono
        if want <= tokens:
            self._requote_tokens[inst] = tokens - want
            return want
        allowed = int(tokens)
        if allowed < want:
            self.counters["requote_deferred"] += want - allowed
        self._requote_tokens[inst] = tokens - allowed
        return allowed

    @staticmethod
    def _trim_requotes(acts: Actions, allowed: int) -> None:
        """Keep ``allowed`` of the places + amends, nearest the touch first (ranked within each
        side by distance from that side's best target): ``OrderPath.keep_nearest`` in Python,
        for the Python plan, and the reference the tests hold the native one to."""
        if allowed >= len(acts.places) + len(acts.amends):
            return
        items = [(a.price if a.side == Side.SELL else -a.price, 0, a) for a in acts.amends]
        items += [(p.price if p.side == Side.SELL else -p.price, 1, p) for p in acts.places]
        best = {}
        for key, _, it in items:
            best[it.side] = min(best.get(it.side, key), key)
        items.sort(key=lambda t: t[0] - best[t[2].side])
        keep = {id(it) for _, _, it in items[:max(0, allowed)]}
        acts.amends = [a for a in acts.amends if id(a) in keep]
        acts.places = [p for p in acts.places if id(p) in keep]

    def flatten_in_flight(self, instrument: int) -> bool:
        """A FLATTEN order of ``instrument`` is still live (not filled, expired or rejected yet)."""
        live = False
        for cid in list(self._flatten_ids):
            o = self.working.get(cid)
            if o is None or not o.is_live:
                self._flatten_ids.discard(cid)
            elif o.instrument == instrument:
                live = True
        return live

    async def flatten(self, instrument: int, max_order_qty: int = 0, ref_price: int = 0) -> int:
        """FLATTEN: close the position with one reduce-only MARKET order of at most
        ``max_order_qty`` lots (0 = the instrument's maximum order size).

        Call it repeatedly (the executor does, every loop while in FLATTEN): it sends nothing
        while a previous FLATTEN order is live or the position is flat, so each call sends at
        most one order and a large position is closed in max-order-qty slices. The position
        comes from our fills (adopted from the venue at reconciliation). Returns the lots sent.
        Quoting orders are not touched here: the caller cancels them first (cancel-all).
        Shadow and observe send nothing (there is no venue position to close).
        ``ref_price`` (ticks) is only recorded: a market order has no limit price, so the
        ORDER_EVENT carries the reference price it was sent at (the process passes the last
        target's touch; 1 tick when none is known).
        """
        if self.trading is None or self.shadow is not None:
            return 0
        pos = self.working.position.get(instrument, 0)
        if pos == 0 or self.flatten_in_flight(instrument):
            return 0
        spec = self.instruments.spec(instrument)
        cap = max_order_qty if max_order_qty > 0 else (int(spec.max_qty) or abs(pos))
        qty = min(abs(pos), cap)
        side = Side.SELL if pos > 0 else Side.BUY
        cid, num = self.ids.next(0)
        self._emit([self.working.new_sent(client_id=cid, cid_num=num, instrument=instrument, side=side,
                                          price=max(1, ref_price), qty=qty, md_seq=0, flags=FLAG_REDUCE_ONLY)])
        self._flatten_ids.add(cid)
        self.counters["flattens"] += 1
        self.counters["places"] += 1
        req = OrderRequest(self._symbol(instrument), side, 0, qty, cid, post_only=False, reduce_only=True,
                           market=True)
        try:
            res: VenueOrder | BaseException = await self.trading.place(req)
        except BinanceError as exc:
            res = exc
        self._on_new_result(req, res, 0)
        log.warning("flatten order sent", extra={"instrument": instrument, "side": side.name, "qty": qty,
                                                 "position": pos, "client_id": cid})
        return qty

    def _latency(self, seen_mono: int, sent_mono: int) -> None:
        if sent_mono and seen_mono and sent_mono >= seen_mono:
            self.latency_ns.append(sent_mono - seen_mono)

    def _new_order(self, p: Place, reduce_only: bool) -> OrderRequest:
        cid, num = self.ids.next(p.md_seq)
        req = OrderRequest(self._symbol(p.instrument), p.side, p.price, p.qty, cid,
                           post_only=self.cfg.post_only, reduce_only=reduce_only)
        self._register_place(p, req, num)
        return req

    def _register_place(self, p: Place, req: OrderRequest, cid_num: int, sent_mono: int = 0) -> None:
        flags = (FLAG_POST_ONLY if req.post_only else 0) | (FLAG_REDUCE_ONLY if req.reduce_only else 0)
        self._emit([self.working.new_sent(client_id=req.client_id, cid_num=cid_num, instrument=p.instrument,
                                          side=p.side, price=p.price, qty=p.qty, md_seq=p.md_seq, flags=flags,
                                          sent_mono=sent_mono)])
        self.counters["places"] += 1

    def _on_new_result(self, req: OrderRequest, res: VenueOrder | BaseException, seen_mono: int) -> None:
        cid = req.client_id
        if isinstance(res, VenueOrder):
            self.working.set_sent_mono(cid, res.sent_mono)
            self._latency(seen_mono, res.sent_mono)
            kind = {S.FILLED: None, S.PARTIALLY_FILLED: None, S.CANCELED: K.CANCELED,
                    S.EXPIRED: K.EXPIRED}.get(res.status, K.ACK)
            # a fill in the answer is left to the stream / userTrades (they carry trade ids)
            self._emit(self.working.apply(res.to_event(kind or K.ACK)).records)
        elif isinstance(res, BinanceError):
            self._refused(cid, res)
        else:
            raise res

    def _place_now(self, p: Place, seen_mono: int, reduce_only: bool) -> Awaitable[None] | None:
        """Register and send one new order; the answer's handling, or None if nothing was sent."""
        req = self._new_order(p, reduce_only)
        return self._place_outcome(req, _sent_or_refused(self.trading.place_now, req), seen_mono)

    def _place_outcome(self, req: OrderRequest, sent: Awaitable[VenueOrder] | BinanceError,
                       seen_mono: int) -> Awaitable[None] | None:
        if isinstance(sent, BinanceError):
            self._on_new_result(req, sent, seen_mono)
            return None
        return Deferred(self._place_answer, req, sent, seen_mono)

    async def _place_answer(self, req: OrderRequest, answer: Awaitable[VenueOrder], seen_mono: int) -> None:
        try:
            res: VenueOrder | BaseException = await answer
        except BinanceError as exc:
            res = exc
        self._on_new_result(req, res, seen_mono)

    def _place_batch(self, places: list[Place], seen_mono: int, reduce_only: bool) -> Awaitable[None]:
        """Register now; send as one REST batch when awaited (the WebSocket API has no batch)."""
        reqs = [self._new_order(p, reduce_only) for p in places]
        return Deferred(self._place_batch_answers, reqs, seen_mono)

    async def _place_batch_answers(self, reqs: list[OrderRequest], seen_mono: int) -> None:
        try:
            results: list = await self.trading.place_batch(reqs)
        except BinanceError as exc:
            results = [exc] * len(reqs)
        for req, res in zip(reqs, results):
            self._on_new_result(req, res, seen_mono)

    def _amend_now(self, a: Amend, seen_mono: int) -> Awaitable[None] | None:
        """Register and send one amend; the answer's handling, or None if nothing was sent."""
        if self.working.get(a.client_id) is None:
            return None
        self._register_amend(a)
        sent = _sent_or_refused(self.trading.modify_now, self._symbol(a.instrument), a.client_id,
                                a.side, a.price, a.qty)
        return self._amend_outcome(a, sent, seen_mono)

    def _register_amend(self, a: Amend, sent_mono: int = 0) -> None:
        sent = self.working.amend_sent(a.client_id, a.price, a.qty, sent_mono)
        for rec in sent.records:
            rec["md_seq"] = a.md_seq     # the new price's market data (the journal attributes amends by it)
        self._emit(sent.records)
        self.counters["amends"] += 1

    def _amend_outcome(self, a: Amend, sent: Awaitable[VenueOrder] | BinanceError,
                       seen_mono: int) -> Awaitable[None] | None:
        if isinstance(sent, BinanceError):
            self._refused(a.client_id, sent)
            return None
        return Deferred(self._amend_answer, a, sent, seen_mono)

    async def _amend_answer(self, a: Amend, answer: Awaitable[VenueOrder], seen_mono: int) -> None:
        try:
            res = await answer
        except BinanceError as exc:
            self._refused(a.client_id, exc)
        else:
            self.working.set_sent_mono(a.client_id, res.sent_mono)
            self._latency(seen_mono, res.sent_mono)
            self._emit(self.working.apply(res.to_event(K.AMENDED)).records)

    def _refused(self, cid: str, exc: BinanceError) -> None:
        """A place or amend the venue refused or that was never sent: a REJECT (the order
        rejected, or an amend's order as it was). An unknown outcome may have executed: it
        stays pending and the pending timeout queries it."""
        if isinstance(exc, UnknownStatus):
            self.counters["unknown_status"] += 1
            return
        self.counters["not_sent" if isinstance(exc, NotSent) else "rejects"] += 1
        self._emit(self.working.apply(VenueEvent(K.REJECT, cid, reason=_reject_reason(exc),
                                                 local_ts=time.time_ns())).records)

    def _cancel_now(self, c: Cancel) -> Awaitable[None] | None:
        """Register and send one cancel; the answer's handling, or None if nothing was sent."""
        self._register_cancel(c)
        return self._cancel_outcome(c, _sent_or_refused(self.trading.cancel_now, self._symbol(c.instrument),
                                                        c.client_id))

    def _register_cancel(self, c: Cancel, sent_mono: int = 0) -> None:
        self._emit(self.working.cancel_sent(c.client_id, sent_mono).records)
        self.counters["cancels"] += 1

    def _cancel_outcome(self, c: Cancel, sent: Awaitable[VenueOrder] | BinanceError) -> Awaitable[None] | None:
        if isinstance(sent, BinanceError):
            self._cancel_failed(c, sent)
            return None
        return Deferred(self._cancel_answer, c, sent)

    async def _cancel_answer(self, c: Cancel, answer: Awaitable[VenueOrder]) -> None:
        try:
            res = await answer
        except BinanceError as exc:
            self._cancel_failed(c, exc)
        else:
            self.working.set_sent_mono(c.client_id, res.sent_mono)
            self._emit(self.working.apply(res.to_event(K.CANCELED)).records)

    def _cancel_failed(self, c: Cancel, exc: BinanceError) -> None:
        if isinstance(exc, UnknownOrder):
            self._emit(self.working.apply(VenueEvent(K.CANCEL_REJECT, c.client_id, reason=exc.code,
                                                     local_ts=time.time_ns())).records)
            self._settle_unknown(c.client_id)     # a place that never arrived: final after the grace
        elif isinstance(exc, UnknownStatus):
            self.counters["unknown_status"] += 1
        else:
            self._emit(self.working.apply(VenueEvent(K.CANCEL_REJECT, c.client_id, reason=_reject_reason(exc),
                                                     local_ts=time.time_ns())).records)

    # ------------------------------------------------------------------ venue reports
    def on_user_event(self, ev: object) -> None:
        if isinstance(ev, OrderUpdate):
            vev = ev.to_event()
            if vev is None:
                return
            out = self.working.apply(vev)
            if out.illegal:
                self.counters["illegal"] += 1
                log.error("illegal order transition", extra={"detail": out.illegal})
            self._emit(out.records)
        elif isinstance(ev, AccountUpdate):
            for p in ev.positions:
                self.venue_positions[p.instrument] = p.amount
            if self.account is not None:
                self.account.on_account_update(ev)   # never raises: bad input is a counted drop
        elif isinstance(ev, StreamStatus):
            if ev.connected and ev.reconnect:
                self._need_reconcile = True

    # ------------------------------------------------------------------ housekeeping
    async def tick(self) -> None:
        """Timeouts (query, then cancel-all) and a pending reconciliation. Call every ~100 ms."""
        if self.trading is None:
            return
        if self._need_reconcile:
            self._need_reconcile = False
            await self.reconcile()
        if not self.trading.ws.connected and self.trading.prefer_ws:
            if await self.trading.ensure_ws():
                await self.reconcile()            # order-entry session came back
        cancel_insts: set[int] = set()
        for act in self.working.check_timeouts():
            if act.kind == ActionKind.QUERY:
                self.working.mark_queried(act.client_id)
                await self._query(act.client_id, act.instrument)
            else:
                cancel_insts.add(act.instrument)
        if cancel_insts:
            await self.cancel_all([self._symbol(i) for i in sorted(cancel_insts)])
            # restart the clocks: one cancel-all per timeout period, not one per tick
            for o in self.working.live_orders():
                if o.is_pending and o.instrument in cancel_insts:
                    self.working.mark_queried(o.client_id)

    async def _query(self, cid: str, instrument: int) -> None:
        try:
            vo = await self.trading.query(self._symbol(instrument), cid)
        except UnknownOrder:
            self._settle_unknown(cid)
            return
        except BinanceError:
            return                                  # still unknown: the next timeout escalates
        o = self.working.get(cid)
        if o is None:
            return
        if vo.status in (S.NEW, S.PARTIALLY_FILLED):
            if o.status == S.PENDING_NEW:
                self._emit(self.working.apply(vo.to_event(K.ACK)).records)
            elif o.pending_amend is not None:
                self._emit(self.working.apply(vo.to_event(K.AMENDED)).records)
            # PENDING_CANCEL and still open: the cancel was lost; the next timeout cancels all
        elif vo.status in (S.CANCELED, S.EXPIRED, S.REJECTED) and vo.filled_qty == o.filled_qty:
            self._emit(self.working.force_status(cid, vo.status, filled_qty=vo.filled_qty,
                                                 venue_ts=vo.update_ts).records)
        else:
            self._need_reconcile = True             # fills we have not seen: merge userTrades

    async def cancel_all(self, symbols: Sequence[str] | None = None) -> CancelAllReport:
        """Verified cancel-all, then reconciliation so local state matches (HALT, SIGTERM...)."""
        self.counters["cancel_alls"] += 1
        rep = await cancel_all(self.trading, list(symbols or self.symbols),
                               deadline_s=self.cfg.cancel_all_deadline_s,
                               backoff_s=self.cfg.cancel_retry_backoff_s)
        self.last_cancel_all = rep
        await self.reconcile()
        return rep

    def _settle_unknown(self, cid: str) -> None:
        """The venue does not know ``cid``: a new order never acknowledged (whether or not we
        asked to cancel it since) is final REJECTED once its place can no longer execute
        (older than recvWindow); before that it may still be in flight."""
        o = self.working.get(cid)
        if o is not None and o.unacknowledged and time.monotonic_ns() - o.placed_mono > self._grace_ns():
            self._emit(self.working.force_status(cid, S.REJECTED).records)

    def _grace_ns(self) -> int:
        """How long a sent request may still execute: recvWindow plus a second of margin."""
        rest = getattr(self.trading, "rest", None)
        return (getattr(rest, "recv_window_ms", 5000) + 1000) * 1_000_000

    async def reconcile(self) -> ReconcileReport:
        self.counters["reconciles"] += 1
        since = self.trading.clock.venue_ms() - 24 * 3600 * 1000
        rep = await reconcile(self.trading, self.working, self.symbols, self._symbol, since_ms=since,
                              in_flight_grace_ns=self._grace_ns())
        self._emit(rep.records)
        self._emit([self.position_report(inst, amount, entry) for inst, (amount, entry) in rep.positions.items()])
        self.last_reconcile = rep
        return rep

    def position_report(self, instrument: int, amount: int, entry_price: str) -> np.void:
        """The venue's position as a RECONCILE ORDER_EVENT with ``client_id`` 0, the form
        risk adopts (docs/CONTRACTS.md): side BUY long / SELL short / NONE flat, ``qty`` the
        absolute lots, ``price`` the average entry rounded to the nearest tick (an average
        is rarely on the tick grid; risk only marks unrealized PnL with it)."""
        spec = self.instruments.spec(instrument)
        rec = np.zeros(1, ORDER_EVENT)[0]
        rec["kind"] = K.RECONCILE
        rec["instrument"] = instrument
        rec["side"] = Side.NONE if amount == 0 else (Side.BUY if amount > 0 else Side.SELL)
        rec["qty"] = abs(amount)
        if amount != 0:
            tick = Decimal(spec.tick_mantissa).scaleb(spec.price_exp)
            try:
                entry = Decimal(entry_price)
            except InvalidOperation:
                entry = Decimal(0)
            rec["price"] = int((entry / tick).to_integral_value(ROUND_HALF_EVEN)) if entry.is_finite() else 0
        rec["local_ts"] = time.time_ns()
        rec["event_mono"] = time.monotonic_ns()
        return rec


def _reject_reason(exc: BinanceError) -> int:
    """ORDER_EVENT.reason of a refusal: the venue's code (int16), or REASON_NOT_SENT."""
    return REASON_NOT_SENT if isinstance(exc, NotSent) else max(-32768, exc.code)


def _sent_or_refused(send: Callable[..., Awaitable[VenueOrder]], *args: object) -> Awaitable[VenueOrder] | BinanceError:
    """``send(*args)``'s answer, or the BinanceError it refused the request with at once."""
    try:
        return send(*args)
    except BinanceError as exc:
        return exc


async def _all_answers(answers: list[Awaitable[None]]) -> None:
    """Every answer of one target change (concurrently: REST ones start here)."""
    await asyncio.gather(*answers)


def session_config(executor_cfg: object) -> SessionConfig:
    """SessionConfig from the config's ``[executor]`` section (``mmshm.config.ExecutorConfig``)."""
    e = executor_cfg
    return SessionConfig(
        px_tol=e.price_tolerance_ticks, qty_tol=e.size_tolerance_lots, prefer_amend=e.prefer_amend,
        tol_bp=e.price_tolerance_bp, tol_frac=e.price_tolerance_distance,
        requote_rate=e.requote_rate_per_s, requote_burst=e.requote_burst,
        pending_timeout_ns=e.pending_timeout_ms * 1_000_000, deadman_countdown_ms=e.deadman_countdown_ms,
        deadman_refresh_s=e.deadman_refresh_ms / 1000, cancel_all_deadline_s=e.cancel_all_timeout_s,
        cancel_retry_backoff_s=e.cancel_retry_backoff_s)


def session_from_config(cfg: object, instruments: InstrumentIndex, publish: Callable[[np.void], bool], *,
                        signer: object | None = None, budget: object | None = None,
                        id_prefix: str = "mm") -> ExecutionSession:
    """Wire a session from ``mmshm.config.Config``: mode, endpoints, shared rate budget,
    breaker, tolerances. observe/shadow get a session that sends nothing (no signer needed).

    ``signer`` defaults to the credentials from ``$CREDENTIALS_DIRECTORY`` or the env; the
    budget defaults to the instance's shared segment (:class:`SharedRateBudget`).
    """
    from mmshm.execution.breaker import CircuitBreaker
    from mmshm.execution.ratelimit import SharedRateBudget
    from mmshm.venues.binance_usdm.auth import load_signer
    from mmshm.venues.binance_usdm.trading import endpoints_for

    mode = ExchangeEnv(cfg.mode)
    ids = ClientIdGenerator(id_prefix)
    scfg = session_config(cfg.executor)
    if not mode.sends_orders:   # observe: nothing; shadow: a local ShadowVenue
        return ExecutionSession(None, instruments, ids, publish, mode=mode, config=scfg)
    v, e = cfg.venue, cfg.executor
    ep = endpoints_for(mode, rest_url=v.rest_url, ws_api_url=v.ws_api_url, sim_host=v.sim_host,
                       sim_port=v.sim_port)
    signer = signer or load_signer()
    if signer is None:
        raise ValueError(f"mode {mode.value} needs API credentials ($CREDENTIALS_DIRECTORY or MMSHM_API_KEY/SECRET)")
    budget = budget or SharedRateBudget(cfg.instance)
    breaker = CircuitBreaker(failure_threshold=e.breaker_failures, reject_threshold=e.breaker_rejects,
                             reject_window_ns=int(e.breaker_reject_window_s * 1e9),
                             base_ns=int(e.breaker_backoff_base_s * 1e9), cap_ns=int(e.breaker_backoff_max_s * 1e9))
    trading = BinanceTrading(ep, signer, instruments, budget=budget, breaker=breaker,
                             recv_window_ms=v.recv_window_ms, timeout_s=e.request_timeout_s, prefer_ws=e.prefer_ws)
    stream = UserStream(ep.ws_stream, trading.rest, instruments)
    return ExecutionSession(trading, instruments, ids, publish, mode=mode, user_stream=stream, config=scfg)
