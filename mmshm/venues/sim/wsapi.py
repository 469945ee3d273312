"""The WebSocket API (`/ws-fapi/v1`): order.place / order.modify / order.cancel /
order.status (and userDataStream.start/ping/stop), each request signed on its own as
Binance documents for HMAC keys (params sorted by name, `signature` excluded)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import WSMsgType, web

from mmshm.venues.sim import auth
from mmshm.venues.sim import errors as E
from mmshm.venues.sim.accounts import Account
from mmshm.venues.sim.conn import Conn
from mmshm.venues.sim.rest import order_response

if TYPE_CHECKING:
    from mmshm.venues.sim.server import SimVenue

#: method -> (IP weight, order-count cost, signed)
METHODS = {
    "order.place": (0, 1, True), "order.modify": (1, 1, True), "order.cancel": (1, 0, True),
    "order.status": (1, 0, True), "userDataStream.start": (1, 0, False),
    "userDataStream.ping": (1, 0, False), "userDataStream.stop": (1, 0, False),
}
CONNECT_WEIGHT = 5


class WsApi:
    def __init__(self, venue: "SimVenue") -> None:
        self.v = venue

    async def handle(self, request: web.Request) -> web.StreamResponse:
        v = self.v
        if v.faults.in_outage():
            v.faults.counters["refused"] += 1
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Conn(ws, "wsapi", v.faults)
        v.conns.add(conn)
        ip = request.remote or "?"
        try:
            v.ratelimiter.charge(ip, CONNECT_WEIGHT)
        except E.VenueError as err:
            conn.push(orjson.dumps({"id": None, "status": err.http_status, "error": err.body()}))
            conn.close()
        try:
            async for msg in ws:
                if conn.closed:
                    break
                if msg.type != WSMsgType.TEXT:
                    continue
                resp = await self._request(msg.data, ip)
                await v.faults.delay()
                conn.push(orjson.dumps(resp))
        finally:
            conn.close()
            v.conns.discard(conn)
        return ws

    async def _request(self, text: str, ip: str) -> dict:
        rid = None
        acct: Account | None = None
        try:
            try:
                req = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise E.VenueError(-1000, "Invalid JSON request.") from None
            if not isinstance(req, dict):
                raise E.VenueError(-1000, "Invalid JSON request.")
            rid = req.get("id")
            method = req.get("method")
            params = req.get("params") or {}
            if not isinstance(params, dict):
                raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
            if method not in METHODS:
                raise E.VenueError(-1000, f"Unknown method '{method}'.")
            weight, orders, signed = METHODS[method]
            v = self.v
            if v.faults.take_5xx() is not None:
                return {"id": rid, "status": 503, "error": {"code": E.INTERNAL, "msg": "Internal error; unable to "
                        "process your request. Please try again."}}
            retry = v.faults.take_429()
            if retry is not None:
                raise E.VenueError(E.TOO_MANY_REQUESTS, "Too many requests (injected).", 429, retry_after=retry)
            v.ratelimiter.charge(ip, weight)
            acct = self._authenticate(params, signed)
            if orders:
                v.ratelimiter.charge_orders(acct.name, orders)
            if method.startswith("order.") and method != "order.status":
                rej = v.faults.take_reject()
                if rej is not None:
                    raise E.VenueError(rej[0], rej[1])
            p = {k: (str(x).lower() if isinstance(x, bool) else str(x)) for k, x in params.items()}
            result = self._dispatch(method, p, acct)
            return {"id": rid, "status": 200, "result": result, "rateLimits": v.ratelimiter.ws_rate_limits(ip, acct.name)}
        except E.VenueError as err:
            out = {"id": rid, "status": err.http_status, "error": err.body()}
            if err.retry_after is not None:
                # the WebSocket API reports when to retry as a timestamp (ms), not a delay
                now = self.v.server_ms()
                out["error"]["data"] = {"serverTime": now, "retryAfter": now + err.retry_after * 1000}
            out["rateLimits"] = self.v.ratelimiter.ws_rate_limits(ip, acct.name if acct else None)
            return out

    def _authenticate(self, params: dict, signed: bool) -> Account:
        key = params.get("apiKey")
        if not key:
            raise E.mandatory("apiKey")
        acct = self.v.exchange.accounts.get(str(key))
        if acct is None:
            raise E.VenueError(E.REJECTED_MBX_KEY, "Invalid API-key, IP, or permissions for action.", 401)
        if signed:
            auth.check_timestamp(params, self.v.server_ms())
            auth.verify_signature(acct.secret, auth.ws_payload(params), params.get("signature"))
        return acct

    def _dispatch(self, method: str, p: dict, acct: Account):
        ex = self.v.exchange
        if method == "order.place":
            return order_response(self.v, ex.place(acct, p), p)
        if method == "order.modify":
            return ex.order_json(ex.modify(acct, p))
        if method == "order.cancel":
            return ex.order_json(ex.cancel(acct, p))
        if method == "order.status":
            if not p.get("orderId") and not p.get("origClientOrderId"):
                raise E.mandatory("orderId")
            return ex.order_json(ex.query(acct, p), with_time=True)
        if method == "userDataStream.start":
            return {"listenKey": self.v.userdata.create(acct)}
        if method == "userDataStream.ping":
            return {"listenKey": self.v.userdata.keepalive(acct)}
        self.v.userdata.delete(acct)
        return {}
