"""Binance USD-M futures trading adapter: REST, WebSocket API and the user-data stream.

Faithful to Binance's documented wire protocol, so the same code talks to the local
simulated venue (paper mode), the testnet and the live exchange:

- REST under ``/fapi``: SIGNED requests carry ``timestamp``/``recvWindow``/``signature``
  in the query string and the key in ``X-MBX-APIKEY``; every response's
  ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-*`` headers correct the shared
  :class:`~mmshm.execution.ratelimit.RateBudget`; errors ``{"code", "msg"}`` become
  typed exceptions (:func:`error_from`).
- WebSocket API ``/ws-fapi/v1``: ``{"id", "method", "params"}`` requests with HMAC-signed
  params, answers matched to requests by id; order entry goes here while the session is
  up and falls back to REST when it is not.
- User-data stream ``/ws/<listenKey>``: ``ORDER_TRADE_UPDATE`` and ``ACCOUNT_UPDATE``
  parsed into typed events in fixed point (ticks, lots, FEE_SCALE); the listen key is
  kept alive with ``PUT /fapi/v1/listenKey`` (every 30 min by default; it expires after
  60) and the stream reconnects by itself, announcing each reconnect so the executor
  reconciles.

Nothing is sent that the rate budget or the circuit breaker refuses. Every request
records the monotonic time it was written to the socket (``sent_mono``) for latency.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
import types
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

import aiohttp
import orjson
import websockets
import yarl
from websockets.frames import OP_TEXT as _OP_TEXT, Frame as _WsFrame
from websockets.protocol import State as _WsState

from mmshm._native.wsorder import WsOrderEncoder
from mmshm.deferred import Deferred
from mmshm.execution.breaker import CircuitBreaker, Failure
from mmshm.execution.orders import VenueEvent
from mmshm.execution.ratelimit import Cost, RateBudget, RateLimited, cost_of
from mmshm.instruments import InstrumentError, InstrumentSpec, parse_decimal
from mmshm.records import OrderEventKind as K, OrderStatus as S, Side
from mmshm.venues.binance_usdm.auth import (DEFAULT_RECV_WINDOW_MS, Signer, encode_params,
                                            signed_query, ws_signed_params)

log = logging.getLogger("mmshm.binance.trading")

# --------------------------------------------------------------------------- endpoints

class ExchangeEnv(str, Enum):
    """Where orders go. observe and shadow send nothing to any venue."""
    OBSERVE = "observe"
    SHADOW = "shadow"
    PAPER = "paper"
    TESTNET = "testnet"
    LIVE = "live"

    @property
    def sends_orders(self) -> bool:
        return self in (ExchangeEnv.PAPER, ExchangeEnv.TESTNET, ExchangeEnv.LIVE)


@dataclass(frozen=True)
class Endpoints:
    rest: str        # https://host (no trailing slash)
    ws_api: str      # wss://host/ws-fapi/v1
    ws_stream: str   # wss://host[/private] (user stream is <ws_stream>/ws/<listenKey>)


#: Binance's documented endpoints.
# Production split its USD-M WebSocket hosts by data type (2026-04): user data is served
# under /private (``wss://fstream.binance.com/private/ws/<listenKey>``); a URL without the
# prefix carries book data only, so the user stream would silently receive nothing.
LIVE_ENDPOINTS = Endpoints("https://fapi.binance.com", "wss://ws-fapi.binance.com/ws-fapi/v1",
                           "wss://fstream.binance.com/private")
TESTNET_ENDPOINTS = Endpoints("https://testnet.binancefuture.com",
                              "wss://testnet.binancefuture.com/ws-fapi/v1",
                              "wss://fstream.binancefuture.com")


def local_endpoints(host: str, port: int) -> Endpoints:
    """The simulated venue on loopback (paper mode): same paths, plain http/ws."""
    return Endpoints(f"http://{host}:{port}", f"ws://{host}:{port}/ws-fapi/v1", f"ws://{host}:{port}")


def endpoints_for(mode: ExchangeEnv | str, *, rest_url: str = "", ws_api_url: str = "",
                  ws_stream_url: str = "", sim_host: str = "127.0.0.1", sim_port: int = 0) -> Endpoints | None:
    """Endpoints of ``mode``; explicit URLs (config ``venue.*_url``) override the defaults.

    observe/shadow → None (nothing may be sent). paper → the local simulated venue.
    """
    mode = ExchangeEnv(mode)
    if not mode.sends_orders:
        return None
    if mode == ExchangeEnv.PAPER:
        if not (rest_url or sim_port):
            raise ValueError("paper mode needs the simulated venue's port or URLs")
        base = local_endpoints(sim_host, sim_port) if sim_port else Endpoints("", "", "")
    else:
        base = LIVE_ENDPOINTS if mode == ExchangeEnv.LIVE else TESTNET_ENDPOINTS
    rest = (rest_url or base.rest).rstrip("/")
    ws_api = ws_api_url or base.ws_api or _ws_from_http(rest) + "/ws-fapi/v1"
    ws_stream = (ws_stream_url or base.ws_stream or _ws_from_http(rest)).rstrip("/")
    return Endpoints(rest, ws_api, ws_stream)


def _ws_from_http(url: str) -> str:
    return url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)


# --------------------------------------------------------------------------- errors

class BinanceError(Exception):
    """A request the venue answered with an error (``code``/``msg``) or did not answer."""
    codes: tuple[int, ...] = ()

    def __init__(self, code: int, msg: str, http_status: int = 0, retry_after_s: float | None = None) -> None:
        super().__init__(f"{http_status} {code}: {msg}")
        self.code, self.msg, self.http_status, self.retry_after_s = code, msg, http_status, retry_after_s


class TimestampError(BinanceError):
    codes = (-1021,)


class SignatureError(BinanceError):
    codes = (-1022,)


class UnknownOrder(BinanceError):
    """-2011 (cancel: unknown order), -2013 (order does not exist)."""
    codes = (-2011, -2013)


class PostOnlyReject(BinanceError):
    codes = (-5022,)


class MinNotional(BinanceError):
    codes = (-4164,)


class PrecisionError(BinanceError):
    codes = (-1111, -4014, -4013, -4023)


class OrderRejected(BinanceError):
    """Any other business reject of an order request (-2010, -2019, -2021, -2022, -4xxx...)."""


class RateLimitExceeded(BinanceError):
    """HTTP 429 or -1003: nothing may be sent until ``retry_after_s``."""
    codes = (-1003,)


class Banned(BinanceError):
    """HTTP 418: the IP is banned for sending after a 429. Must never happen."""


class ServerError(BinanceError):
    """HTTP 5xx other than an unknown execution status."""


class UnknownStatus(BinanceError):
    """The request may or may not have been executed (503 'Unknown error', -1007, a
    timeout or a connection lost after the request was written): query before acting."""
    codes = (-1007, -1006)


class NotSent(BinanceError):
    """Refused locally (rate budget, breaker, no session): the venue never saw it."""


_BY_CODE: dict[int, type[BinanceError]] = {
    c: cls for cls in (TimestampError, SignatureError, UnknownOrder, PostOnlyReject, MinNotional,
                       PrecisionError, RateLimitExceeded, UnknownStatus) for c in cls.codes}


def error_from(http_status: int, body: Any, retry_after_s: float | None = None) -> BinanceError:
    """The typed exception for an error response (HTTP status and ``{"code","msg"}`` body)."""
    code, msg = 0, ""
    if isinstance(body, Mapping):
        try:
            code = int(body.get("code", 0))
        except (TypeError, ValueError):
            code = 0
        msg = str(body.get("msg", ""))
    if http_status == 418:
        return Banned(code, msg or "IP banned", http_status, retry_after_s)
    if http_status == 429 or code == -1003:
        return RateLimitExceeded(code or -1003, msg or "too many requests", http_status, retry_after_s)
    if http_status == 503 and ("unknown" in msg.lower() or code in (-1007, -1006)):
        return UnknownStatus(code, msg, http_status)
    if http_status >= 500:
        return ServerError(code, msg, http_status)
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(code, msg, http_status, retry_after_s)
    return OrderRejected(code, msg, http_status)


def _failure_kind(err: BinanceError) -> Failure:
    if isinstance(err, (RateLimitExceeded, Banned)):
        return Failure.RATE_LIMIT
    if isinstance(err, (ServerError, UnknownStatus)):
        return Failure.SERVER if err.http_status >= 500 else Failure.TIMEOUT
    return Failure.REJECT


# --------------------------------------------------------------------------- typed results

_STATUS = {"NEW": S.NEW, "PARTIALLY_FILLED": S.PARTIALLY_FILLED, "FILLED": S.FILLED,
           "CANCELED": S.CANCELED, "EXPIRED": S.EXPIRED, "EXPIRED_IN_MATCH": S.EXPIRED,
           "REJECTED": S.REJECTED, "NEW_INSURANCE": S.NEW, "NEW_ADL": S.NEW}
_SIDE = {"BUY": Side.BUY, "SELL": Side.SELL}
_SIDE_STR = {Side.BUY: "BUY", Side.SELL: "SELL"}


def fee_units(text: str) -> int:
    """A decimal money amount in FEE_SCALE (1e-8) units, exact (floor below 1e-8)."""
    m, e = parse_decimal(text)
    e += 8
    return m * 10 ** e if e >= 0 else m // 10 ** -e


@dataclass(slots=True)
class VenueOrder:
    """An order as the venue reports it (REST/WS API order object), in fixed point."""
    symbol: str
    instrument: int
    venue_order_id: int
    client_id: str
    side: Side
    status: S
    price: int
    qty: int
    filled_qty: int
    update_ts: int          # realtime ns
    time_in_force: str = ""
    reduce_only: bool = False
    sent_mono: int = 0      # when our request hit the socket
    recv_mono: int = 0      # when its answer was read

    def to_event(self, kind: K) -> VenueEvent:
        return VenueEvent(kind=kind, client_id=self.client_id, venue_order_id=self.venue_order_id,
                          price=self.price, qty=self.qty, cum_filled=self.filled_qty,
                          venue_ts=self.update_ts, local_ts=time.time_ns())


@dataclass(slots=True)
class Position:
    symbol: str
    instrument: int
    amount: int            # signed lots
    entry_price: str
    unrealized_pnl: int    # FEE_SCALE
    position_side: str = "BOTH"


@dataclass(slots=True)
class Trade:
    """One of our fills from ``GET /fapi/v1/userTrades``."""
    symbol: str
    instrument: int
    trade_id: int
    venue_order_id: int
    side: Side
    price: int
    qty: int
    fee: int               # FEE_SCALE units of fee_asset (negative = rebate)
    fee_asset: str
    maker: bool
    ts: int                # realtime ns
    realized_pnl: int = 0


@dataclass(slots=True)
class OrderUpdate:
    """``ORDER_TRADE_UPDATE`` in fixed point."""
    symbol: str
    instrument: int
    client_id: str
    venue_order_id: int
    side: Side
    exec_type: str        # NEW, TRADE, CANCELED, EXPIRED, AMENDMENT, CALCULATED
    status: S
    price: int
    qty: int
    last_px: int
    last_qty: int
    cum_filled: int
    fee: int
    fee_asset: str
    trade_id: int
    maker: bool
    reduce_only: bool
    time_in_force: str
    event_ts: int         # realtime ns (E)
    trans_ts: int         # realtime ns (T)
    local_ts: int
    expire_reason: str = ""

    def to_event(self) -> VenueEvent | None:
        """The state-machine input for this update (None for exec types we do not model)."""
        kind = _EXEC_KIND.get(self.exec_type)
        if kind is None:
            return None
        ev = VenueEvent(kind=kind, client_id=self.client_id, venue_order_id=self.venue_order_id,
                        price=self.price, qty=self.qty, cum_filled=self.cum_filled,
                        venue_ts=self.trans_ts, local_ts=self.local_ts)
        if kind == K.FILL:
            ev.fill_px, ev.fill_qty, ev.fee, ev.trade_id, ev.maker = (
                self.last_px, self.last_qty, self.fee, self.trade_id, self.maker)
        return ev


_EXEC_KIND = {"NEW": K.ACK, "TRADE": K.FILL, "CALCULATED": K.FILL, "CANCELED": K.CANCELED,
              "EXPIRED": K.EXPIRED, "AMENDMENT": K.AMENDED}


@dataclass(slots=True)
class Balance:
    asset: str
    wallet: int            # FEE_SCALE
    cross_wallet: int
    change: int
    #: keys of ``wb``/``cw``/``bc`` absent from the message: their value above is a 0 the
    #: venue did not say (a reader of balances must not take it for a zero balance)
    missing: tuple[str, ...] = ()


@dataclass(slots=True)
class AccountUpdate:
    """``ACCOUNT_UPDATE``: balances and positions that changed, in fixed point."""
    reason: str
    balances: list[Balance]
    positions: list[Position]
    event_ts: int
    trans_ts: int
    local_ts: int


@dataclass(slots=True)
class StreamStatus:
    """Connection events of the user stream: reconcile on every ``connected`` after the first."""
    connected: bool
    reconnect: bool
    reason: str = ""
    local_ts: int = 0


@dataclass(slots=True)
class ListenKeyExpired:
    event_ts: int


UserEvent = OrderUpdate | AccountUpdate | StreamStatus | ListenKeyExpired


class InstrumentIndex:
    """symbol → (index, spec) for the instruments this adapter trades (index = table row)."""

    def __init__(self, specs: Sequence[InstrumentSpec] | Iterable[InstrumentSpec]) -> None:
        self.specs = list(specs)
        self._by_symbol = {s.symbol: (i, s) for i, s in enumerate(self.specs)}

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def get(self, symbol: str) -> tuple[int, InstrumentSpec]:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise InstrumentError(f"not a traded symbol: {symbol}") from None

    def spec(self, instrument: int) -> InstrumentSpec:
        return self.specs[instrument]

    @property
    def symbols(self) -> list[str]:
        return [s.symbol for s in self.specs]


def parse_order(d: Mapping[str, Any], instruments: InstrumentIndex) -> VenueOrder:
    """An order object (REST or WS API answer, or an openOrders entry) in fixed point."""
    idx, spec = instruments.get(d["symbol"])
    return VenueOrder(
        symbol=d["symbol"], instrument=idx, venue_order_id=int(d["orderId"]),
        client_id=str(d.get("clientOrderId", "")), side=_SIDE[d["side"]],
        status=_STATUS.get(d.get("status", ""), S.NEW), price=spec.price_to_ticks(d.get("price", "0")),
        qty=spec.qty_to_lots(d.get("origQty", "0")), filled_qty=spec.qty_to_lots(d.get("executedQty", "0")),
        update_ts=int(d.get("updateTime", d.get("time", 0)) or 0) * 1_000_000,
        time_in_force=str(d.get("timeInForce", "")), reduce_only=bool(d.get("reduceOnly", False)))


def parse_position(d: Mapping[str, Any], instruments: InstrumentIndex) -> Position | None:
    sym = d.get("symbol") or d.get("s")
    if sym not in instruments:
        return None
    idx, spec = instruments.get(sym)
    amt = d.get("positionAmt", d.get("pa", "0"))
    return Position(sym, idx, spec.qty_to_lots(amt), str(d.get("entryPrice", d.get("ep", "0"))),
                    fee_units(str(d.get("unRealizedProfit", d.get("up", "0")))),
                    str(d.get("positionSide", d.get("ps", "BOTH"))))


def parse_trade(d: Mapping[str, Any], instruments: InstrumentIndex) -> Trade:
    idx, spec = instruments.get(d["symbol"])
    return Trade(d["symbol"], idx, int(d["id"]), int(d["orderId"]), _SIDE[d["side"]],
                 spec.price_to_ticks(d["price"]), spec.qty_to_lots(d["qty"]),
                 fee_units(str(d.get("commission", "0"))), str(d.get("commissionAsset", "")),
                 bool(d.get("maker", False)), int(d.get("time", 0)) * 1_000_000,
                 fee_units(str(d.get("realizedPnl", "0"))))


class StreamParseStats:
    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


def parse_user_event(msg: Mapping[str, Any], instruments: InstrumentIndex,
                     stats: StreamParseStats | None = None, local_ts: int | None = None) -> UserEvent | None:
    """One user-data stream message → typed event; bad input is a counted drop (None)."""
    local_ts = time.time_ns() if local_ts is None else local_ts
    stats = stats or StreamParseStats()
    try:
        e = msg.get("e")
        if e == "ORDER_TRADE_UPDATE":
            o = msg["o"]
            sym = o["s"]
            if sym not in instruments:
                stats.drop("foreign_symbol")
                return None
            idx, spec = instruments.get(sym)
            return OrderUpdate(
                symbol=sym, instrument=idx, client_id=str(o.get("c", "")), venue_order_id=int(o["i"]),
                side=_SIDE[o["S"]], exec_type=str(o["x"]), status=_STATUS.get(o["X"], S.NEW),
                price=spec.price_to_ticks(o.get("p", "0")), qty=spec.qty_to_lots(o.get("q", "0")),
                last_px=spec.price_to_ticks(o.get("L", "0")), last_qty=spec.qty_to_lots(o.get("l", "0")),
                cum_filled=spec.qty_to_lots(o.get("z", "0")), fee=fee_units(str(o.get("n", "0"))),
                fee_asset=str(o.get("N", "") or ""), trade_id=int(o.get("t", 0) or 0),
                maker=bool(o.get("m", False)), reduce_only=bool(o.get("R", False)),
                time_in_force=str(o.get("f", "")), event_ts=int(msg.get("E", 0)) * 1_000_000,
                trans_ts=int(o.get("T", msg.get("T", 0)) or 0) * 1_000_000, local_ts=local_ts,
                expire_reason=str(o.get("er", "")))
        if e == "ACCOUNT_UPDATE":
            a = msg["a"]
            bals = [Balance(b["a"], fee_units(b.get("wb", "0")), fee_units(b.get("cw", "0")),
                            fee_units(b.get("bc", "0")), tuple(k for k in ("wb", "cw", "bc") if k not in b))
                    for b in a.get("B", [])]
            poss = [p for p in (parse_position(p, instruments) for p in a.get("P", [])) if p is not None]
            return AccountUpdate(str(a.get("m", "")), bals, poss, int(msg.get("E", 0)) * 1_000_000,
                                 int(msg.get("T", 0)) * 1_000_000, local_ts)
        if e == "listenKeyExpired":
            return ListenKeyExpired(int(msg.get("E", 0)) * 1_000_000)
        stats.drop(f"event_{e}")
        return None
    except (KeyError, TypeError, ValueError, InstrumentError) as exc:
        stats.drop(type(exc).__name__)
        log.warning("dropped user-stream message", extra={"why": str(exc)[:200]})
        return None


# --------------------------------------------------------------------------- requests

@dataclass(slots=True)
class OrderRequest:
    """A new LIMIT order in fixed point; post-only is Binance's GTX time in force."""
    symbol: str
    side: Side
    price: int
    qty: int
    client_id: str
    post_only: bool = True
    reduce_only: bool = False
    market: bool = False      # a MARKET order (FLATTEN's reduce-only close): no price, no time in force


