"""The simulated exchange: orders, accounts and the matching core, independent of the wire.

REST, the WebSocket API and the control API all call :class:`SimExchange`; it validates
an order the way Binance does (raising :class:`VenueError` with Binance's code), runs it
through the Cython :class:`MatchingCore` of its symbol, updates positions and balances,
and reports every change as a Binance user-data event to its listeners.
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Callable, Iterable

from mmshm._native.matching import MatchingCore
from mmshm._native import matching as M
from mmshm.records import FEE_SCALE
from mmshm.venues.sim import errors as E
from mmshm.venues.sim.accounts import Account, Trade, fmt_money, round_half_up
from mmshm.venues.sim.symbols import SymbolSpec

SIDES = {"BUY": M.BUY, "SELL": M.SELL}
TIFS = {"GTC": M.GTC, "IOC": M.IOC, "FOK": M.FOK, "GTX": M.GTX}
ORDER_TYPES = ("LIMIT", "MARKET")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
MAX_CLOSED_ORDERS = 100_000
#: Maintenance margin rate of every position: Binance's first notional bracket of BTCUSDT
#: (0.40%, no maintenance amount). The sim has no brackets above it.
MAINT_MARGIN_RATE = Fraction(4, 1000)
#: Leverage of a symbol nobody set with POST /fapi/v1/leverage (Binance's default).
DEFAULT_LEVERAGE = 20

Listener = Callable[[Account, dict], None]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _bool(params: dict, name: str) -> bool:
    v = params.get(name)
    if v in (None, ""):
        return False
    s = str(v).lower()
    if s not in ("true", "false"):
        raise E.VenueError(E.ILLEGAL_CHARS, f"Illegal characters found in parameter '{name}'; legal range is 'true, false'.")
    return s == "true"


def _int(params: dict, name: str) -> int | None:
    v = params.get(name)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise E.illegal(name) from None


@dataclass
class Order:
    """An order as the venue knows it (prices in ticks, quantities in lots)."""
    order_id: int
    symbol: str
    account: str
    client_order_id: str
    side: str
    type: str
    tif: str
    price: int
    orig_qty: int
    reduce_only: bool
    stp: str
    time_ms: int
    update_ms: int
    executed: int = 0
    cum_ticklots: int = 0
    status: str = "NEW"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> int:
        return self.orig_qty - self.executed


@dataclass
class SymbolState:
    spec: SymbolSpec
    core: MatchingCore
    open_orders: dict[int, Order] = field(default_factory=dict)
    last_update_id: int = 0
    last_trade_px: int = 0


class SimExchange:
    """Every symbol, account and order of the simulated venue."""

    def __init__(self, specs: Iterable[SymbolSpec], *, gtx_mode: str = "reject", order_capacity: int = 4096,
                 max_levels: int = 8192, max_open_orders: int = 200, clock_ms: Callable[[], int] = now_ms):
        if gtx_mode not in ("reject", "expire"):
            raise ValueError("gtx_mode must be 'reject' (Binance since 2023: -5022) or 'expire'")
        self.symbols: dict[str, SymbolState] = {
            s.symbol: SymbolState(s, MatchingCore(order_capacity, max_levels)) for s in specs}
        self.gtx_mode = gtx_mode
        self.max_open_orders = max_open_orders
        self.clock_ms = clock_ms
        self.accounts: dict[str, Account] = {}        # by api key
        self._acct_ids: dict[str, int] = {}           # account name -> core account id
        self._acct_by_name: dict[str, Account] = {}
        self.orders: dict[int, Order] = {}
        self._client_ids: dict[tuple[str, str, str], int] = {}   # (account, symbol, clientId) -> open order id
        self._closed: dict[int, None] = {}   # closed order ids, oldest first
        self._next_order_id = 4_000_000_000 + (time.time_ns() // 1_000_000) % 1_000_000_000
        self.listeners: list[Listener] = []
        self.countdowns: dict[tuple[str, str], int] = {}   # (account, symbol) -> deadline ms
        self.counters = {"orders": 0, "fills": 0, "cancels": 0, "rejects": 0, "countdown_fired": 0}

    # ------------------------------------------------------------------ setup

    def add_account(self, name: str, api_key: str, secret: str, *, balance: Decimal | str = "100000",
                    asset: str = "USDT", maker_fee_ppm: int = 200, taker_fee_ppm: int = 500) -> Account:
        acct = Account(name, api_key, secret, maker_fee_ppm, taker_fee_ppm)
        acct.balances[asset] = int(Decimal(str(balance)) * FEE_SCALE)
        self.accounts[api_key] = acct
        self._acct_ids[name] = len(self._acct_ids) + 1
        self._acct_by_name[name] = acct
        return acct

    def state(self, symbol: str | None) -> SymbolState:
        if not symbol:
            raise E.mandatory("symbol")
        st = self.symbols.get(str(symbol).upper())
        if st is None:
            raise E.VenueError(E.BAD_SYMBOL, "Invalid symbol.")
        return st

    # ------------------------------------------------------------------ events

    def _emit(self, acct: Account, event: dict) -> None:
        for listener in self.listeners:
            listener(acct, event)

    def _open_notional(self, acct: Account, st: SymbolState) -> tuple[str, str]:
        bids = asks = 0
        for o in st.open_orders.values():
            if o.account != acct.name:
                continue
            if o.side == "BUY":
                bids += o.price * o.remaining
            else:
                asks += o.price * o.remaining
        k = st.spec.tick * st.spec.lot
        return f"{bids * k:.5f}", f"{asks * k:.5f}"

    def _order_update(self, acct: Account, o: Order, x: str, *, last_qty: int = 0, last_px: int = 0,
                      fee: int = 0, trade_id: int = 0, maker: bool = False, realized: int = 0) -> None:
        st = self.symbols[o.symbol]
        spec = st.spec
        t = self.clock_ms()
        b, a = self._open_notional(acct, st)
        ev = {"e": "ORDER_TRADE_UPDATE", "E": t, "T": t, "o": {
            "s": o.symbol, "c": o.client_order_id, "S": o.side, "o": o.type, "f": o.tif,
            "q": spec.fmt_qty(o.orig_qty), "p": spec.fmt_px(o.price) if o.price else "0",
            "ap": self._avg(o), "sp": "0", "x": x, "X": o.status, "i": o.order_id,
            "l": spec.fmt_qty(last_qty), "z": spec.fmt_qty(o.executed),
            "L": spec.fmt_px(last_px) if last_px else "0",
            "N": spec.quote_asset, "n": fmt_money(fee), "T": t, "t": trade_id,
            "b": b, "a": a, "m": maker, "R": o.reduce_only, "wt": "CONTRACT_PRICE", "ot": o.type,
            "ps": "BOTH", "cp": False, "rp": fmt_money(realized), "pP": False, "si": 0, "ss": 0,
            "V": o.stp, "pm": "NONE", "gtd": 0}}
        self._emit(acct, ev)

    def _account_update(self, acct: Account, st: SymbolState, reason: str) -> None:
        t = self.clock_ms()
        q = st.spec.quote_asset
        pos = acct.position(st.spec.symbol)
        wb = acct.balances.get(q, 0)
        ev = {"e": "ACCOUNT_UPDATE", "E": t, "T": t, "a": {
            "m": reason,
            # bc is the balance change other than PnL and commission: none from trading
            "B": [{"a": q, "wb": fmt_money(wb), "cw": fmt_money(wb), "bc": fmt_money(0)}],
            "P": [{"s": st.spec.symbol, "pa": st.spec.fmt_qty(pos.qty), "ep": self._entry(st, pos.entry),
                   "bep": self._entry(st, pos.entry), "cr": fmt_money(pos.realized),
                   "up": fmt_money(self.unrealized(acct, st)), "mt": "cross", "iw": "0", "ps": "BOTH"}]}}
        self._emit(acct, ev)

    # ------------------------------------------------------------------ formatting

    def _avg(self, o: Order) -> str:
        if o.executed == 0:
            return "0"
        return self.symbols[o.symbol].spec.fmt_avg(Fraction(o.cum_ticklots, o.executed))

    @staticmethod
    def _entry(st: SymbolState, entry: Fraction) -> str:
        return st.spec.fmt_avg(entry) if entry else "0.0"

    def order_json(self, o: Order, *, with_time: bool = False) -> dict:
        """An order as REST and the WebSocket API return it."""
        spec = self.symbols[o.symbol].spec
        cum_quote = Decimal(o.cum_ticklots) * spec.tick * spec.lot
        d = {"orderId": o.order_id, "symbol": o.symbol, "status": o.status, "clientOrderId": o.client_order_id,
             "price": spec.fmt_px(o.price) if o.price else "0", "avgPrice": self._avg(o) if o.executed else "0.00",
             "origQty": spec.fmt_qty(o.orig_qty), "executedQty": spec.fmt_qty(o.executed),
             "cumQty": spec.fmt_qty(o.executed), "cumQuote": f"{cum_quote:.{spec.price_precision + spec.qty_precision}f}",
             "timeInForce": o.tif, "type": o.type, "reduceOnly": o.reduce_only, "closePosition": False,
             "side": o.side, "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
             "priceProtect": False, "origType": o.type, "priceMatch": "NONE",
             "selfTradePreventionMode": o.stp, "goodTillDate": 0, "updateTime": o.update_ms}
        if with_time:
            d["time"] = o.time_ms
        return d

    # ------------------------------------------------------------------ helpers

    def _store_closed(self, o: Order) -> None:
        st = self.symbols[o.symbol]
        st.open_orders.pop(o.order_id, None)
        self._client_ids.pop((o.account, o.symbol, o.client_order_id), None)
        if o.order_id in self._closed:
            return
        self._closed[o.order_id] = None
        if len(self._closed) > MAX_CLOSED_ORDERS:
            old = next(iter(self._closed))
            del self._closed[old]
            self.orders.pop(old, None)

    def _find(self, acct: Account, st: SymbolState, params: dict) -> Order | None:
        oid = _int(params, "orderId")
        if oid is not None:
            o = self.orders.get(oid)
            return o if o is not None and o.account == acct.name and o.symbol == st.spec.symbol else None
        cid = params.get("origClientOrderId")
        if not cid:
            raise E.mandatory("orderId")
        oid = self._client_ids.get((acct.name, st.spec.symbol, cid))
        if oid is not None:
            return self.orders.get(oid)
        # closed orders stay queryable by client id: newest match wins
        for i in reversed(self._closed):
            o = self.orders.get(i)
            if o is not None and o.account == acct.name and o.symbol == st.spec.symbol and o.client_order_id == cid:
                return o
        return None

    def _process(self, st: SymbolState) -> None:
        """Apply the core's events of its last call: fills and STP cancels of own orders."""
        spec = st.spec
        mptl = spec.money_per_tick_lot
        touched: list[str] = []
        for kind, oid, px, qty, maker, _counter, match in st.core.events():
            o = self.orders.get(oid)
            if o is None:
                continue
            acct = self._acct_by_name[o.account]
            if kind == M.EV_STP_CANCEL_KIND:
                o.status = "EXPIRED_IN_MATCH"
                o.update_ms = self.clock_ms()
                self._store_closed(o)
                self._order_update(acct, o, "EXPIRED")
                continue
            o.executed += qty
            o.cum_ticklots += px * qty
            o.update_ms = self.clock_ms()
            o.status = "FILLED" if o.executed >= o.orig_qty else "PARTIALLY_FILLED"
            fee = acct.fee(px, qty, bool(maker), mptl)
            pos = acct.position(spec.symbol)
            realized = pos.apply(qty if o.side == "BUY" else -qty, px, mptl)
            pos.update_ms = o.update_ms
            acct.settle(spec.quote_asset, realized, fee)
            acct.trades.append(Trade(match, oid, spec.symbol, o.side, px, qty, Fraction(px * qty) * mptl, fee,
                                     realized, bool(maker), o.update_ms))
            if len(acct.trades) > MAX_CLOSED_ORDERS:
                del acct.trades[: len(acct.trades) // 2]
            self.counters["fills"] += 1
            st.last_trade_px = px
            if o.status == "FILLED":
                self._store_closed(o)
            self._order_update(acct, o, "TRADE", last_qty=qty, last_px=px, fee=fee, trade_id=match,
                               maker=bool(maker), realized=realized)
            if acct.name not in touched:
                touched.append(acct.name)
        for name in touched:
            acct = self._acct_by_name[name]
            self._account_update(acct, st, "ORDER")
            self._expire_reduce_only(acct, st)

    def _expire_reduce_only(self, acct: Account, st: SymbolState) -> None:
        """Reduce-only orders that could now increase (or flip) the position expire."""
        pos = acct.position(st.spec.symbol).qty
        for o in list(st.open_orders.values()):
            if o.account != acct.name or not o.reduce_only:
                continue
            reduces = (pos > 0 and o.side == "SELL") or (pos < 0 and o.side == "BUY")
            if not reduces or o.remaining > abs(pos):
                st.core.cancel(o.order_id)
                o.status = "EXPIRED"
                o.update_ms = self.clock_ms()
                self._store_closed(o)
                self._order_update(acct, o, "EXPIRED")

    # ------------------------------------------------------------------ trading

    def place(self, acct: Account, params: dict) -> Order:
        """POST /fapi/v1/order semantics; returns the order after matching."""
        st = self.state(params.get("symbol"))
        spec = st.spec
        side = params.get("side")
        if not side:
            raise E.mandatory("side")
        if side not in SIDES:
            raise E.VenueError(E.INVALID_SIDE, "Invalid side.")
        otype = params.get("type")
        if not otype:
            raise E.mandatory("type")
        if otype not in ORDER_TYPES:
            raise E.VenueError(E.INVALID_ORDER_TYPE, "Invalid orderType.")
        if params.get("positionSide") not in (None, "", "BOTH"):
            raise E.VenueError(-4061, "Order's position side does not match user's setting.")
        if params.get("closePosition") not in (None, "", "false"):
            raise E.VenueError(E.INVALID_ORDER_TYPE, "Invalid orderType.")
        qty = spec.qty_lots(params.get("quantity"))
        reduce_only = _bool(params, "reduceOnly")
        stp = params.get("selfTradePreventionMode") or "EXPIRE_TAKER"
        if stp not in M.STP_MODES:
            raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
        if otype == "LIMIT":
            tif = params.get("timeInForce")
            if not tif:
                raise E.mandatory("timeInForce")
            if tif not in TIFS:
                raise E.VenueError(E.INVALID_TIF, "Invalid timeInForce.")
            price = spec.price_ticks(params.get("price"))
        else:
            if params.get("price") not in (None, ""):
                raise E.VenueError(E.PARAM_NOT_REQUIRED, "Parameter 'price' sent when not required.")
            if params.get("timeInForce") not in (None, ""):
                raise E.VenueError(E.PARAM_NOT_REQUIRED, "Parameter 'timeInForce' sent when not required.")
            tif = "GTC"
            best = st.core.best(M.SELL if side == "BUY" else M.BUY)
            price = 0
        cid = params.get("newClientOrderId") or ("sim" + uuid.uuid4().hex[:19])
        if not CLIENT_ID_RE.match(cid):
            raise E.VenueError(E.INVALID_CL_ORD_ID_LEN, "Client order id is not valid.")
        if (acct.name, spec.symbol, cid) in self._client_ids:
            raise E.VenueError(E.DUPLICATED_CLIENT_ORDER_ID, "ClientOrderId is duplicated.")
        pos = acct.position(spec.symbol)
        if reduce_only and (pos.qty == 0 or (pos.qty > 0) == (side == "BUY") or qty > abs(pos.qty)):
            # stricter than Binance (which trims an oversized reduce-only order): never flips
            raise E.VenueError(E.REDUCE_ONLY_REJECT, "ReduceOnly Order is rejected.")
        notional_px = price if otype == "LIMIT" else (best[0] if best else st.last_trade_px)
        if not reduce_only and notional_px and not spec.notional_ok(notional_px, qty):
            raise E.VenueError(E.MIN_NOTIONAL, f"Order's notional must be no smaller than {spec.min_notional:f} "
                                               "(unless you choose reduce only).")
        n_open = sum(1 for o in st.open_orders.values() if o.account == acct.name)
        if n_open >= self.max_open_orders:
            raise E.VenueError(-2025, "Reach max open order limit.")
        t = self.clock_ms()
        o = Order(self._next_order_id, spec.symbol, acct.name, cid, side, otype, tif, price, qty,
                  reduce_only, stp, t, t)
        self._next_order_id += 1
        self.orders[o.order_id] = o
        res = st.core.submit(o.order_id, SIDES[side], price, qty, self._acct_ids[acct.name], TIFS[tif],
                             M.STP_MODES[stp], otype == "MARKET")
        self.counters["orders"] += 1
        if res == M.GTX_REJECT:
            if self.gtx_mode == "reject":
                del self.orders[o.order_id]
                raise E.VenueError(E.GTX_ORDER_REJECT, E.MSG_GTX)
            o.status = "EXPIRED"
            self._emit_new(acct, st, o)
            self._store_closed(o)
            self._order_update(acct, o, "EXPIRED")
            return o
        if res == M.EXPIRED and tif == "FOK" and not st.core.events():
            del self.orders[o.order_id]
            raise E.VenueError(E.FOK_ORDER_REJECT, E.MSG_FOK)
        if res == M.FULL or res == M.DUPLICATE:
            del self.orders[o.order_id]
            raise E.VenueError(-2025, "Reach max open order limit.")
        self._emit_new(acct, st, o)
        self._process(st)
        if res == M.RESTING:
            st.open_orders[o.order_id] = o
            self._client_ids[(acct.name, spec.symbol, cid)] = o.order_id
        elif res in (M.EXPIRED, M.STP_EXPIRED):
            o.status = "EXPIRED" if res == M.EXPIRED else "EXPIRED_IN_MATCH"
            o.update_ms = self.clock_ms()
            self._store_closed(o)
            self._order_update(acct, o, "EXPIRED")
        else:
            self._store_closed(o)
        return o

    def _emit_new(self, acct: Account, st: SymbolState, o: Order) -> None:
        """The NEW event comes first, before any fill of the order (as Binance sends it)."""
        prev, o.status = o.status, "NEW"
        self._order_update(acct, o, "NEW")
        o.status = prev

    def cancel(self, acct: Account, params: dict) -> Order:
        """DELETE /fapi/v1/order semantics (-2011 when the order is unknown or closed)."""
        st = self.state(params.get("symbol"))
        if _int(params, "orderId") is None and not params.get("origClientOrderId"):
            raise E.mandatory("orderId")
        o = self._find(acct, st, params)
        if o is None or not o.is_open:
            raise E.unknown_order()
        return self._cancel(acct, st, o)

    def _cancel(self, acct: Account, st: SymbolState, o: Order, x: str = "CANCELED") -> Order:
        st.core.cancel(o.order_id)
        o.status = "CANCELED"
        o.update_ms = self.clock_ms()
        self._store_closed(o)
        self.counters["cancels"] += 1
        self._order_update(acct, o, x)
        return o

    def cancel_all(self, acct: Account, symbol: str) -> list[Order]:
        st = self.state(symbol)
        mine = [o for o in list(st.open_orders.values()) if o.account == acct.name]
        return [self._cancel(acct, st, o) for o in mine]

    def modify(self, acct: Account, params: dict) -> Order:
        """PUT /fapi/v1/order semantics: the order is re-queued (loses priority), keeps its id."""
        st = self.state(params.get("symbol"))
        spec = st.spec
        if _int(params, "orderId") is None and not params.get("origClientOrderId"):
            raise E.mandatory("orderId")
        side = params.get("side")
        if not side:
            raise E.mandatory("side")
        qty = spec.qty_lots(params.get("quantity"))
        price = spec.price_ticks(params.get("price"))
        o = self._find(acct, st, params)
        if o is None or not o.is_open:
            raise E.no_such_order()
        if side != o.side:
            raise E.VenueError(E.INVALID_SIDE, "Invalid side.")
        if o.type != "LIMIT":
            raise E.VenueError(E.INVALID_ORDER_TYPE, "Invalid orderType.")
        if qty == o.orig_qty and price == o.price:
            raise E.VenueError(E.SAME_ORDER, "No need to modify the order.")
        if not o.reduce_only and not spec.notional_ok(price, qty):
            raise E.VenueError(E.MIN_NOTIONAL, f"Order's notional must be no smaller than {spec.min_notional:f} "
                                               "(unless you choose reduce only).")
        if qty <= o.executed:
            return self._cancel(acct, st, o)
        st.core.cancel(o.order_id)
        if o.tif == "GTX":
            res = st.core.submit(o.order_id, SIDES[o.side], price, qty - o.executed, self._acct_ids[acct.name],
                                 M.GTX, M.STP_MODES["NONE"], False)
            if res == M.GTX_REJECT:
                o.price, o.orig_qty = price, qty
                return self._cancel(acct, st, o)
        else:
            res = st.core.submit(o.order_id, SIDES[o.side], price, qty - o.executed, self._acct_ids[acct.name],
                                 TIFS[o.tif], M.STP_MODES["NONE"], False)
        o.price, o.orig_qty, o.stp = price, qty, "NONE"
        o.update_ms = self.clock_ms()
        events = st.core.events()
        self._order_update(acct, o, "AMENDMENT")
        if events:
            self._process(st)
        if res in (M.EXPIRED, M.STP_EXPIRED) and o.is_open:
            o.status = "EXPIRED"
            self._store_closed(o)
            self._order_update(acct, o, "EXPIRED")
        elif not o.is_open:
            self._store_closed(o)
        return o

    def query(self, acct: Account, params: dict) -> Order:
        st = self.state(params.get("symbol"))
        o = self._find(acct, st, params)
        if o is None:
            raise E.no_such_order()
        return o

    def open_orders(self, acct: Account, symbol: str | None = None) -> list[Order]:
        states = [self.state(symbol)] if symbol else list(self.symbols.values())
        return [o for st in states for o in st.open_orders.values() if o.account == acct.name]

    # ------------------------------------------------------------------ dead-man switch

    def countdown(self, acct: Account, symbol: str, countdown_ms: int) -> None:
        """Arm (or with 0 disarm) the countdown cancel-all of acct's orders in symbol."""
        st = self.state(symbol)
        key = (acct.name, st.spec.symbol)
        if countdown_ms <= 0:
            self.countdowns.pop(key, None)
        else:
            self.countdowns[key] = self.clock_ms() + countdown_ms

    def check_countdowns(self) -> int:
        """Fire expired countdowns; returns how many orders were canceled."""
        t = self.clock_ms()
        n = 0
        for key, deadline in list(self.countdowns.items()):
            if deadline <= t:
                del self.countdowns[key]
                acct = self._acct_by_name[key[0]]
                n += len(self.cancel_all(acct, key[1]))
                self.counters["countdown_fired"] += 1
        return n

    # ------------------------------------------------------------------ market data in

    def on_level(self, symbol: str, side: int, px: int, qty: int) -> None:
        st = self.symbols[symbol]
        if st.core.set_level(side, px, qty):
            self._process(st)

    def on_trade(self, symbol: str, px: int, qty: int, aggressor: int) -> None:
        st = self.symbols[symbol]
        st.last_trade_px = px
        if st.core.trade(px, qty, aggressor):
            self._process(st)

    def on_top(self, symbol: str, side: int, px: int, qty: int) -> None:
        """A book-ticker update: px is now the best level of side (better levels are gone)."""
        st = self.symbols[symbol]
        for lpx, _ in st.core.levels(side, 64):
            if (side == M.BUY and lpx > px) or (side == M.SELL and lpx < px):
                st.core.set_level(side, lpx, 0)
                self._process(st)
            else:
                break
        self.on_level(symbol, side, px, qty)

    def on_snapshot(self, symbol: str, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        st = self.symbols[symbol]
        st.core.clear_side(M.BUY)
        st.core.clear_side(M.SELL)
        for px, q in bids:
            st.core.set_level(M.BUY, px, q)
            self._process(st)
        for px, q in asks:
            st.core.set_level(M.SELL, px, q)
            self._process(st)

    # ------------------------------------------------------------------ account views

    def mark_ticks(self, st: SymbolState) -> Fraction:
        b, a = st.core.best(M.BUY), st.core.best(M.SELL)
        if b and a:
            return Fraction(b[0] + a[0], 2)
        if b or a:
            return Fraction((b or a)[0])
        return Fraction(st.last_trade_px)

    def unrealized(self, acct: Account, st: SymbolState) -> Fraction:
        pos = acct.positions.get(st.spec.symbol)
        if pos is None or pos.qty == 0:
            return Fraction(0)
        return (self.mark_ticks(st) - pos.entry) * pos.qty * st.spec.money_per_tick_lot

    def margins(self, acct: Account, st: SymbolState) -> tuple[Fraction, Fraction, Fraction]:
        """(position initial, open-order initial, maintenance) margin in FEE_SCALE units, cross, one-way.

        Position: |notional at mark| / leverage; maintenance: |notional| x MAINT_MARGIN_RATE.
        Open orders: what each side would add to the position if it all filled (buys first
        close a short, sells a long), at the orders' prices, over leverage; the larger side
        counts, as at Binance, since both sides cannot fill into a bigger position at once."""
        spec = st.spec
        lev = acct.leverage.get(spec.symbol, DEFAULT_LEVERAGE)
        pos = acct.positions.get(spec.symbol)
        qty = pos.qty if pos is not None else 0
        notional = abs(qty) * self.mark_ticks(st) * spec.money_per_tick_lot
        bq = bn = aq = an = 0
        for o in st.open_orders.values():
            if o.account != acct.name or o.reduce_only:
                continue
            if o.side == "BUY":
                bq, bn = bq + o.remaining, bn + o.price * o.remaining
            else:
                aq, an = aq + o.remaining, an + o.price * o.remaining
        long_open = max(0, bq - max(0, -qty))
        short_open = max(0, aq - max(0, qty))
        opening = max(Fraction(bn * long_open, bq) if bq else Fraction(0),
                      Fraction(an * short_open, aq) if aq else Fraction(0))
        return notional / lev, opening * spec.money_per_tick_lot / lev, notional * MAINT_MARGIN_RATE

    def _asset_margins(self, acct: Account, asset: str) -> tuple[Fraction, Fraction, Fraction]:
        tot = [Fraction(0)] * 3
        for st in self.symbols.values():
            if st.spec.quote_asset == asset:
                tot = [a + b for a, b in zip(tot, self.margins(acct, st))]
        return tot[0], tot[1], tot[2]

    def position_risk(self, acct: Account, symbol: str | None, version: int = 2) -> list[dict]:
        states = [self.state(symbol)] if symbol else list(self.symbols.values())
        out = []
        for st in states:
            spec = st.spec
            pos = acct.position(spec.symbol)
            mark = self.mark_ticks(st)
            notional = Fraction(pos.qty) * mark * spec.money_per_tick_lot
            d = {"symbol": spec.symbol, "positionSide": "BOTH", "positionAmt": spec.fmt_qty(pos.qty),
                 "entryPrice": self._entry(st, pos.entry), "breakEvenPrice": self._entry(st, pos.entry),
                 "markPrice": spec.fmt_avg(mark) if mark else "0", "unRealizedProfit": fmt_money(self.unrealized(acct, st)),
                 "liquidationPrice": "0", "isolatedMargin": "0", "notional": fmt_money(notional),
                 "marginAsset": spec.quote_asset, "isolatedWallet": "0", "updateTime": pos.update_ms}
            if version == 2:
                d.update({"leverage": str(acct.leverage.get(spec.symbol, DEFAULT_LEVERAGE)),
                          "maxNotionalValue": "1000000", "marginType": "cross", "isAutoAddMargin": "false"})
            else:
                pim, oim, mm = self.margins(acct, st)
                d.update({"initialMargin": fmt_money(pim + oim), "maintMargin": fmt_money(mm),
                          "positionInitialMargin": fmt_money(pim), "openOrderInitialMargin": fmt_money(oim),
                          "adl": 0, "bidNotional": "0", "askNotional": "0"})
            out.append(d)
        return out

    def balances(self, acct: Account) -> list[dict]:
        t = self.clock_ms()
        out = []
        for asset, wb in acct.balances.items():
            up = sum((self.unrealized(acct, st) for st in self.symbols.values() if st.spec.quote_asset == asset),
                     Fraction(0))
            im = sum(self._asset_margins(acct, asset)[:2], Fraction(0))
            avail = round_half_up(wb + up - im)      # margin balance less initial margin (cross)
            out.append({"accountAlias": "SimAcct", "asset": asset, "balance": fmt_money(wb),
                        "crossWalletBalance": fmt_money(wb), "crossUnPnl": fmt_money(up),
                        "availableBalance": fmt_money(avail), "maxWithdrawAmount": fmt_money(max(0, min(wb, avail))),
                        "marginAvailable": True, "updateTime": t})
        return out

    def account_info(self, acct: Account) -> dict:
        bal = self.balances(acct)
        wb = sum(acct.balances.values())
        up = sum((self.unrealized(acct, st) for st in self.symbols.values()), Fraction(0))
        assets = []
        for b in bal:
            a = b["asset"]
            pim, oim, mm = self._asset_margins(acct, a)
            a_up = sum((self.unrealized(acct, st) for st in self.symbols.values() if st.spec.quote_asset == a),
                       Fraction(0))
            assets.append({"asset": a, "walletBalance": b["balance"], "unrealizedProfit": b["crossUnPnl"],
                           "marginBalance": fmt_money(acct.balances[a] + round_half_up(a_up)),
                           "maintMargin": fmt_money(mm), "initialMargin": fmt_money(pim + oim),
                           "positionInitialMargin": fmt_money(pim), "openOrderInitialMargin": fmt_money(oim),
                           "crossWalletBalance": b["balance"], "crossUnPnl": b["crossUnPnl"],
                           "availableBalance": b["availableBalance"], "maxWithdrawAmount": b["maxWithdrawAmount"],
                           "marginAvailable": True, "updateTime": b["updateTime"]})
        positions = []
        tot_pim = tot_oim = tot_mm = Fraction(0)
        for p in self.position_risk(acct, None):
            pim, oim, mm = self.margins(acct, self.symbols[p["symbol"]])
            tot_pim, tot_oim, tot_mm = tot_pim + pim, tot_oim + oim, tot_mm + mm
            positions.append({"symbol": p["symbol"], "initialMargin": fmt_money(pim + oim), "maintMargin": fmt_money(mm),
                              "unrealizedProfit": p["unRealizedProfit"], "positionInitialMargin": fmt_money(pim),
                              "openOrderInitialMargin": fmt_money(oim), "leverage": p["leverage"], "isolated": False,
                              "entryPrice": p["entryPrice"], "breakEvenPrice": p["breakEvenPrice"],
                              "maxNotional": "1000000", "positionSide": "BOTH", "positionAmt": p["positionAmt"],
                              "notional": p["notional"], "isolatedWallet": "0", "updateTime": p["updateTime"]})
        avail = round_half_up(wb + up - tot_pim - tot_oim)
        return {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
                "totalInitialMargin": fmt_money(tot_pim + tot_oim), "totalMaintMargin": fmt_money(tot_mm),
                "totalWalletBalance": fmt_money(wb),
                "totalUnrealizedProfit": fmt_money(up), "totalMarginBalance": fmt_money(wb + round_half_up(up)),
                "totalPositionInitialMargin": fmt_money(tot_pim), "totalOpenOrderInitialMargin": fmt_money(tot_oim),
                "totalCrossWalletBalance": fmt_money(wb), "totalCrossUnPnl": fmt_money(up),
                "availableBalance": fmt_money(avail), "maxWithdrawAmount": fmt_money(max(0, min(wb, avail))),
                "assets": assets, "positions": positions}

    def user_trades(self, acct: Account, params: dict) -> list[dict]:
        st = self.state(params.get("symbol"))
        spec = st.spec
        limit = min(_int(params, "limit") or 500, 1000)
        oid = _int(params, "orderId")
        from_id = _int(params, "fromId")
        start, end = _int(params, "startTime"), _int(params, "endTime")
        out = []
        for tr in acct.trades:
            if tr.symbol != spec.symbol or (oid is not None and tr.order_id != oid):
                continue
            if (from_id is not None and tr.id < from_id) or (start is not None and tr.time_ms < start) or \
                    (end is not None and tr.time_ms > end):
                continue
            out.append({"buyer": tr.side == "BUY", "commission": fmt_money(tr.commission),
                        "commissionAsset": spec.quote_asset, "id": tr.id, "maker": tr.maker,
                        "orderId": tr.order_id, "price": spec.fmt_px(tr.price), "qty": spec.fmt_qty(tr.qty),
                        "quoteQty": fmt_money(tr.quote), "realizedPnl": fmt_money(tr.realized), "side": tr.side,
                        "positionSide": "BOTH", "symbol": spec.symbol, "time": tr.time_ms})
        return out[-limit:] if from_id is None else out[:limit]

    def snapshot_state(self, acct: Account | None = None) -> dict:
        """The venue's view of open orders and positions (for /_control/state)."""
        accts = [acct] if acct else list(self.accounts.values())
        out = {}
        for a in accts:
            out[a.name] = {
                "open_orders": [self.order_json(o, with_time=True) for o in self.open_orders(a)],
                "positions": {s: {"qty_lots": p.qty, "positionAmt": self.symbols[s].spec.fmt_qty(p.qty),
                                  "entry": self._entry(self.symbols[s], p.entry), "realized": p.realized}
                              for s, p in a.positions.items()},
                "balances": {k: v for k, v in a.balances.items()},
                "countdowns": {s: d for (n, s), d in self.countdowns.items() if n == a.name},
            }
        return out
