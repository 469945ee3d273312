"""The Binance USD-M client over real loopback sockets against a small documented-shape server.

The server below speaks the documented wire shapes (signed query strings checked with
HMAC, ``X-MBX-*`` headers, ``{"code","msg"}`` errors, the WebSocket API envelope and the
user-data stream events). It is deliberately tiny: the full simulated venue lives in
``mmshm/venues/sim``; these tests pin the client's side of the protocol.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from urllib.parse import parse_qsl

import pytest
from aiohttp import WSMsgType, web

from mmshm.execution.breaker import BreakerState
from mmshm.execution.ratelimit import B_ORDERS_10S, B_WEIGHT_1M
from mmshm.instruments import InstrumentSpec
from mmshm.records import OrderEventKind as K, OrderStatus as S, Side
from mmshm.venues.binance_usdm.auth import Signer
from mmshm.venues.binance_usdm.trading import (AccountUpdate, BinanceTrading, MinNotional, NotSent, OrderRequest,
                                               OrderUpdate, PostOnlyReject, RateLimitExceeded, StreamStatus,
                                               UnknownOrder, UserStream, error_from, local_endpoints,
                                               parse_user_event, InstrumentIndex, Banned, ServerError,
                                               UnknownStatus, PrecisionError, SignatureError, TimestampError)

KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
BTC = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.10", "0.001", min_qty="0.001",
                                   min_notional="100")


class Stub:
    """In-memory Binance USD-M for one symbol (no matching: fills are injected)."""

    def __init__(self) -> None:
        self.orders: dict[str, dict] = {}
        self.next_id = 1000
        self.weight = 0
        self.order_count = 0
        self.fail_next: list[tuple[int, dict, dict]] = []   # (status, body, headers)
        self.seen: list[str] = []
        self.streams: list[web.WebSocketResponse] = []
        self.countdown: dict[str, int] = {}
        self.trades: list[dict] = []
        self.listen_keys = 0
        self.keepalives = 0
        self.ws_requests = 0
        self.fail_path: dict[str, list[tuple[int, dict]]] = {}   # "METHOD /path" -> answers

    def check_sig(self, qs: str) -> dict | None:
        body, _, sig = qs.rpartition("&signature=")
        want = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        return None if sig != want else dict(parse_qsl(body, keep_blank_values=True))

    def order_obj(self, o: dict) -> dict:
        return {"orderId": o["orderId"], "symbol": "BTCUSDT", "status": o["status"],
                "clientOrderId": o["clientOrderId"], "price": o["price"], "avgPrice": "0",
                "origQty": o["origQty"], "executedQty": o["executedQty"], "cumQuote": "0",
                "timeInForce": o["timeInForce"], "type": "LIMIT", "reduceOnly": False, "side": o["side"],
                "positionSide": "BOTH", "updateTime": 1700000000000}

    async def push(self, o: dict, x: str, **extra) -> None:
        ev = {"e": "ORDER_TRADE_UPDATE", "E": 1700000000001, "T": 1700000000001,
              "o": {"s": "BTCUSDT", "c": o["clientOrderId"], "S": o["side"], "o": "LIMIT",
                    "f": o["timeInForce"], "q": o["origQty"], "p": o["price"], "ap": "0", "sp": "0",
                    "x": x, "X": o["status"], "i": o["orderId"], "l": "0", "z": o["executedQty"],
                    "L": "0", "N": "USDT", "n": "0", "T": 1700000000001, "t": 0, "b": "0", "a": "0",
                    "m": False, "R": False, "ps": "BOTH", **extra}}
        for ws in list(self.streams):
            if not ws.closed:
                await ws.send_str(json.dumps(ev))

    # --- business logic shared by REST and WS API
    async def place(self, p: dict) -> tuple[int, dict]:
        if p["price"] == "1.0":
            return 400, {"code": -4164, "msg": "Order's notional must be no smaller than 100"}
        if p.get("timeInForce") == "GTX" and p["price"] == "12345.6":
            return 400, {"code": -5022, "msg": "Due to the order could not be executed as maker, the Post Only order will be rejected."}
        self.next_id += 1
        o = {"orderId": self.next_id, "clientOrderId": p["newClientOrderId"], "side": p["side"],
             "price": p["price"], "origQty": p["quantity"], "executedQty": "0", "status": "NEW",
             "timeInForce": p["timeInForce"]}
        self.orders[o["clientOrderId"]] = o
        self.order_count += 1
        await self.push(o, "NEW")
        return 200, self.order_obj(o)

    def find(self, p: dict) -> dict | None:
        cid = p.get("origClientOrderId")
        if cid:
            return self.orders.get(cid)
        oid = int(p.get("orderId", 0))
        return next((o for o in self.orders.values() if o["orderId"] == oid), None)

    async def modify(self, p: dict) -> tuple[int, dict]:
        o = self.find(p)
        if o is None or o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return 400, {"code": -2013, "msg": "Order does not exist."}
        o["price"], o["origQty"] = p["price"], p["quantity"]
        self.order_count += 1
        await self.push(o, "AMENDMENT")
        return 200, self.order_obj(o)

    async def cancel(self, p: dict) -> tuple[int, dict]:
        o = self.find(p)
        if o is None or o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return 400, {"code": -2011, "msg": "Unknown order sent."}
        o["status"] = "CANCELED"
        await self.push(o, "CANCELED")
        return 200, self.order_obj(o)

    async def fill(self, cid: str, qty: str, trade_id: int) -> None:
        o = self.orders[cid]
        done = float(o["executedQty"]) + float(qty)
        o["executedQty"] = f"{done:.3f}"
        o["status"] = "FILLED" if abs(done - float(o["origQty"])) < 1e-9 else "PARTIALLY_FILLED"
        self.trades.append({"symbol": "BTCUSDT", "id": trade_id, "orderId": o["orderId"], "side": o["side"],
                            "price": o["price"], "qty": qty, "commission": "0.01", "commissionAsset": "USDT",
                            "maker": True, "time": 1700000000002, "realizedPnl": "0"})
        await self.push(o, "TRADE", l=qty, L=o["price"], t=trade_id, n="0.01", m=True)

    # --- REST
    async def rest(self, request: web.Request) -> web.Response:
        path, qs = request.path, request.rel_url.raw_query_string
        self.seen.append(f"{request.method} {path}")
        self.weight += 1
        hdr = {"X-MBX-USED-WEIGHT-1M": str(self.weight), "X-MBX-ORDER-COUNT-10S": str(self.order_count)}
        if self.fail_path.get(f"{request.method} {path}"):
            st, body = self.fail_path[f"{request.method} {path}"].pop(0)
            return web.json_response(body, status=st, headers=hdr)
        if self.fail_next:
            st, body, h = self.fail_next.pop(0)
            return web.json_response(body, status=st, headers={**hdr, **h})
        if path == "/fapi/v1/time":
            return web.json_response({"serverTime": 1700000000000 + 0}, headers=hdr)
        if path == "/fapi/v1/exchangeInfo":
            return web.json_response({"rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
                "symbols": []}, headers=hdr)
        if request.headers.get("X-MBX-APIKEY") != KEY:
            return web.json_response({"code": -2015, "msg": "Invalid API-key"}, status=401, headers=hdr)
        if path == "/fapi/v1/listenKey":
            if request.method == "POST":
                self.listen_keys += 1
                return web.json_response({"listenKey": f"lk{self.listen_keys}"}, headers=hdr)
            self.keepalives += 1
            return web.json_response({}, headers=hdr)
        p = self.check_sig(qs)
        if p is None:
            return web.json_response({"code": -1022, "msg": "Signature for this request is not valid."},
                                     status=400, headers=hdr)
        m = request.method
        if path == "/fapi/v1/order":
            fn = {"POST": self.place, "PUT": self.modify, "DELETE": self.cancel}.get(m)
            if fn is None:
                o = self.find(p)
                st, body = (200, self.order_obj(o)) if o else (400, {"code": -2013, "msg": "Order does not exist."})
            else:
                st, body = await fn(p)
            return web.json_response(body, status=st, headers=hdr)
        if path == "/fapi/v1/batchOrders":
            if m == "DELETE":
                items = [{"origClientOrderId": c} for c in json.loads(p["origClientOrderIdList"])]
                fn = self.cancel
            else:
                items = json.loads(p["batchOrders"])
                fn = self.place if m == "POST" else self.modify
            out = []
            for it in items:
                st, body = await fn(it)
                out.append(body)
            return web.json_response(out, headers=hdr)
        if path == "/fapi/v1/allOpenOrders":
            for o in self.orders.values():
                if o["status"] in ("NEW", "PARTIALLY_FILLED"):
                    o["status"] = "CANCELED"
                    await self.push(o, "CANCELED")
            return web.json_response({"code": 200, "msg": "The operation of cancel all open order is done."},
                                     headers=hdr)
        if path == "/fapi/v1/openOrders":
            return web.json_response([self.order_obj(o) for o in self.orders.values()
                                      if o["status"] in ("NEW", "PARTIALLY_FILLED")], headers=hdr)
        if path == "/fapi/v2/positionRisk":
            return web.json_response([{"symbol": "BTCUSDT", "positionAmt": "0.003", "entryPrice": "100.0",
                                       "unRealizedProfit": "0.00000000", "positionSide": "BOTH"}], headers=hdr)
        if path == "/fapi/v1/userTrades":
            return web.json_response(self.trades, headers=hdr)
        if path == "/fapi/v1/countdownCancelAll":
            self.countdown[p["symbol"]] = int(p["countdownTime"])
            return web.json_response({"symbol": p["symbol"], "countdownTime": p["countdownTime"]}, headers=hdr)
        return web.json_response({"code": -1000, "msg": "unknown path"}, status=404, headers=hdr)

    async def ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            self.ws_requests += 1
            p = dict(req["params"])
            sig = p.pop("signature")
            payload = "&".join(f"{k}={p[k]}" for k in sorted(p))
            if hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest() != sig:
                st, body = 400, {"code": -1022, "msg": "Signature for this request is not valid."}
            else:
                fn = {"order.place": self.place, "order.modify": self.modify, "order.cancel": self.cancel}.get(req["method"])
                if fn is None:
                    o = self.find(p)
                    st, body = (200, self.order_obj(o)) if o else (400, {"code": -2013, "msg": "Order does not exist."})
                else:
                    st, body = await fn({k: str(v) for k, v in p.items()})
            rl = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400,
                   "count": 7}]
            env = {"id": req["id"], "status": st, "rateLimits": rl}
            env["result" if st == 200 else "error"] = body
            await ws.send_str(json.dumps(env))
        return ws

    async def user_stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.streams.append(ws)
        async for _ in ws:
            pass
        return ws


async def _client(stub, prefer_ws=True):
    t = BinanceTrading(local_endpoints("127.0.0.1", stub.port), Signer(KEY, SECRET), [BTC], prefer_ws=prefer_ws)
    await t.start()
    return t


def req(cid, price=1000000, qty=2, side=Side.BUY, post_only=True):
    return OrderRequest("BTCUSDT", side, price, qty, cid, post_only=post_only)


@pytest.mark.timeout(20)
def test_rest_place_modify_cancel_query(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        try:
            o = await t.place(req("mm1_1_1"))
            assert o.status == S.NEW and o.price == 1000000 and o.qty == 2 and o.client_id == "mm1_1_1"
            assert o.sent_mono > 0 and o.recv_mono >= o.sent_mono
            m = await t.modify("BTCUSDT", "mm1_1_1", Side.BUY, 1000001, 3)
            assert (m.price, m.qty) == (1000001, 3)
            q = await t.query("BTCUSDT", "mm1_1_1")
            assert q.venue_order_id == o.venue_order_id
            c = await t.cancel("BTCUSDT", "mm1_1_1")
            assert c.status == S.CANCELED
            with pytest.raises(UnknownOrder):
                await t.cancel("BTCUSDT", "mm1_1_1")
            with pytest.raises(MinNotional):
                await t.place(req("mm1_2_1", price=10))
            with pytest.raises(PostOnlyReject):
                await t.place(req("mm1_3_1", price=123456))
            assert t.counters["via_rest"] >= 4 and t.counters["via_ws"] == 0
            snap = t.budget.snapshot()
            assert snap["weight_1m_used"] >= stub.weight - 1    # corrected from headers
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_ws_api_order_entry_and_fallback(stub_loop):
    async def body(stub):
        t = await _client(stub)
        try:
            assert t.ws.connected
            o = await t.place(req("mm1_4_1"))
            assert o.status == S.NEW and t.counters["via_ws"] == 1 and stub.ws_requests == 1
            await t.modify("BTCUSDT", "mm1_4_1", Side.BUY, 1000002, 2)
            c = await t.cancel("BTCUSDT", "mm1_4_1")
            assert c.status == S.CANCELED
            with pytest.raises(UnknownOrder):
                await t.cancel("BTCUSDT", "mm1_4_1")
            assert t.budget.snapshot()["weight_1m_used"] >= 7       # rateLimits from the WS answer
            await t.ws.close()
            o2 = await t.place(req("mm1_5_1"))                       # session down: REST
            assert o2.status == S.NEW and t.counters["via_rest"] == 1
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_batches(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        try:
            res = await t.place_batch([req(f"mm1_{i}_1", price=1000000 - i) for i in range(10, 14)]
                                      + [req("mm1_20_1", price=10)])
            assert [type(r).__name__ for r in res] == ["VenueOrder"] * 4 + ["MinNotional"]
            res = await t.modify_batch([("BTCUSDT", "mm1_10_1", Side.BUY, 999000, 5)])
            assert res[0].qty == 5
            res = await t.cancel_batch("BTCUSDT", ["mm1_10_1", "mm1_11_1", "nope"])
            assert [type(r).__name__ for r in res] == ["VenueOrder", "VenueOrder", "UnknownOrder"]
            assert len(await t.open_orders("BTCUSDT")) == 2
            await t.cancel_all_open("BTCUSDT")
            assert await t.open_orders("BTCUSDT") == []
            with pytest.raises(ValueError):
                await t.place_batch([req(f"mm1_{i}_2") for i in range(6)])
            pos = await t.positions()
            assert pos[0].amount == 3 and pos[0].instrument == 0
            assert (await t.countdown_cancel_all("BTCUSDT", 10000))["countdownTime"] == "10000"
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_429_blocks_everything_until_retry_after_and_opens_breaker(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        try:
            stub.fail_next.append((429, {"code": -1003, "msg": "Too many requests"}, {"Retry-After": "30"}))
            n = len(stub.seen)
            with pytest.raises(RateLimitExceeded) as ei:
                await t.place(req("mm1_30_1"))
            assert ei.value.retry_after_s == 30
            assert t.breaker.state == BreakerState.OPEN
            with pytest.raises(NotSent):
                await t.place(req("mm1_31_1"))
            assert len(stub.seen) == n + 1          # the second request never left
            assert t.budget.blocked_for_ns() > 25e9
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_5xx_opens_breaker_after_threshold(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        t.breaker.failure_threshold = 2
        try:
            for _ in range(2):
                stub.fail_next.append((500, {"code": -1000, "msg": "internal"}, {}))
            for _ in range(2):
                with pytest.raises(ServerError):
                    await t.query("BTCUSDT", "x")
            assert t.breaker.state == BreakerState.OPEN
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_timestamp_error_resyncs_and_retries_once(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        try:
            stub.fail_next.append((400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}, {}))
            o = await t.place(req("mm1_40_1"))
            assert o.status == S.NEW and t.rest.counters["resync_1021"] == 1
            assert stub.seen.count("GET /fapi/v1/time") == 2
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_bad_secret_is_signature_error(stub_loop):
    async def body(stub):
        t = BinanceTrading(local_endpoints("127.0.0.1", stub.port), Signer(KEY, "wrong-secret-xxxxxxxx"), [BTC],
                           prefer_ws=False)
        await t.start()
        try:
            with pytest.raises(SignatureError):
                await t.place(req("mm1_50_1"))
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_user_stream_events_and_reconnect(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        events: list = []
        us = UserStream(local_endpoints("127.0.0.1", stub.port).ws_stream, t.rest, t.instruments,
                        keepalive_s=0.2, backoff_base_s=0.01, backoff_cap_s=0.05)
        task = asyncio.create_task(us.run(events.append))
        try:
            for _ in range(200):
                if stub.streams:
                    break
                await asyncio.sleep(0.01)
            await t.place(req("mm1_60_1", qty=3))
            await stub.fill("mm1_60_1", "0.001", 77)
            for _ in range(200):
                if sum(isinstance(e, OrderUpdate) for e in events) >= 2:
                    break
                await asyncio.sleep(0.01)
            ups = [e for e in events if isinstance(e, OrderUpdate)]
            assert ups[0].exec_type == "NEW" and ups[0].to_event().kind == K.ACK
            f = ups[1].to_event()
            assert (f.kind, f.fill_qty, f.fill_px, f.trade_id, f.fee, f.maker) == (K.FILL, 1, 1000000, 77, 1_000_000, True)
            assert isinstance(events[0], StreamStatus) and not events[0].reconnect
            await stub.streams[0].close()             # drop: expect a reconnect announcement
            for _ in range(300):
                if any(isinstance(e, StreamStatus) and e.reconnect for e in events):
                    break
                await asyncio.sleep(0.01)
            assert any(isinstance(e, StreamStatus) and e.reconnect for e in events)
            await asyncio.sleep(0.3)
            assert stub.keepalives >= 1
        finally:
            us.stop()
            await asyncio.wait_for(task, 5)
            await t.close()
    stub_loop(body)


@pytest.fixture
def stub_loop():
    """Run ``body(stub)`` in a fresh event loop with the stub server up."""
    def runner(body):
        async def main():
            s = Stub()
            app = web.Application()
            app.router.add_get("/ws-fapi/v1", s.ws_api)
            app.router.add_get("/ws/{key}", s.user_stream)
            app.router.add_route("*", "/fapi/{tail:.*}", s.rest)
            r = web.AppRunner(app)
            await r.setup()
            site = web.TCPSite(r, "127.0.0.1", 0)
            await site.start()
            s.port = r.addresses[0][1]
            try:
                await body(s)
            finally:
                for ws in list(s.streams):
                    await ws.close()
                await r.cleanup()
        asyncio.run(main())
    return runner


def test_parse_account_update_and_drops():
    idx = InstrumentIndex([BTC])
    msg = {"e": "ACCOUNT_UPDATE", "E": 1, "T": 2, "a": {"m": "ORDER", "B": [
        {"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"}],
        "P": [{"s": "BTCUSDT", "pa": "-0.005", "ep": "100.0", "up": "0", "ps": "BOTH"},
              {"s": "ETHUSDT", "pa": "1", "ep": "1", "up": "0", "ps": "BOTH"}]}}
    ev = parse_user_event(msg, idx)
    assert isinstance(ev, AccountUpdate) and ev.balances[0].wallet == 12262412345678
    assert [(p.instrument, p.amount) for p in ev.positions] == [(0, -5)]
    from mmshm.venues.binance_usdm.trading import StreamParseStats
    st = StreamParseStats()
    bad = {"e": "ORDER_TRADE_UPDATE", "E": 1, "o": {"s": "BTCUSDT", "c": "x", "S": "BUY", "x": "NEW", "X": "NEW",
                                                   "i": 1, "p": "100.05", "q": "1"}}
    assert parse_user_event(bad, idx, st) is None and st.dropped == {"OffGridError": 1}
    assert parse_user_event({"e": "MARGIN_CALL"}, idx, st) is None


@pytest.mark.parametrize("status,body,cls", [
    (400, {"code": -1021, "msg": ""}, TimestampError), (400, {"code": -1022, "msg": ""}, SignatureError),
    (400, {"code": -2011, "msg": ""}, UnknownOrder), (400, {"code": -2013, "msg": ""}, UnknownOrder),
    (400, {"code": -5022, "msg": ""}, PostOnlyReject), (400, {"code": -4164, "msg": ""}, MinNotional),
    (400, {"code": -1111, "msg": ""}, PrecisionError), (429, {"code": -1003, "msg": ""}, RateLimitExceeded),
    (418, {"code": -1003, "msg": ""}, Banned), (502, {}, ServerError),
    (503, {"code": -1000, "msg": "Unknown error, please check your request or try again later."}, UnknownStatus),
])
def test_error_mapping(status, body, cls):
    assert type(error_from(status, body)) is cls