def order_params(req: OrderRequest, spec: InstrumentSpec) -> dict[str, object]:
    if req.market:
        m: dict[str, object] = {"symbol": req.symbol, "side": _SIDE_STR[Side(req.side)], "type": "MARKET",
                                "quantity": spec.lots_to_str(req.qty), "newClientOrderId": req.client_id}
        if req.reduce_only:
            m["reduceOnly"] = "true"
        return m
    p: dict[str, object] = {
        "symbol": req.symbol, "side": _SIDE_STR[Side(req.side)], "type": "LIMIT",
        "timeInForce": "GTX" if req.post_only else "GTC",
        "quantity": spec.lots_to_str(req.qty), "price": spec.ticks_to_str(req.price),
        "newClientOrderId": req.client_id,
    }
    if req.reduce_only:
        p["reduceOnly"] = "true"
    return p


def modify_params(symbol: str, client_id: str, side: Side, price: int, qty: int,
                  spec: InstrumentSpec) -> dict[str, object]:
    return {"symbol": symbol, "origClientOrderId": client_id, "side": _SIDE_STR[Side(side)],
            "quantity": spec.lots_to_str(qty), "price": spec.ticks_to_str(price)}


class Clock:
    """Venue time = local realtime + offset measured from ``GET /fapi/v1/time``."""

    def __init__(self, realtime_ns: Callable[[], int] = time.time_ns) -> None:
        self._rt = realtime_ns
        self.offset_ms = 0
        self.rtt_ms = 0.0

    def venue_ms(self) -> int:
        return self._rt() // 1_000_000 + self.offset_ms

    def update(self, server_ms: int, t0_ns: int, t1_ns: int) -> None:
        """Offset from one exchange: server time is taken as the midpoint of the round trip."""
        mid_ms = (t0_ns + t1_ns) // 2 // 1_000_000
        self.offset_ms = int(server_ms) - mid_ms
        self.rtt_ms = (t1_ns - t0_ns) / 1e6


