"""REST endpoints of the simulated venue (`/fapi/...`), Binance USD-M shapes and codes.

Every request passes, in order: outage, added latency, injected 5xx, injected 429,
request weight per IP (429/418), authentication (API key, signature, timestamp), order
count per account, injected order rejects, then the endpoint.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from mmshm._native import matching as M
from mmshm.venues.sim import auth
from mmshm.venues.sim import errors as E
from mmshm.venues.sim.accounts import Account
from mmshm.venues.sim.engine import Order
from mmshm.venues.sim.ratelimit import REST_ORDER_COST, REST_WEIGHTS

if TYPE_CHECKING:
    from mmshm.venues.sim.server import SimVenue

PUBLIC, USER_STREAM, SIGNED = 0, 1, 2
ORDER_ENDPOINTS = {("POST", "/fapi/v1/order"), ("PUT", "/fapi/v1/order"), ("DELETE", "/fapi/v1/order"),
                   ("POST", "/fapi/v1/batchOrders"), ("PUT", "/fapi/v1/batchOrders")}
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


def json_response(body, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(err: E.VenueError, headers: dict | None = None) -> web.Response:
    h = dict(headers or {})
    if err.retry_after is not None:
        h["Retry-After"] = str(err.retry_after)
    return json_response(err.body(), err.http_status, h)


def ack_json(venue: "SimVenue", o: Order) -> dict:
    """newOrderRespType=ACK: the order as accepted, before matching."""
    d = venue.exchange.order_json(o)
    spec = venue.exchange.symbols[o.symbol].spec
    d.update({"status": "NEW", "executedQty": spec.fmt_qty(0), "cumQty": spec.fmt_qty(0),
              "cumQuote": "0.00000", "avgPrice": "0.00", "updateTime": o.time_ms})
    return d


def order_response(venue: "SimVenue", o: Order, params: dict) -> dict:
    kind = params.get("newOrderRespType") or "ACK"
    if kind not in ("ACK", "RESULT"):
        raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
    return venue.exchange.order_json(o) if kind == "RESULT" else ack_json(venue, o)


class RestApi:
    def __init__(self, venue: "SimVenue") -> None:
        self.v = venue

    def routes(self) -> list[web.RouteDef]:
        r = []
        table: list[tuple[str, str, int, Callable]] = [
            ("GET", "/fapi/v1/ping", PUBLIC, self.ping),
            ("GET", "/fapi/v1/time", PUBLIC, self.server_time),
            ("GET", "/fapi/v1/exchangeInfo", PUBLIC, self.exchange_info),
            ("GET", "/fapi/v1/depth", PUBLIC, self.depth),
            ("POST", "/fapi/v1/order", SIGNED, self.new_order),
            ("PUT", "/fapi/v1/order", SIGNED, self.modify_order),
            ("DELETE", "/fapi/v1/order", SIGNED, self.cancel_order),
            ("GET", "/fapi/v1/order", SIGNED, self.query_order),
            ("GET", "/fapi/v1/openOrder", SIGNED, self.query_open_order),
            ("GET", "/fapi/v1/openOrders", SIGNED, self.open_orders),
            ("POST", "/fapi/v1/batchOrders", SIGNED, self.batch_new),
            ("PUT", "/fapi/v1/batchOrders", SIGNED, self.batch_modify),
            ("DELETE", "/fapi/v1/batchOrders", SIGNED, self.batch_cancel),
            ("DELETE", "/fapi/v1/allOpenOrders", SIGNED, self.cancel_all),
            ("POST", "/fapi/v1/countdownCancelAll", SIGNED, self.countdown),
            ("GET", "/fapi/v2/positionRisk", SIGNED, self.position_risk_v2),
            ("GET", "/fapi/v3/positionRisk", SIGNED, self.position_risk_v3),
            ("GET", "/fapi/v2/account", SIGNED, self.account),
            ("GET", "/fapi/v3/account", SIGNED, self.account),
            ("GET", "/fapi/v2/balance", SIGNED, self.balance),
            ("GET", "/fapi/v3/balance", SIGNED, self.balance),
            ("GET", "/fapi/v1/userTrades", SIGNED, self.user_trades),
            ("GET", "/fapi/v1/commissionRate", SIGNED, self.commission_rate),
            ("POST", "/fapi/v1/leverage", SIGNED, self.leverage),
            ("POST", "/fapi/v1/listenKey", USER_STREAM, self.listen_key_new),
            ("PUT", "/fapi/v1/listenKey", USER_STREAM, self.listen_key_keepalive),
            ("DELETE", "/fapi/v1/listenKey", USER_STREAM, self.listen_key_delete),
        ]
        for method, path, security, fn in table:
            r.append(web.route(method, path, self._wrap(method, path, security, fn)))
        return r

    # ------------------------------------------------------------------ pipeline

    def _wrap(self, method: str, path: str, security: int, fn: Callable[..., Awaitable]) -> Callable:
        weight = REST_WEIGHTS.get((method, path), 1)
        order_cost = REST_ORDER_COST.get((method, path), 0)
        is_order = (method, path) in ORDER_ENDPOINTS

        async def handler(request: web.Request) -> web.StreamResponse:
            v = self.v
            if v.faults.in_outage():
                v.faults.counters["refused"] += 1
                if request.transport is not None:
                    request.transport.close()
                raise web.HTTPServiceUnavailable()
            await v.faults.delay()
            headers: dict[str, str] = {}
            try:
                status = v.faults.take_5xx()
                if status is not None:
                    return json_response({"code": E.INTERNAL, "msg": "Internal error; unable to process your "
                                          "request. Please try again."}, status)
                retry = v.faults.take_429()
                if retry is not None:
                    raise E.VenueError(E.TOO_MANY_REQUESTS, "Too many requests; current limit of IP is exceeded "
                                       "(injected). Please use the websocket for live updates.", 429,
                                       retry_after=retry)
                total, params = await self._params(request)
                w = weight(params) if callable(weight) else weight
                headers.update(v.ratelimiter.charge(request.remote or "?", w))
                acct = self._authenticate(request, params, total, security)
                if is_order and acct is not None:
                    n = order_cost
                    if path.endswith("batchOrders"):
                        n = max(1, len(_json_list(params, "batchOrders" if method == "POST" else "batchOrders")))
                    headers.update(v.ratelimiter.charge_orders(acct.name, n))
                    rej = v.faults.take_reject()
                    if rej is not None:
                        raise E.VenueError(rej[0], rej[1])
                body = await fn(params, acct) if security else await fn(params)
                return json_response(body, 200, headers)
            except E.VenueError as err:
                if err.code not in (E.TOO_MANY_REQUESTS,):
                    v.exchange.counters["rejects"] += 1
                return error_response(err, headers)
        return handler

    async def _params(self, request: web.Request) -> tuple[str, dict]:
        # the query string as it came over the wire (aiohttp's ``query_string`` is decoded):
        # Binance signs totalParams exactly as sent, percent-encoding included
        qs = request.rel_url.raw_query_string
        body = ""
        if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
            body = await request.text()
        params: dict[str, str] = {}
        for part in (qs, body):
            if not part:
                continue
            try:
                pairs = parse_qsl(part, keep_blank_values=True, strict_parsing=False)
            except ValueError:
                raise E.VenueError(E.ILLEGAL_CHARS, "Illegal characters found in a parameter.") from None
            for k, val in pairs:
                params[k] = val
        return qs + body, params

    def _authenticate(self, request: web.Request, params: dict, total: str, security: int) -> Account | None:
        if security == PUBLIC:
            return None
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise E.VenueError(E.REJECTED_MBX_KEY, "API-key format invalid.", 401)
        acct = self.v.exchange.accounts.get(key)
        if acct is None:
            raise E.VenueError(E.REJECTED_MBX_KEY, "Invalid API-key, IP, or permissions for action, "
                               "request ip: " + str(request.remote), 401)
        if security == SIGNED:
            auth.check_timestamp(params, self.v.server_ms())
            payload, sig = auth.split_signature(total)
            auth.verify_signature(acct.secret, payload, sig)
        return acct

    # ------------------------------------------------------------------ market data

    async def ping(self, p: dict) -> dict:
        return {}

    async def server_time(self, p: dict) -> dict:
        return {"serverTime": self.v.server_ms()}

    async def exchange_info(self, p: dict) -> dict:
        return self.v.exchange_info()

    async def depth(self, p: dict) -> dict:
        st = self.v.exchange.state(p.get("symbol"))
        try:
            limit = int(p.get("limit") or 500)
        except ValueError:
            raise E.illegal("limit") from None
        if limit not in DEPTH_LIMITS:
            raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
        spec = st.spec
        t = self.v.server_ms()
        return {"lastUpdateId": st.last_update_id, "E": t, "T": t,
                "bids": [[spec.fmt_px(px), spec.fmt_qty(q)] for px, q in st.core.levels(M.BUY, limit)],
                "asks": [[spec.fmt_px(px), spec.fmt_qty(q)] for px, q in st.core.levels(M.SELL, limit)]}

    # ------------------------------------------------------------------ trading

    async def new_order(self, p: dict, acct: Account) -> dict:
        o = self.v.exchange.place(acct, p)
        return order_response(self.v, o, p)

    async def modify_order(self, p: dict, acct: Account) -> dict:
        return self.v.exchange.order_json(self.v.exchange.modify(acct, p))

    async def cancel_order(self, p: dict, acct: Account) -> dict:
        return self.v.exchange.order_json(self.v.exchange.cancel(acct, p))

    async def query_order(self, p: dict, acct: Account) -> dict:
        if not p.get("orderId") and not p.get("origClientOrderId"):
            raise E.mandatory("orderId")
        return self.v.exchange.order_json(self.v.exchange.query(acct, p), with_time=True)

    async def query_open_order(self, p: dict, acct: Account) -> dict:
        if not p.get("orderId") and not p.get("origClientOrderId"):
            raise E.mandatory("orderId")
        o = self.v.exchange.query(acct, p)
        if not o.is_open:
            raise E.VenueError(-2013, "Order does not exist.")
        return self.v.exchange.order_json(o, with_time=True)

    async def open_orders(self, p: dict, acct: Account) -> list:
        ex = self.v.exchange
        return [ex.order_json(o, with_time=True) for o in ex.open_orders(acct, p.get("symbol"))]

    async def batch_new(self, p: dict, acct: Account) -> list:
        items = _json_list(p, "batchOrders")
        if not 1 <= len(items) <= 5:
            raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
        out = []
        for item in items:
            try:
                item = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in item.items()}
                out.append(order_response(self.v, self.v.exchange.place(acct, item), item))
            except E.VenueError as err:
                out.append(err.body())
        return out

    async def batch_modify(self, p: dict, acct: Account) -> list:
        items = _json_list(p, "batchOrders")
        if not 1 <= len(items) <= 5:
            raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
        out = []
        for item in items:
            try:
                item = {k: str(v) for k, v in item.items()}
                out.append(self.v.exchange.order_json(self.v.exchange.modify(acct, item)))
            except E.VenueError as err:
                out.append(err.body())
        return out

    async def batch_cancel(self, p: dict, acct: Account) -> list:
        symbol = p.get("symbol")
        self.v.exchange.state(symbol)
        if p.get("orderIdList"):
            ids = [{"orderId": str(i)} for i in _json_list(p, "orderIdList")]
        elif p.get("origClientOrderIdList"):
            ids = [{"origClientOrderId": str(i)} for i in _json_list(p, "origClientOrderIdList")]
        else:
            raise E.mandatory("orderIdList")
        if len(ids) > 10:
            raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
        out = []
        for ident in ids:
            try:
                out.append(self.v.exchange.order_json(self.v.exchange.cancel(acct, {"symbol": symbol, **ident})))
            except E.VenueError as err:
                out.append(err.body())
        return out

    async def cancel_all(self, p: dict, acct: Account) -> dict:
        self.v.exchange.cancel_all(acct, p.get("symbol"))
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    async def countdown(self, p: dict, acct: Account) -> dict:
        sym = p.get("symbol")
        ct = p.get("countdownTime")
        if ct in (None, ""):
            raise E.mandatory("countdownTime")
        try:
            ms = int(ct)
        except ValueError:
            raise E.illegal("countdownTime") from None
        if ms < 0:
            raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
        st = self.v.exchange.state(sym)
        self.v.exchange.countdown(acct, st.spec.symbol, ms)
        return {"symbol": st.spec.symbol, "countdownTime": str(ms)}

    # ------------------------------------------------------------------ account

    async def position_risk_v2(self, p: dict, acct: Account) -> list:
        return self.v.exchange.position_risk(acct, p.get("symbol"), 2)

    async def position_risk_v3(self, p: dict, acct: Account) -> list:
        return [d for d in self.v.exchange.position_risk(acct, p.get("symbol"), 3) if d["positionAmt"].strip("0.-")]

    async def account(self, p: dict, acct: Account) -> dict:
        return self.v.exchange.account_info(acct)

    async def balance(self, p: dict, acct: Account) -> list:
        return self.v.exchange.balances(acct)

    async def user_trades(self, p: dict, acct: Account) -> list:
        return self.v.exchange.user_trades(acct, p)

    async def commission_rate(self, p: dict, acct: Account) -> dict:
        st = self.v.exchange.state(p.get("symbol"))
        return {"symbol": st.spec.symbol, "makerCommissionRate": f"{acct.maker_fee_ppm / 1e6:.6f}",
                "takerCommissionRate": f"{acct.taker_fee_ppm / 1e6:.6f}"}

    async def leverage(self, p: dict, acct: Account) -> dict:
        st = self.v.exchange.state(p.get("symbol"))
        try:
            lev = int(p.get("leverage") or "")
        except ValueError:
            raise E.mandatory("leverage") from None
        if not 1 <= lev <= 125:
            raise E.VenueError(-4028, "Leverage is not valid.")
        acct.leverage[st.spec.symbol] = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": st.spec.symbol}

    async def listen_key_new(self, p: dict, acct: Account) -> dict:
        return {"listenKey": self.v.userdata.create(acct)}

    async def listen_key_keepalive(self, p: dict, acct: Account) -> dict:
        return {"listenKey": self.v.userdata.keepalive(acct)}

    async def listen_key_delete(self, p: dict, acct: Account) -> dict:
        self.v.userdata.delete(acct)
        return {}


def _json_list(params: dict, name: str) -> list:
    raw = params.get(name)
    if not raw:
        raise E.mandatory(name)
    try:
        v = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.") from None
    if not isinstance(v, list):
        raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
    return v
