"""Shadow mode: our orders matched locally against the live book; nothing is sent.

:class:`ShadowVenue` has the order-entry surface of the Binance adapter
(``place/modify/cancel/query/open_orders/positions/user_trades/cancel_all_open/...``),
so an :class:`~mmshm.execution.session.ExecutionSession` in shadow mode runs exactly the
code it runs live, but its orders go into the simulated venue's matching core
(``mmshm._native.matching.MatchingCore``: queue position behind the displayed size,
partial fills from public trades, post-only refusal). The executor process feeds it the
live market (``on_book_row`` with each BOOK_ROW, ``on_trade`` with each public trade);
fills come back as the same ``OrderUpdate`` events the user-data stream produces.

What it cannot know: our own market impact, hidden liquidity, and latency. A shadow
fill is "would probably have filled", not a fact.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

from mmshm._native import matching as M
from mmshm.deferred import Deferred
from mmshm.records import OrderStatus as S, Side
from mmshm.venues.binance_usdm.trading import (InstrumentIndex, OrderRequest, OrderUpdate, Position,
                                               PostOnlyReject, Trade, UnknownOrder, VenueOrder, MinNotional)

_M_SIDE = {Side.BUY: M.BUY, Side.SELL: M.SELL}
_ACCOUNT = 1


@dataclass
class _Own:
    cid: str
    oid: int
    instrument: int
    side: Side
    price: int
    qty: int
    filled: int = 0
    status: S = S.NEW
    post_only: bool = True
    update_ts: int = 0


class _AlwaysUp:
    connected = True


class _Clock:
    def venue_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ShadowVenue:
    """A local, in-process venue for shadow mode (see module doc)."""

    prefer_ws = True

    def __init__(self, instruments: InstrumentIndex, on_event: Callable[[Any], None] | None = None) -> None:
        self.instruments = instruments
        self.on_event = on_event or (lambda ev: None)
        self.cores = [M.MatchingCore() for _ in instruments.specs]
        self._levels: list[dict[int, dict[int, int]]] = [{M.BUY: {}, M.SELL: {}} for _ in instruments.specs]
        self.orders: dict[str, _Own] = {}
        self._by_oid: dict[int, _Own] = {}
        self._next_oid = 1
        self._next_trade = 1
        self.trades: list[Trade] = []
        self.position: dict[int, int] = {}
        self.ws = _AlwaysUp()
        self.clock = _Clock()
        self.counters = {"orders": 0, "fills": 0, "gtx_rejects": 0, "cancels": 0}

    # ------------------------------------------------------------------ session surface
    async def start(self, **_: Any) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ensure_ws(self) -> bool:
        return True

    def _vo(self, o: _Own) -> VenueOrder:
        now = time.monotonic_ns()
        return VenueOrder(self.instruments.spec(o.instrument).symbol, o.instrument, o.oid, o.cid, o.side,
                          o.status, o.price, o.qty, o.filled, o.update_ts, "GTX" if o.post_only else "GTC",
                          sent_mono=now, recv_mono=now)

    def _update(self, o: _Own, x: str, last_px: int = 0, last_qty: int = 0, fee: int = 0, trade_id: int = 0,
                maker: bool = False) -> None:
        ts = time.time_ns()
        o.update_ts = ts
        spec = self.instruments.spec(o.instrument)
        self.on_event(OrderUpdate(
            symbol=spec.symbol, instrument=o.instrument, client_id=o.cid, venue_order_id=o.oid, side=o.side,
            exec_type=x, status=o.status, price=o.price, qty=o.qty, last_px=last_px, last_qty=last_qty,
            cum_filled=o.filled, fee=fee, fee_asset=spec.quote_asset, trade_id=trade_id, maker=maker,
            reduce_only=False, time_in_force="GTX" if o.post_only else "GTC", event_ts=ts, trans_ts=ts,
            local_ts=ts))

    def _drain(self, inst: int) -> None:
        spec = self.instruments.spec(inst)
        for kind, oid, px, qty, maker, _counter, _match in self.cores[inst].events():
            o = self._by_oid.get(int(oid))
            if o is None or kind != M.EV_FILL_KIND:
                continue
            o.filled += int(qty)
            o.status = S.FILLED if o.filled >= o.qty else S.PARTIALLY_FILLED
            ppm = spec.maker_fee_ppm if maker else spec.taker_fee_ppm
            fee = spec.notional(int(px), int(qty)) * ppm // 1_000_000
            tid = self._next_trade
            self._next_trade += 1
            signed = int(qty) if o.side == Side.BUY else -int(qty)
            self.position[inst] = self.position.get(inst, 0) + signed
            self.trades.append(Trade(spec.symbol, inst, tid, o.oid, o.side, int(px), int(qty), fee,
                                     spec.quote_asset, bool(maker), time.time_ns()))
            self.counters["fills"] += 1
            self._update(o, "TRADE", int(px), int(qty), fee, tid, bool(maker))

    def _submit(self, o: _Own) -> int:
        core = self.cores[o.instrument]
        tif = M.GTX if o.post_only else M.GTC
        return core.submit(o.oid, _M_SIDE[o.side], o.price, o.qty - o.filled, _ACCOUNT, tif=tif)

    async def place(self, req: OrderRequest) -> VenueOrder:
        inst, spec = self.instruments.get(req.symbol)
        if spec.min_notional and spec.notional(req.price, req.qty) < spec.min_notional:
            raise MinNotional(-4164, "Order's notional must be no smaller than the minimum")
        o = _Own(req.client_id, self._next_oid, inst, Side(req.side), req.price, req.qty, post_only=req.post_only)
        self._next_oid += 1
        r = self._submit(o)
        if r == M.GTX_REJECT:
            self.counters["gtx_rejects"] += 1
            raise PostOnlyReject(-5022, "Post Only order would be rejected (shadow)", 400)
        self.counters["orders"] += 1
        self.orders[o.cid] = o
        self._by_oid[o.oid] = o
        self._update(o, "NEW")
        self._drain(inst)
        return self._vo(o)

    async def modify(self, symbol: str, client_id: str, side: Side, price: int, qty: int) -> VenueOrder:
        o = self.orders.get(client_id)
        if o is None or o.status not in (S.NEW, S.PARTIALLY_FILLED) or qty <= o.filled:
            raise UnknownOrder(-2013, "Order does not exist.")
        core = self.cores[o.instrument]
        core.cancel(o.oid)
        old = (o.price, o.qty)
        o.price, o.qty = price, qty
        if self._submit(o) == M.GTX_REJECT:
            o.price, o.qty = old                  # keep the order as it was (queue position lost)
            self._submit(o)
            raise PostOnlyReject(-5022, "Post Only modify would be rejected (shadow)", 400)
        self._update(o, "AMENDMENT")
        self._drain(o.instrument)
        return self._vo(o)

    async def cancel(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None) -> VenueOrder:
        o = self.orders.get(client_id or "") or self._by_oid.get(venue_order_id or 0)
        if o is None or o.status not in (S.NEW, S.PARTIALLY_FILLED):
            raise UnknownOrder(-2011, "Unknown order sent.")
        self.cores[o.instrument].cancel(o.oid)
        o.status = S.CANCELED
        self.counters["cancels"] += 1
        self._update(o, "CANCELED")
        return self._vo(o)

    # The session's ``*_now`` surface. Nothing is written anywhere in shadow mode, so the
    # requests simply run when their results are awaited (in the order they were made).
    def ws_batch(self) -> None:
        """Nothing is written anywhere: the session uses the per-request calls."""
        return None

    def place_now(self, req: OrderRequest) -> Awaitable[VenueOrder]:
        return Deferred(self.place, req)

    def modify_now(self, symbol: str, client_id: str, side: Side, price: int, qty: int) -> Awaitable[VenueOrder]:
        return Deferred(self.modify, symbol, client_id, side, price, qty)

    def cancel_now(self, symbol: str, client_id: str | None = None,
                   venue_order_id: int | None = None) -> Awaitable[VenueOrder]:
        return Deferred(self.cancel, symbol, client_id, venue_order_id)

    async def query(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None) -> VenueOrder:
        o = self.orders.get(client_id or "") or self._by_oid.get(venue_order_id or 0)
        if o is None:
            raise UnknownOrder(-2013, "Order does not exist.")
        return self._vo(o)

    async def place_batch(self, reqs: Sequence[OrderRequest]) -> list:
        out: list = []
        for r in reqs:
            try:
                out.append(await self.place(r))
            except (PostOnlyReject, MinNotional) as exc:
                out.append(exc)
        return out

    async def cancel_all_open(self, symbol: str) -> None:
        for o in list(self.orders.values()):
            if self.instruments.spec(o.instrument).symbol == symbol and o.status in (S.NEW, S.PARTIALLY_FILLED):
                await self.cancel(symbol, o.cid)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        return [self._vo(o) for o in self.orders.values() if o.status in (S.NEW, S.PARTIALLY_FILLED)
                and (symbol is None or self.instruments.spec(o.instrument).symbol == symbol)]

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return [Position(s.symbol, i, self.position.get(i, 0), "0", 0)
                for i, s in enumerate(self.instruments.specs) if symbol is None or s.symbol == symbol]

    async def user_trades(self, symbol: str, **_: Any) -> list[Trade]:
        return [t for t in self.trades if t.symbol == symbol]

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> dict:
        return {"symbol": symbol, "countdownTime": str(countdown_ms)}

    # ------------------------------------------------------------------ market input
    def on_book_row(self, row: np.void) -> None:
        """The live book (BOOK_ROW): displayed levels replace the previous ones."""
        inst = int(row["instrument"])
        if inst >= len(self.cores):
            return
        core = self.cores[inst]
        for mside, n, px, qty in ((M.BUY, int(row["n_bids"]), row["bid_px"], row["bid_qty"]),
                                  (M.SELL, int(row["n_asks"]), row["ask_px"], row["ask_qty"])):
            new = {int(px[i]): int(qty[i]) for i in range(n) if qty[i] > 0}
            old = self._levels[inst][mside]
            for p in old.keys() - new.keys():
                core.set_level(mside, p, 0)
                self._drain(inst)
            for p, q in new.items():
                if old.get(p) != q:
                    core.set_level(mside, p, q)
                    self._drain(inst)
            self._levels[inst][mside] = new

    def on_trade(self, instrument: int, price: int, qty: int, aggressor: Side) -> None:
        """A public trade (aggressor BUY lifts asks)."""
        m_side = _M_SIDE.get(aggressor)
        if instrument >= len(self.cores) or qty <= 0 or m_side is None:
            return                                  # (a trade without an aggressor side cannot match)
        self.cores[instrument].trade(price, qty, m_side)
        self._drain(instrument)