class BinanceRest:
    """aiohttp REST client for ``/fapi`` with signing, budget, breaker and typed errors."""

    def __init__(self, base_url: str, signer: Signer | None, instruments: InstrumentIndex, *,
                 budget: RateBudget | None = None, breaker: CircuitBreaker | None = None,
                 clock: Clock | None = None, recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
                 timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.instruments = instruments
        self.budget = budget or RateBudget()
        self.breaker = breaker or CircuitBreaker()
        self.clock = clock or Clock()
        self.recv_window_ms = recv_window_ms
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self.counters = {"requests": 0, "errors": 0, "refused_budget": 0, "refused_breaker": 0,
                         "timeouts": 0, "resync_1021": 0}
        self.last_sent_mono = 0

    async def start(self) -> None:
        if self._session is None:
            tc = aiohttp.TraceConfig()
            tc.on_request_headers_sent.append(self._on_headers_sent)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), trace_configs=[tc],
                connector=aiohttp.TCPConnector(limit=16, keepalive_timeout=60),
                json_serialize=lambda o: orjson.dumps(o).decode())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "BinanceRest":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    async def _on_headers_sent(session: Any, ctx: types.SimpleNamespace, params: Any) -> None:
        req_ctx = ctx.trace_request_ctx
        if req_ctx is not None:
            req_ctx.sent_mono = time.monotonic_ns()

    async def request(self, method: str, path: str, params: Mapping[str, object] | None = None, *,
                      signed: bool = True, api_key: bool | None = None, cost: Cost | None = None,
                      _retry_1021: bool = True) -> tuple[Any, types.SimpleNamespace]:
        """Send one request; returns ``(json, info)`` with ``info.sent_mono/recv_mono/status``.

        Raises NotSent (budget/breaker refused; the venue never saw it), a typed
        BinanceError for an error answer, UnknownStatus when the answer was lost.
        A -1021 (clock drift) is resynced and retried once: the venue rejected it
        before any processing, so the retry cannot duplicate an order.
        """
        if self._session is None:
            await self.start()
        cost = cost or cost_of(f"{method} {path}")
        try:
            self.budget.acquire(cost)
        except RateLimited as exc:
            self.counters["refused_budget"] += 1
            raise NotSent(0, f"rate budget: {exc}", 0, exc.retry_after_ns / 1e9) from None
        if (signed or api_key) and self.signer is None:
            raise NotSent(0, "no credentials for a SIGNED request")
        if not self.breaker.allow():
            self.counters["refused_breaker"] += 1
            raise NotSent(0, f"circuit open for {self.breaker.retry_in_ns() / 1e9:.3f}s")
        params = params or {}
        if signed:
            qs = signed_query(self.signer, params, self.clock.venue_ms(), self.recv_window_ms)
        else:
            qs = encode_params(params)
        url = yarl.URL(f"{self.base_url}{path}{'?' + qs if qs else ''}", encoded=True)
        headers = {}
        if signed or api_key:
            headers["X-MBX-APIKEY"] = self.signer.api_key
        info = types.SimpleNamespace(sent_mono=0, recv_mono=0, status=0, headers={})
        self.counters["requests"] += 1
        assert self._session is not None
        try:
            async with self._session.request(method, url, headers=headers, trace_request_ctx=info) as resp:
                raw = await resp.read()
                info.recv_mono = time.monotonic_ns()
                info.status = resp.status
                info.headers = resp.headers
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.counters["timeouts"] += 1
            self.breaker.record_failure(Failure.TIMEOUT)
            if info.sent_mono:
                raise UnknownStatus(0, f"no answer: {type(exc).__name__}", 0) from None
            raise NotSent(0, f"connection failed: {type(exc).__name__}: {exc}") from None
        self.last_sent_mono = info.sent_mono
        self.budget.update_from_headers(info.headers)
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = {"code": 0, "msg": raw[:200].decode(errors="replace")}
        if info.status == 200 and not (isinstance(body, Mapping) and int(body.get("code", 0) or 0) < 0):
            self.breaker.record_success()
            return body, info
        retry_after = _retry_after(info.headers)
        err = error_from(info.status, body, retry_after)
        self.counters["errors"] += 1
        if isinstance(err, RateLimitExceeded):
            self.budget.on_429(retry_after)
        elif isinstance(err, Banned):
            self.budget.on_418(retry_after)
            log.error("venue BANNED this IP (418); nothing will be sent", extra={"retry_after": retry_after})
        self.breaker.record_failure(_failure_kind(err), int((retry_after or 0) * 1e9))
        if isinstance(err, TimestampError) and _retry_1021 and signed:
            self.counters["resync_1021"] += 1
            await self.sync_time()
            return await self.request(method, path, params, signed=signed, api_key=api_key,
                                      cost=cost, _retry_1021=False)
        raise err

    # ------------------------------------------------------------------ market/meta
    async def sync_time(self) -> int:
        """Measure the venue clock offset (``GET /fapi/v1/time``); returns it in ms."""
        t0 = time.time_ns()
        body, _ = await self.request("GET", "/fapi/v1/time", signed=False)
        t1 = time.time_ns()
        self.clock.update(int(body["serverTime"]), t0, t1)
        return self.clock.offset_ms

    async def exchange_info(self, seed_budget: bool = True) -> dict:
        body, _ = await self.request("GET", "/fapi/v1/exchangeInfo", signed=False)
        if seed_budget and body.get("rateLimits"):
            self.budget.configure(body["rateLimits"])
        return body

    # ------------------------------------------------------------------ orders
    def _spec(self, symbol: str) -> InstrumentSpec:
        return self.instruments.get(symbol)[1]

    def _order(self, body: Any, info: types.SimpleNamespace) -> VenueOrder:
        o = parse_order(body, self.instruments)
        o.sent_mono, o.recv_mono = info.sent_mono, info.recv_mono
        return o

    async def place(self, req: OrderRequest) -> VenueOrder:
        body, info = await self.request("POST", "/fapi/v1/order", order_params(req, self._spec(req.symbol)))
        return self._order(body, info)

    async def modify(self, symbol: str, client_id: str, side: Side, price: int, qty: int) -> VenueOrder:
        body, info = await self.request("PUT", "/fapi/v1/order",
                                        modify_params(symbol, client_id, side, price, qty, self._spec(symbol)))
        return self._order(body, info)

    async def cancel(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None) -> VenueOrder:
        body, info = await self.request("DELETE", "/fapi/v1/order", _id_params(symbol, client_id, venue_order_id))
        return self._order(body, info)

    async def query(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None) -> VenueOrder:
        body, info = await self.request("GET", "/fapi/v1/order", _id_params(symbol, client_id, venue_order_id))
        return self._order(body, info)

    def _batch_results(self, body: Any, info: types.SimpleNamespace) -> list[VenueOrder | BinanceError]:
        out: list[VenueOrder | BinanceError] = []
        for item in body:
            if isinstance(item, Mapping) and "orderId" in item:
                out.append(self._order(item, info))
            else:
                out.append(error_from(400, item))
        return out

    async def place_batch(self, reqs: Sequence[OrderRequest]) -> list[VenueOrder | BinanceError]:
        """``POST /fapi/v1/batchOrders`` (≤5); results in request order, errors in place."""
        _check_batch(reqs, 5)
        lst = [{k: str(v) for k, v in order_params(r, self._spec(r.symbol)).items()} for r in reqs]
        body, info = await self.request("POST", "/fapi/v1/batchOrders",
                                        {"batchOrders": orjson.dumps(lst).decode()})
        return self._batch_results(body, info)

    async def modify_batch(self, items: Sequence[tuple[str, str, Side, int, int]]) -> list[VenueOrder | BinanceError]:
        """``PUT /fapi/v1/batchOrders`` (≤5) of ``(symbol, client_id, side, price, qty)``."""
        _check_batch(items, 5)
        lst = [{k: str(v) for k, v in modify_params(s, c, sd, p, q, self._spec(s)).items()}
               for s, c, sd, p, q in items]
        body, info = await self.request("PUT", "/fapi/v1/batchOrders", {"batchOrders": orjson.dumps(lst).decode()})
        return self._batch_results(body, info)

    async def cancel_batch(self, symbol: str, client_ids: Sequence[str]) -> list[VenueOrder | BinanceError]:
        """``DELETE /fapi/v1/batchOrders`` with ``origClientOrderIdList`` (≤10)."""
        _check_batch(client_ids, 10)
        body, info = await self.request("DELETE", "/fapi/v1/batchOrders", {
            "symbol": symbol, "origClientOrderIdList": orjson.dumps(list(client_ids)).decode()})
        return self._batch_results(body, info)

    async def cancel_all_open(self, symbol: str) -> None:
        """``DELETE /fapi/v1/allOpenOrders`` (the answer carries no count)."""
        await self.request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": symbol})

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        key = "GET /fapi/v1/openOrders" + ("" if symbol else ":all")
        body, info = await self.request("GET", "/fapi/v1/openOrders", {"symbol": symbol} if symbol else None,
                                        cost=cost_of(key))
        return [self._order(d, info) for d in body if d.get("symbol") in self.instruments]

    async def positions(self, symbol: str | None = None) -> list[Position]:
        body, _ = await self.request("GET", "/fapi/v2/positionRisk", {"symbol": symbol} if symbol else None)
        return [p for p in (parse_position(d, self.instruments) for d in body) if p is not None]

    async def account(self) -> dict:
        body, _ = await self.request("GET", "/fapi/v2/account")
        return body

    async def user_trades(self, symbol: str, *, start_time_ms: int | None = None, from_id: int | None = None,
                          limit: int = 500) -> list[Trade]:
        params = {"symbol": symbol, "startTime": start_time_ms, "fromId": from_id, "limit": limit}
        body, _ = await self.request("GET", "/fapi/v1/userTrades", params)
        return [parse_trade(d, self.instruments) for d in body]

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> dict:
        """The venue's dead-man switch: cancel all ``symbol`` orders unless refreshed
        within ``countdown_ms`` (0 turns it off)."""
        body, _ = await self.request("POST", "/fapi/v1/countdownCancelAll",
                                     {"symbol": symbol, "countdownTime": int(countdown_ms)})
        return body

    # ------------------------------------------------------------------ listen key
    async def new_listen_key(self) -> str:
        body, _ = await self.request("POST", "/fapi/v1/listenKey", signed=False, api_key=True)
        return str(body["listenKey"])

    async def keepalive_listen_key(self) -> None:
        await self.request("PUT", "/fapi/v1/listenKey", signed=False, api_key=True)

    async def close_listen_key(self) -> None:
        await self.request("DELETE", "/fapi/v1/listenKey", signed=False, api_key=True)


