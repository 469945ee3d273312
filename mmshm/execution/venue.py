"""What the execution layer needs from a venue adapter (structural typing).

``mmshm.venues.binance_usdm.trading.BinanceTrading`` implements it; another venue's
adapter only has to provide the same calls. Results are the adapter's typed objects;
the execution layer reads only the attributes named here.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence


class VenueOrderLike(Protocol):
    symbol: str
    instrument: int
    venue_order_id: int
    client_id: str
    side: Any
    status: Any
    price: int
    qty: int
    filled_qty: int
    update_ts: int


class TradeLike(Protocol):
    symbol: str
    instrument: int
    trade_id: int
    venue_order_id: int
    side: Any
    price: int
    qty: int
    fee: int
    maker: bool
    ts: int


class PositionLike(Protocol):
    symbol: str
    instrument: int
    amount: int


class TradingVenue(Protocol):
    async def cancel(self, symbol: str, client_id: str | None = None,
                     venue_order_id: int | None = None) -> VenueOrderLike: ...
    async def query(self, symbol: str, client_id: str | None = None,
                    venue_order_id: int | None = None) -> VenueOrderLike: ...
    async def cancel_all_open(self, symbol: str) -> None: ...
    async def open_orders(self, symbol: str | None = None) -> Sequence[VenueOrderLike]: ...
    async def positions(self, symbol: str | None = None) -> Sequence[PositionLike]: ...
    async def user_trades(self, symbol: str, **kw: Any) -> Sequence[TradeLike]: ...
    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> Any: ...