def _id_params(symbol: str, client_id: str | None, venue_order_id: int | None) -> dict[str, object]:
    if not client_id and not venue_order_id:
        raise ValueError("need a client id or a venue order id")
    return {"symbol": symbol, "orderId": venue_order_id or None, "origClientOrderId": client_id or None}


def _check_batch(items: Sequence[object], n: int) -> None:
    if not 0 < len(items) <= n:
        raise ValueError(f"a batch holds 1..{n} items, got {len(items)}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    v = headers.get("Retry-After") if headers else None
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- WebSocket API

_WS_OPEN = _WsState.OPEN


class ConnectionLost(BinanceError):
    pass


def _client_frame(payload: bytes) -> bytes:
    """``payload`` as one masked client text frame in ``websockets``' own framing (no
    extensions: the sessions are opened with ``compression=None``)."""
    return _WsFrame(_OP_TEXT, payload).serialize(mask=True, extensions=[])


def _write_frames_now(ws: Any, data: bytes) -> bool:
    """Write ready-made (masked) client frames to the socket in one write; False (nothing
    written) unless the connection is OPEN. The frames are whole, so they never interleave
    with the library's own control frames, which also go out whole through this transport.

    Why not ``websockets``' ``send``: it wraps the write in an async context manager and a
    drain, which cost more than the whole rest of an order's path to the socket, and it
    yields to the event loop; the caller drains afterwards when the transport pushes back.
    """
    proto = getattr(ws, "protocol", None)
    if proto is None or proto.state is not _WS_OPEN or ws.transport.is_closing():
        return False
    ws.transport.write(data)
    return True


def write_frames(ws: Any, data: bytes) -> str | None:
    """:func:`_write_frames_now`: None when written, else why nothing was (for NotSent)."""
    try:
        written = _write_frames_now(ws, data)
    except (AttributeError, OSError, RuntimeError) as exc:
        return type(exc).__name__
    return None if written else "ConnectionClosed"


def _native_encoder(signer: Signer, instruments: InstrumentIndex, recv_window_ms: int | None) -> WsOrderEncoder | None:
    """The C order-frame encoder for this key and these instruments, or None (the Python
    encoder frames everything) when the key or a symbol is outside what it encodes."""
    try:
        enc = WsOrderEncoder(signer.api_key, *signer.hmac_pads(), recv_window_ms)
        for i, spec in enumerate(instruments.specs):
            enc.add_instrument(i, spec.symbol, spec.tick_mantissa, spec.price_exp, spec.lot_mantissa, spec.qty_exp)
    except ValueError as exc:
        log.warning("order frames built in Python: %s", exc)
        return None
    return enc


class WsOrderBatch:
    """Order requests framed now (signed, JSON, masked) and written to the socket together,
    in ONE write, before any answer is awaited.

    Why: a target change often moves several orders (a ladder's levels); one write per
    request cost a syscall and a loopback delivery each (~20-40 us on this machine), and
    building each frame through parameter dicts, ``orjson`` and ``websockets``' Frame
    objects cost more than that again. Each request is still checked on its own against the
    shared rate budget and the breaker (a refused one is left out, with its reason).

    Use: ``place``/``modify``/``cancel`` return a slot; ``write()`` writes every frame;
    ``outcome(slot)`` then gives the request's answer (an awaitable of ``VenueOrder``) or
    the ``BinanceError`` it was refused with.
    """

    __slots__ = ("api", "ws", "ts_ms", "frames", "slots", "write_mono", "sent_mono")

    def __init__(self, api: "BinanceWsApi", ws: Any, ts_ms: int | None = None) -> None:
        self.api, self.ws = api, ws
        self.ts_ms = api.clock.venue_ms() if ts_ms is None else ts_ms   # one timestamp for the whole batch
        self.frames: list[bytes] = []
        self.slots: list[tuple | BinanceError] = []     # (method, id[, answer future]) or refusal
        self.write_mono = self.sent_mono = 0

    @classmethod
    def written(cls, api: "BinanceWsApi", ws: Any, slots: list[tuple | BinanceError], write_mono: int,
                sent_mono: int, why: str | None) -> "WsOrderBatch":
        """A batch whose frames were built and written elsewhere (the executor's native
        order path, ``mmshm._native.orderpath``: the write comes before any Python object of
        the batch is made): ``slots`` as :meth:`place` etc. would have left them, the write's
        start and end, and ``why`` it failed (None: it was written). Then as after :meth:`write`."""
        b = cls(api, ws, 0)
        b.slots = slots
        if all(isinstance(slot, BinanceError) for slot in slots):
            return b                                # every request refused: nothing was written
        b.frames.append(b"")                        # (written elsewhere: the batch is not empty)
        b.write_mono = write_mono
        b._after_write(why, sent_mono)
        return b

    def place(self, instrument: int, req: OrderRequest) -> int:
        n = self._admit("order.place")
        if n is None:
            return len(self.slots) - 1              # refused: the slot holds why
        frame = self._native("place", n, instrument, req.client_id, int(req.side), req.price, req.qty,
                             req.post_only, req.reduce_only, self.ts_ms)
        return self._add("order.place", n, frame or self._python_frame(
            n, "order.place", order_params(req, self.api.instruments.spec(instrument))))

    def modify(self, instrument: int, client_id: str, side: Side, price: int, qty: int) -> int:
        n = self._admit("order.modify")
        if n is None:
            return len(self.slots) - 1
        frame = self._native("modify", n, instrument, client_id, int(side), price, qty, self.ts_ms)
        if frame is None:
            spec = self.api.instruments.spec(instrument)
            frame = self._python_frame(n, "order.modify", modify_params(spec.symbol, client_id, side, price, qty, spec))
        return self._add("order.modify", n, frame)

    def cancel(self, instrument: int, client_id: str) -> int:
        n = self._admit("order.cancel")
        if n is None:
            return len(self.slots) - 1
        frame = self._native("cancel", n, instrument, client_id, self.ts_ms)
        return self._add("order.cancel", n, frame or self._python_frame(
            n, "order.cancel", _id_params(self.api.instruments.spec(instrument).symbol, client_id, None)))

    def _native(self, method: str, *args: object) -> bytes | None:
        """The frame from the C encoder, or None when there is none or it refuses the
        request (e.g. a client id outside its alphabet): the Python encoder frames it."""
        enc = self.api.encoder
        if enc is None:
            return None
        try:
            return getattr(enc, method)(*args)
        except ValueError:
            return None

    def _admit(self, method: str) -> int | None:
        """The request's id if the budget and the breaker let it go, else None (a new last
        slot then holds the refusal)."""
        try:
            self.api._admit(cost_of(method))
        except NotSent as exc:
            self.slots.append(exc)
            return None
        return next(self.api._ids)

    def _python_frame(self, n: int, method: str, params: Mapping[str, object]) -> bytes:
        """The Python encoder's JSON in ``websockets``' own client framing."""
        self.api.counters["python_frames"] += 1
        return _client_frame(self.api._json(str(n), method, params, self.ts_ms))

    def _add(self, method: str, n: int, frame: bytes) -> int:
        self.frames.append(frame)
        self.slots.append((method, str(n)))
        return len(self.slots) - 1

    def write(self) -> bool:
        """Write every frame in one socket write, then expect their answers. False when
        nothing could be written (the connection closed meanwhile): every request is then
        refused as not sent."""
        if not self.frames:
            return True
        self.write_mono = time.monotonic_ns()
        why = write_frames(self.ws, self.frames[0] if len(self.frames) == 1 else b"".join(self.frames))
        return self._after_write(why, time.monotonic_ns())

    def _after_write(self, why: str | None, sent_mono: int) -> bool:
        """Expect the answers of what was written, or refuse every request as not sent."""
        api = self.api
        if why is not None:
            for i, slot in enumerate(self.slots):
                if not isinstance(slot, BinanceError):
                    self.slots[i] = NotSent(0, f"send failed: {why}")
            api.breaker.record_failure(Failure.TIMEOUT)
            return False
        self.sent_mono = sent_mono
        api.write_ns.append(self.sent_mono - self.write_mono)
        # (after the write: no answer can be read before the event loop runs again)
        for i, slot in enumerate(self.slots):
            if not isinstance(slot, BinanceError):
                self.slots[i] = (slot[0], slot[1], api._expect(slot[1]))
        return True

    def outcome(self, slot: int) -> Awaitable[VenueOrder] | BinanceError:
        """After :meth:`write`: the answer to request ``slot``, or why it was not sent."""
        s = self.slots[slot]
        if isinstance(s, BinanceError):
            return s
        method, rid, fut = s
        api = self.api
        return Deferred(api._order_of, Deferred(api._answer, method, rid, fut, self.ws, self.write_mono, self.sent_mono))


class BinanceWsApi:
    """WebSocket API session (``/ws-fapi/v1``): signed requests, answers matched by id."""

    def __init__(self, url: str, signer: Signer, instruments: InstrumentIndex, *,
                 budget: RateBudget, breaker: CircuitBreaker, clock: Clock,
                 timeout_s: float = 5.0, recv_window_ms: int | None = None) -> None:
        self.url = url
        self.signer = signer
        self.instruments = instruments
        self.budget, self.breaker, self.clock = budget, breaker, clock
        self.timeout_s = timeout_s
        self.recv_window_ms = recv_window_ms
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self.connects = 0
        self.down_since_mono = 0
        self.reconnect_ns: deque[int] = deque(maxlen=1000)   # down → up again, per reconnect
        #: time inside the socket write of each request (the kernel's share of "target seen
        #: → request on the socket"; on loopback it includes delivery to the local venue)
        self.write_ns: deque[int] = deque(maxlen=10_000)
        self.counters = {"requests": 0, "errors": 0, "orphan_answers": 0, "disconnects": 0,
                         "python_frames": 0}
        self.encoder = _native_encoder(signer, instruments, recv_window_ms)

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def connect(self) -> None:
        if self.connected:
            return
        self._ws = await websockets.connect(self.url, max_size=2 ** 22, ping_interval=20,
                                           ping_timeout=20, open_timeout=self.timeout_s,
                                           compression=None)
        self.connects += 1
        if self.down_since_mono:
            self.reconnect_ns.append(time.monotonic_ns() - self.down_since_mono)
            self.down_since_mono = 0
        self._reader = asyncio.get_running_loop().create_task(self._read_loop(self._ws))

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
            self._reader = None
        self._fail_all("session closed")

    def _fail_all(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(0, why))

    async def _read_loop(self, ws: Any) -> None:
        try:
            async for raw in ws:
                recv = time.monotonic_ns()
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                fut = self._pending.pop(str(msg.get("id")), None)
                if fut is None:
                    self.counters["orphan_answers"] += 1
                    continue
                if not fut.done():
                    fut.set_result((msg, recv))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.counters["disconnects"] += 1
            self.down_since_mono = self.down_since_mono or time.monotonic_ns()
            if self._ws is ws:
                self._ws = None
            self._fail_all("WebSocket API connection lost")

    def send(self, method: str, params: Mapping[str, object], *, signed: bool = True,
             cost: Cost | None = None) -> Awaitable[tuple[Any, int, int]]:
        """Send one request: the frame is written NOW, before this returns; the returned
        awaitable gives ``(result, sent_mono, recv_mono)`` (errors as in BinanceRest). Why:
        a batch of changes is written back to back, before any await lets the event loop
        run other work between them (and before the caller's next plan could miss the
        orders just sent). Raises NotSent at once when nothing was written (not connected,
        the budget or breaker refuses, the connection is closing).
        """
        rid, fut, frame, ws = self._prepare(method, params, signed, cost)
        write_mono = time.monotonic_ns()
        try:
            written = _write_frames_now(ws, frame)
        except (AttributeError, OSError, RuntimeError) as exc:
            raise self._not_sent(rid, exc) from None
        if not written:
            raise self._not_sent(rid, websockets.ConnectionClosed(None, None))
        sent = time.monotonic_ns()
        self.write_ns.append(sent - write_mono)
        return Deferred(self._answer, method, rid, fut, ws, write_mono, sent)

    def _prepare(self, method: str, params: Mapping[str, object], signed: bool,
                 cost: Cost | None) -> tuple[str, asyncio.Future, bytes, Any]:
        """Checks (connection, budget, breaker), signing and framing; registers the answer."""
        if not self.connected:
            raise NotSent(0, "WebSocket API not connected")
        self._admit(cost or cost_of(method))
        rid = f"{next(self._ids)}"
        frame = _client_frame(self._json(rid, method, params, self.clock.venue_ms() if signed else None))
        return rid, self._expect(rid), frame, self._ws

    def _admit(self, cost: Cost) -> None:
        """The shared rate budget and the breaker let one more request go, or NotSent."""
        try:
            self.budget.acquire(cost)
        except RateLimited as exc:
            raise NotSent(0, f"rate budget: {exc}", 0, exc.retry_after_ns / 1e9) from None
        if not self.breaker.allow():
            raise NotSent(0, f"circuit open for {self.breaker.retry_in_ns() / 1e9:.3f}s")

    def _python_order_frame(self, method: int, rid: int, instrument: int, client_id: str, side: int, price: int,
                            qty: int, post_only: bool, reduce_only: bool, ts_ms: int) -> bytes:
        """One order request framed by the Python encoder (``method``: 0 place, 1 modify, 2
        cancel, as ``mmshm._native.wsorder``): the native order path's fallback for a request
        its encoder refuses, exactly as ``WsOrderBatch`` frames it."""
        spec = self.instruments.spec(instrument)
        if method == 0:
            name, params = "order.place", order_params(OrderRequest(spec.symbol, Side(side), price, qty, client_id,
                                                                    post_only=post_only, reduce_only=reduce_only), spec)
        elif method == 1:
            name, params = "order.modify", modify_params(spec.symbol, client_id, Side(side), price, qty, spec)
        else:
            name, params = "order.cancel", _id_params(spec.symbol, client_id, None)
        self.counters["python_frames"] += 1
        return _client_frame(self._json(str(rid), name, params, ts_ms))

    def _json(self, rid: str, method: str, params: Mapping[str, object], signed_at_ms: int | None) -> bytes:
        """A request's JSON text, signed at ``signed_at_ms`` unless None (the Python encoder)."""
        if signed_at_ms is not None:
            params = ws_signed_params(self.signer, params, signed_at_ms, self.recv_window_ms)
        return orjson.dumps({"id": rid, "method": method, "params": params})

    def _expect(self, rid: str) -> asyncio.Future:
        """Register the answer to request ``rid`` (matched by id in the read loop)."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.counters["requests"] += 1
        return fut

    def batch(self) -> "WsOrderBatch | None":
        """A batch of order requests to frame now and write in one socket write; None when
        the session is down (the caller goes over REST)."""
        return WsOrderBatch(self, self._ws) if self.connected else None

    def _not_sent(self, rid: str, exc: BaseException) -> NotSent:
        self._pending.pop(rid, None)
        self.breaker.record_failure(Failure.TIMEOUT)
        return NotSent(0, f"send failed: {type(exc).__name__}")

    async def _answer(self, method: str, rid: str, fut: asyncio.Future, ws: Any, write_mono: int,
                      sent: int = 0) -> tuple[Any, int, int]:
        """After the write: the answer matched by id, budget and breaker updated, errors typed."""
        if not sent:                                 # (request(): stamped here, right after the write)
            sent = time.monotonic_ns()
            self.write_ns.append(sent - write_mono)
        try:
            if getattr(ws, "paused", False):  # the transport's buffer is over its high-water mark
                await ws.drain()
            async with asyncio.timeout(self.timeout_s):
                msg, recv = await fut
        except TimeoutError:
            self._pending.pop(rid, None)
            self.breaker.record_failure(Failure.TIMEOUT)
            raise UnknownStatus(0, f"no answer to {method} within {self.timeout_s}s") from None
        except ConnectionLost as exc:
            self.breaker.record_failure(Failure.TIMEOUT)
            raise UnknownStatus(0, f"{exc.msg} after {method} was sent") from None
        if msg.get("rateLimits"):
            self.budget.update_from_ws(msg["rateLimits"])
        status = int(msg.get("status", 0))
        if status == 200:
            self.breaker.record_success()
            return msg.get("result"), sent, recv
        err_body = msg.get("error") or {}
        retry_after = None
        data = err_body.get("data") if isinstance(err_body, Mapping) else None
        if isinstance(data, Mapping) and data.get("retryAfter"):
            retry_after = max(0.0, (int(data["retryAfter"]) - self.clock.venue_ms()) / 1000)
        err = error_from(status, err_body, retry_after)
        self.counters["errors"] += 1
        if isinstance(err, RateLimitExceeded):
            self.budget.on_429(retry_after)
        elif isinstance(err, Banned):
            self.budget.on_418(retry_after)
        self.breaker.record_failure(_failure_kind(err), int((retry_after or 0) * 1e9))
        raise err

    def _order(self, res: Any, sent: int, recv: int) -> VenueOrder:
        o = parse_order(res, self.instruments)
        o.sent_mono, o.recv_mono = sent, recv
        return o

    async def _order_of(self, answer: Awaitable[tuple[Any, int, int]]) -> VenueOrder:
        return self._order(*await answer)

    # ``*_now``: the frame is written before the call returns (see :meth:`send`)
    def place_now(self, req: OrderRequest) -> Awaitable[VenueOrder]:
        spec = self.instruments.get(req.symbol)[1]
        return Deferred(self._order_of, self.send("order.place", order_params(req, spec)))

    def modify_now(self, symbol: str, client_id: str, side: Side, price: int, qty: int) -> Awaitable[VenueOrder]:
        spec = self.instruments.get(symbol)[1]
        return Deferred(self._order_of,
                        self.send("order.modify", modify_params(symbol, client_id, side, price, qty, spec)))

    def cancel_now(self, symbol: str, client_id: str | None = None,
                   venue_order_id: int | None = None) -> Awaitable[VenueOrder]:
        return Deferred(self._order_of, self.send("order.cancel", _id_params(symbol, client_id, venue_order_id)))

    def query_now(self, symbol: str, client_id: str | None = None,
                  venue_order_id: int | None = None) -> Awaitable[VenueOrder]:
        return Deferred(self._order_of, self.send("order.status", _id_params(symbol, client_id, venue_order_id)))


# --------------------------------------------------------------------------- gateway

class BinanceTrading:
    """Order entry for the executor: WebSocket API when up, REST otherwise; plus the
    REST-only account calls. One per process; owns its sessions.

    ``place/modify/cancel/query`` raise: NotSent (refused locally or the connection
    failed before the write: safe to retry), UnknownStatus (may have executed: query),
    or a typed BinanceError for a venue reject.
    """

    def __init__(self, endpoints: Endpoints, signer: Signer, instruments: InstrumentIndex | Sequence[InstrumentSpec], *,
                 budget: RateBudget | None = None, breaker: CircuitBreaker | None = None,
                 recv_window_ms: int = DEFAULT_RECV_WINDOW_MS, timeout_s: float = 5.0,
                 prefer_ws: bool = True) -> None:
        self.endpoints = endpoints
        self.instruments = instruments if isinstance(instruments, InstrumentIndex) else InstrumentIndex(instruments)
        self.budget = budget or RateBudget()
        self.breaker = breaker or CircuitBreaker()
        self.clock = Clock()
        self.rest = BinanceRest(endpoints.rest, signer, self.instruments, budget=self.budget,
                                breaker=self.breaker, clock=self.clock, recv_window_ms=recv_window_ms,
                                timeout_s=timeout_s)
        self.ws = BinanceWsApi(endpoints.ws_api, signer, self.instruments, budget=self.budget,
                               breaker=self.breaker, clock=self.clock, timeout_s=timeout_s,
                               recv_window_ms=recv_window_ms)
        self.prefer_ws = prefer_ws
        self.counters = {"via_ws": 0, "via_rest": 0, "ws_fallbacks": 0, "ws_connect_failures": 0}

    async def start(self, *, connect_ws: bool = True, exchange_info: bool = True) -> None:
        """Open REST, measure the clock offset, seed the budget, connect the WS API."""
        await self.rest.start()
        await self.rest.sync_time()
        if exchange_info:
            await self.rest.exchange_info(seed_budget=True)
        if connect_ws and self.prefer_ws:
            await self.ensure_ws()

    async def ensure_ws(self) -> bool:
        """(Re)connect the WebSocket API session; False if it cannot be reached now."""
        if self.ws.connected:
            return True
        try:
            await self.ws.connect()
            return True
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
            self.counters["ws_connect_failures"] += 1
            log.warning("WebSocket API connect failed", extra={"err": f"{type(exc).__name__}: {exc}"})
            return False

    async def close(self) -> None:
        await self.ws.close()
        await self.rest.close()

    async def __aenter__(self) -> "BinanceTrading":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _route_now(self, ws_send: Callable[[], Awaitable[VenueOrder]],
                   rest_call: Callable[[], Awaitable[VenueOrder]]) -> Awaitable[VenueOrder]:
        """The WebSocket API when its session is up (the frame is written before this
        returns), else REST (asynchronous by nature: it starts when the result is
        awaited). A WebSocket request that could not be written because the session just
        died goes over REST; refused by the budget or breaker, it is not sent at all."""
        if self.prefer_ws and self.ws.connected:
            try:
                answer = ws_send()
                self.counters["via_ws"] += 1
                return answer
            except NotSent as exc:
                if self.ws.connected or "circuit" in exc.msg or "rate budget" in exc.msg:
                    raise
                self.counters["ws_fallbacks"] += 1   # session died before the write: REST
        return Deferred(self._rest_counted, rest_call)

    async def _rest_counted(self, rest_call: Callable[[], Awaitable[VenueOrder]]) -> VenueOrder:
        r = await rest_call()
        self.counters["via_rest"] += 1
        return r

    def ws_batch(self) -> WsOrderBatch | None:
        """Order requests to write together over the WebSocket API (see WsOrderBatch), or
        None when order entry does not go over it now (REST: the ``*_now`` calls)."""
        return self.ws.batch() if self.ws_session() is not None else None

    def ws_session(self) -> "BinanceWsApi | None":
        """The WebSocket API session when order entry goes over it now (preferred and
        connected), else None (REST). The executor's native order path writes through it."""
        return self.ws if self.prefer_ws and self.ws.connected else None

    # ``*_now``: over the WebSocket API the request is on the socket when the call returns;
    # NotSent is raised at once when nothing could be written. Await the result for the answer.
    def place_now(self, req: OrderRequest) -> Awaitable[VenueOrder]:
        return self._route_now(lambda: self.ws.place_now(req), lambda: self.rest.place(req))

    def modify_now(self, symbol: str, client_id: str, side: Side, price: int, qty: int) -> Awaitable[VenueOrder]:
        return self._route_now(lambda: self.ws.modify_now(symbol, client_id, side, price, qty),
                               lambda: self.rest.modify(symbol, client_id, side, price, qty))

    def cancel_now(self, symbol: str, client_id: str | None = None,
                   venue_order_id: int | None = None) -> Awaitable[VenueOrder]:
        return self._route_now(lambda: self.ws.cancel_now(symbol, client_id, venue_order_id),
                               lambda: self.rest.cancel(symbol, client_id, venue_order_id))

    async def place(self, req: OrderRequest) -> VenueOrder:
        return await self.place_now(req)

    async def modify(self, symbol: str, client_id: str, side: Side, price: int, qty: int) -> VenueOrder:
        return await self.modify_now(symbol, client_id, side, price, qty)

    async def cancel(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None) -> VenueOrder:
        return await self.cancel_now(symbol, client_id, venue_order_id)

    async def query(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None) -> VenueOrder:
        return await self._route_now(lambda: self.ws.query_now(symbol, client_id, venue_order_id),
                                     lambda: self.rest.query(symbol, client_id, venue_order_id))

    # REST-only calls, passed through
    async def place_batch(self, reqs: Sequence[OrderRequest]) -> list[VenueOrder | BinanceError]:
        return await self.rest.place_batch(reqs)

    async def modify_batch(self, items: Sequence[tuple[str, str, Side, int, int]]) -> list[VenueOrder | BinanceError]:
        return await self.rest.modify_batch(items)

    async def cancel_batch(self, symbol: str, client_ids: Sequence[str]) -> list[VenueOrder | BinanceError]:
        return await self.rest.cancel_batch(symbol, client_ids)

    async def cancel_all_open(self, symbol: str) -> None:
        await self.rest.cancel_all_open(symbol)

    async def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        return await self.rest.open_orders(symbol)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return await self.rest.positions(symbol)

    async def user_trades(self, symbol: str, **kw: Any) -> list[Trade]:
        return await self.rest.user_trades(symbol, **kw)

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> dict:
        return await self.rest.countdown_cancel_all(symbol, countdown_ms)


# --------------------------------------------------------------------------- user stream

class UserStream:
    """The user-data stream: listen key, keepalive, reconnect, typed events.

    ``run(on_event)`` calls ``on_event(event)`` (sync or async) for each
    :data:`UserEvent`, starting with ``StreamStatus(connected=True, reconnect=False)`` and,
    after each drop, ``StreamStatus(connected=False)`` then
    ``StreamStatus(connected=True, reconnect=True)``: the executor reconciles then.
    """

    def __init__(self, ws_base: str, rest: BinanceRest, instruments: InstrumentIndex, *,
                 keepalive_s: float = 30 * 60, backoff_base_s: float = 0.1, backoff_cap_s: float = 5.0,
                 rng: Any = None) -> None:
        import random
        self.ws_base = ws_base.rstrip("/")
        self.rest = rest
        self.instruments = instruments
        self.keepalive_s = keepalive_s
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self._rng = rng or random.Random()
        self.stats = StreamParseStats()
        self.listen_key: str | None = None
        self.connects = 0
        self.messages = 0
        self.down_since_mono = 0
        self.reconnect_ns: deque[int] = deque(maxlen=1000)
        self._stop = asyncio.Event()
        self._ws: Any = None

    def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.close())

    async def _emit(self, cb: Callable[[UserEvent], Any], ev: UserEvent) -> None:
        r = cb(ev)
        if asyncio.iscoroutine(r):
            await r

    async def _keepalive(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.keepalive_s)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.rest.keepalive_listen_key()
            except BinanceError as exc:
                log.warning("listen key keepalive failed", extra={"err": str(exc)})

    async def run(self, on_event: Callable[[UserEvent], Any]) -> None:
        attempt = 0
        keeper = asyncio.get_running_loop().create_task(self._keepalive())
        try:
            while not self._stop.is_set():
                try:
                    if self.listen_key is None:
                        self.listen_key = await self.rest.new_listen_key()
                    self._ws = await websockets.connect(f"{self.ws_base}/ws/{self.listen_key}",
                                                        max_size=2 ** 22, ping_interval=20, compression=None)
                except (BinanceError, OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
                    if isinstance(exc, websockets.InvalidStatus):
                        self.listen_key = None   # stale key: make a new one
                    attempt += 1
                    await self._sleep_backoff(attempt)
                    continue
                self.connects += 1
                if self.down_since_mono:
                    self.reconnect_ns.append(time.monotonic_ns() - self.down_since_mono)
                    self.down_since_mono = 0
                await self._emit(on_event, StreamStatus(True, self.connects > 1, "", time.time_ns()))
                attempt = 0
                reason = "closed"
                try:
                    async for raw in self._ws:
                        self.messages += 1
                        try:
                            msg = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            self.stats.drop("bad_json")
                            continue
                        ev = parse_user_event(msg, self.instruments, self.stats)
                        if ev is None:
                            continue
                        if isinstance(ev, ListenKeyExpired):
                            self.listen_key = None
                            await self._emit(on_event, ev)
                            break
                        await self._emit(on_event, ev)
                except websockets.ConnectionClosed as exc:
                    reason = f"connection closed: {exc}"
                finally:
                    ws, self._ws = self._ws, None
                    if ws is not None:
                        await ws.close()
                self.down_since_mono = time.monotonic_ns()
                await self._emit(on_event, StreamStatus(False, False, reason, time.time_ns()))
                if not self._stop.is_set():
                    await self._sleep_backoff(1)
        finally:
            keeper.cancel()

    async def _sleep_backoff(self, attempt: int) -> None:
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * (2 ** min(attempt, 20)))
        try:
            await asyncio.wait_for(self._stop.wait(), self._rng.uniform(0, ceiling))
        except asyncio.TimeoutError:
            pass
