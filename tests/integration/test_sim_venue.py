"""The simulated venue over real loopback sockets: REST, user-data stream, WebSocket API,
rate limits, dead-man switch and faults. Each test runs its own venue on an ephemeral port."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from mmshm.venues.sim.ratelimit import RateLimitConfig
from mmshm.venues.sim.server import VenueConfig, VenueThread
from mmshm.venues.sim.testclient import SimClient, StreamClient, WsApiClient

pytestmark = pytest.mark.timeout(60)
SYM = "BTCUSDT"


@pytest.fixture
def make_venue():
    threads = []

    def _make(**kw):
        kw.setdefault("market", "none")
        vt = VenueThread(VenueConfig(**kw))
        venue = vt.start()
        threads.append(vt)
        client = SimClient(venue.urls["rest"])
        client.depth(SYM, [["60000.0", "1.000"], ["59999.9", "2.000"]], [["60000.1", "1.000"], ["60000.2", "2.000"]])
        return venue, client

    yield _make
    for vt in threads:
        vt.stop()


@pytest.fixture
def venue(make_venue):
    return make_venue()


def user_stream(venue, client) -> StreamClient:
    s = StreamClient(venue.urls["ws"] + "/" + client.listen_key())
    time.sleep(0.05)  # the server attaches the stream to the key right after the handshake
    return s


def otu(stream: StreamClient, x: str, timeout: float = 5.0) -> dict:
    return stream.until(lambda m: m.get("e") == "ORDER_TRADE_UPDATE" and m["o"]["x"] == x, timeout)["o"]


def position(client) -> dict:
    status, body = client.request("GET", "/fapi/v2/positionRisk", {"symbol": SYM}, signed=True)
    assert status == 200, body
    return body[0]


def buy(client, px="60000.0", qty="0.010", tif="GTC", **kw):
    return client.place(symbol=SYM, side="BUY", type="LIMIT", timeInForce=tif, price=px, quantity=qty, **kw)


def test_place_fill_position_updated(venue):
    v, c = venue
    us = user_stream(v, c)
    status, body = buy(c)
    assert status == 200 and body["status"] == "NEW"
    assert c.last_headers["X-MBX-ORDER-COUNT-10S"] == "1" and "X-MBX-USED-WEIGHT-1M" in c.last_headers
    assert otu(us, "NEW")["i"] == body["orderId"]
    c.trade(SYM, "60000.0", "1.010", "SELL")           # eats the 1.000 ahead, then our 0.010
    fill = otu(us, "TRADE")
    assert (fill["X"], fill["l"], fill["L"], fill["m"], fill["N"], fill["n"]) == \
        ("FILLED", "0.010", "60000.00", True, "USDT", "0.12000000")
    acct_upd = us.until(lambda m: m.get("e") == "ACCOUNT_UPDATE")
    assert acct_upd["a"]["P"][0]["pa"] == "0.010"
    assert position(c)["positionAmt"] == "0.010"
    status, q = c.request("GET", "/fapi/v1/order", {"symbol": SYM, "orderId": body["orderId"]}, signed=True)
    assert q["status"] == "FILLED" and q["executedQty"] == "0.010" and "time" in q


def test_place_cancel_no_position(venue):
    v, c = venue
    us = user_stream(v, c)
    _, body = buy(c, newClientOrderId="mm-1")
    status, cancel = c.request("DELETE", "/fapi/v1/order", {"symbol": SYM, "origClientOrderId": "mm-1"}, signed=True)
    assert status == 200 and cancel["status"] == "CANCELED"
    assert otu(us, "CANCELED")["c"] == "mm-1"
    c.trade(SYM, "60000.0", "5.000", "SELL")
    assert position(c)["positionAmt"] == "0.000"
    status, err = c.request("DELETE", "/fapi/v1/order", {"symbol": SYM, "orderId": body["orderId"]}, signed=True)
    assert (status, err) == (400, {"code": -2011, "msg": "Unknown order sent."})
    status, err = c.request("GET", "/fapi/v1/order", {"symbol": SYM, "orderId": 1}, signed=True)
    assert err["code"] == -2013
    assert c.control("GET", "/state")["default"]["open_orders"] == []


def test_partial_fill_cancel_rest_position_and_fees_exact(venue):
    v, c = venue
    us = user_stream(v, c)
    _, body = buy(c)
    c.trade(SYM, "60000.0", "1.004", "SELL")
    fill = otu(us, "TRADE")
    assert fill["X"] == "PARTIALLY_FILLED" and fill["l"] == "0.004"
    c.request("DELETE", "/fapi/v1/order", {"symbol": SYM, "orderId": body["orderId"]}, signed=True)
    assert otu(us, "CANCELED")["z"] == "0.004"
    assert position(c)["positionAmt"] == "0.004"
    _, trades = c.request("GET", "/fapi/v1/userTrades", {"symbol": SYM}, signed=True)
    assert [(t["qty"], t["price"], t["commission"], t["maker"]) for t in trades] == \
        [("0.004", "60000.00", "0.04800000", True)]
    _, bal = c.request("GET", "/fapi/v2/balance", {}, signed=True)
    assert Decimal(bal[0]["balance"]) == Decimal("100000") - Decimal("0.048")
    state = c.control("GET", "/state")["default"]
    assert state["positions"][SYM]["qty_lots"] == 4 and state["open_orders"] == []


def test_auth_errors(make_venue):
    v, c = make_venue()
    status, err = c.request("GET", "/fapi/v2/account", {}, signed=True, bad_signature=True)
    assert (status, err["code"]) == (400, -1022)
    stale = SimClient(v.urls["rest"], time_offset_ms=-10_000)
    status, err = stale.request("GET", "/fapi/v2/account", {}, signed=True)
    assert (status, err["code"]) == (400, -1021)
    ahead = SimClient(v.urls["rest"], time_offset_ms=2_000)
    assert ahead.request("GET", "/fapi/v2/account", {}, signed=True)[1]["code"] == -1021
    wide = SimClient(v.urls["rest"], time_offset_ms=-10_000)
    assert wide.request("GET", "/fapi/v2/account", {"recvWindow": 20_000}, signed=True)[0] == 200
    other = SimClient(v.urls["rest"], api_key="nope")
    status, err = other.request("GET", "/fapi/v2/account", {}, signed=True)
    assert (status, err["code"]) == (401, -2015)
    # params in the query string of a POST are signed the same way
    status, body = c.request("POST", "/fapi/v1/order", {"symbol": SYM, "side": "BUY", "type": "LIMIT",
                             "timeInForce": "GTC", "price": "59000.0", "quantity": "0.010"}, signed=True, body=False)
    assert status == 200, body


def test_order_validation_codes(venue):
    _, c = venue
    assert buy(c, px="60000.1", tif="GTX")[1]["code"] == -5022
    assert buy(c, qty="0.001")[1]["code"] == -4164
    assert buy(c, px="60000.001")[1]["code"] == -1111
    assert c.place(symbol=SYM, side="BUY", type="LIMIT", quantity="0.010")[1]["code"] == -1102
    assert c.place(symbol=SYM, side="BUY", type="STOP", quantity="0.010")[1]["code"] == -1116
    assert c.control("GET", "/state")["default"]["open_orders"] == []


def test_gtx_expire_mode_reports_expired(make_venue):
    v, c = make_venue(gtx_mode="expire")
    us = user_stream(v, c)
    status, body = buy(c, px="60000.1", tif="GTX", newOrderRespType="RESULT")
    assert status == 200 and body["status"] == "EXPIRED"
    assert otu(us, "NEW")["X"] == "NEW"
    assert otu(us, "EXPIRED")["X"] == "EXPIRED"


def test_rate_limit_429_then_418(make_venue):
    v, c = make_venue(rate_limits=RateLimitConfig(weight_limit=5, ban_after=3, ban_seconds=30))
    seen = []
    for _ in range(12):
        status, body = c.request("GET", "/fapi/v1/time")
        seen.append(status)
        if status == 429:
            assert int(c.last_headers["Retry-After"]) >= 1 and body["code"] == -1003
        if status == 418:
            assert int(c.last_headers["Retry-After"]) >= 1 and "banned until" in body["msg"]
            break
    # the control API is free: exactly weight_limit requests pass
    assert seen[:5] == [200] * 5 and seen[5] == 429 and seen[-1] == 418
    assert c.request("GET", "/fapi/v1/time")[0] == 418


def test_order_count_limit(make_venue):
    v, c = make_venue(rate_limits=RateLimitConfig(orders_10s_limit=3))
    codes = [buy(c, px=f"5900{i}.0")[0] for i in range(4)]
    assert codes == [200, 200, 200, 429]
    assert c.place(symbol=SYM, side="BUY", type="LIMIT", timeInForce="GTC", price="59000.0",
                   quantity="0.010")[1]["code"] == -1015


def test_countdown_cancel_all(venue):
    v, c = venue
    us = user_stream(v, c)
    buy(c, px="59990.0")
    buy(c, px="59980.0")
    status, body = c.request("POST", "/fapi/v1/countdownCancelAll", {"symbol": SYM, "countdownTime": 300}, signed=True)
    assert (status, body) == (200, {"symbol": SYM, "countdownTime": "300"})
    otu(us, "CANCELED", timeout=5)
    otu(us, "CANCELED", timeout=5)
    assert c.control("GET", "/state")["default"]["open_orders"] == []


def test_countdown_refresh_keeps_orders(venue):
    v, c = venue
    buy(c, px="59990.0")
    for _ in range(4):
        c.request("POST", "/fapi/v1/countdownCancelAll", {"symbol": SYM, "countdownTime": 400}, signed=True)
        time.sleep(0.1)
    assert len(c.control("GET", "/state")["default"]["open_orders"]) == 1
    c.request("POST", "/fapi/v1/countdownCancelAll", {"symbol": SYM, "countdownTime": 0}, signed=True)
    time.sleep(0.5)
    assert len(c.control("GET", "/state")["default"]["open_orders"]) == 1


def test_batch_orders_and_cancel_all(venue):
    v, c = venue
    orders = [{"symbol": SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "59990.0",
               "quantity": "0.010"},
              {"symbol": SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "59990.0",
               "quantity": "0.001"}]
    status, res = c.request("POST", "/fapi/v1/batchOrders", {"batchOrders": json.dumps(orders)}, signed=True)
    assert status == 200 and res[0]["status"] == "NEW" and res[1]["code"] == -4164
    assert c.last_headers["X-MBX-ORDER-COUNT-10S"] == "2"
    oid = res[0]["orderId"]
    mods = [{"symbol": SYM, "orderId": oid, "side": "BUY", "price": "59991.0", "quantity": "0.020"}]
    status, res = c.request("PUT", "/fapi/v1/batchOrders", {"batchOrders": json.dumps(mods)}, signed=True)
    assert res[0]["price"] == "59991.00" and res[0]["origQty"] == "0.020"
    status, res = c.request("DELETE", "/fapi/v1/batchOrders",
                            {"symbol": SYM, "orderIdList": json.dumps([oid, 12345])}, signed=True)
    assert res[0]["status"] == "CANCELED" and res[1]["code"] == -2011
    buy(c, px="59990.0")
    status, res = c.request("DELETE", "/fapi/v1/allOpenOrders", {"symbol": SYM}, signed=True)
    assert res == {"code": 200, "msg": "The operation of cancel all open order is done."}
    _, open_ = c.request("GET", "/fapi/v1/openOrders", {"symbol": SYM}, signed=True)
    assert open_ == []


def test_ws_api_place_modify_cancel_status(venue):
    v, c = venue
    us = user_stream(v, c)
    ws = WsApiClient(v.urls["wsapi"])
    try:
        r = ws.call("order.place", {"symbol": SYM, "side": "SELL", "type": "LIMIT", "timeInForce": "GTX",
                                    "price": "60001.0", "quantity": "0.010", "newClientOrderId": "w1"})
        assert r["status"] == 200 and r["result"]["status"] == "NEW"
        kinds = {(x["rateLimitType"], x["interval"]) for x in r["rateLimits"]}
        assert ("ORDERS", "SECOND") in kinds and ("REQUEST_WEIGHT", "MINUTE") in kinds
        oid = r["result"]["orderId"]
        r = ws.call("order.modify", {"symbol": SYM, "side": "SELL", "orderId": oid, "price": "60002.0",
                                     "quantity": "0.020"})
        assert r["result"]["price"] == "60002.00" and r["result"]["orderId"] == oid
        assert otu(us, "AMENDMENT")["q"] == "0.020"
        r = ws.call("order.status", {"symbol": SYM, "origClientOrderId": "w1"})
        assert r["result"]["origQty"] == "0.020"
        r = ws.call("order.cancel", {"symbol": SYM, "orderId": oid})
        assert r["result"]["status"] == "CANCELED"
        r = ws.call("order.cancel", {"symbol": SYM, "orderId": oid})
        assert r["status"] == 400 and r["error"]["code"] == -2011
        r = ws.call("order.place", {"symbol": SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTX",
                                    "price": "60000.1", "quantity": "0.010"})
        assert r["error"]["code"] == -5022
        ws.secret = "wrong"
        r = ws.call("order.status", {"symbol": SYM, "orderId": oid})
        assert r["error"]["code"] == -1022
    finally:
        ws.close()


def test_fault_drop_user_stream_after_n(venue):
    v, c = venue
    c.control("POST", "/faults", {"drop": [{"channel": "user", "after": 2}]})
    us = user_stream(v, c)
    for i in range(3):
        buy(c, px=f"5999{i}.0")
    got = 0
    with pytest.raises(Exception):
        while True:
            us.next(timeout=3)
            got += 1
    assert got == 2
    us2 = user_stream(v, c)                       # the next connection is fine
    buy(c, px="59980.0")
    assert otu(us2, "NEW")["p"] == "59980.00"


def test_fault_reject_storm_5xx_429_storm(venue):
    v, c = venue
    c.control("POST", "/faults", {"reject": {"count": 2, "code": -2010, "msg": "storm"}})
    assert buy(c)[1] == {"code": -2010, "msg": "storm"}
    assert buy(c)[1]["code"] == -2010
    assert buy(c)[0] == 200
    c.control("POST", "/faults", {"errors5xx": {"count": 1, "status": 502}})
    assert c.request("GET", "/fapi/v1/time")[0] == 502
    c.control("POST", "/faults", {"storm429": {"count": 1, "retry_after": 2}})
    assert c.request("GET", "/fapi/v1/time")[0] == 429 and c.last_headers["Retry-After"] == "2"
    assert c.request("GET", "/fapi/v1/time")[0] == 200


def test_fault_outage_closes_and_refuses(venue):
    v, c = venue
    us = user_stream(v, c)
    c.control("POST", "/faults", {"outage_s": 0.6})
    with pytest.raises(Exception):
        us.next(timeout=3)                        # closed by the outage
    with pytest.raises(Exception):
        c.request("GET", "/fapi/v1/time")          # connection closed without a response
    time.sleep(0.7)
    assert c.request("GET", "/fapi/v1/time")[0] == 200


def test_listen_key_expired_event(venue):
    v, c = venue
    us = user_stream(v, c)
    c.control("POST", "/listenKey/expire")
    msg = us.until(lambda m: m.get("e") == "listenKeyExpired")
    assert msg["listenKey"]
    status, err = c.request("PUT", "/fapi/v1/listenKey", key=True)
    assert err["code"] == -1125


def test_market_stream_carries_injected_frames(venue):
    v, c = venue
    ms = StreamClient(v.urls["stream"] + "?streams=btcusdt@depth@100ms/btcusdt@trade")
    time.sleep(0.05)
    c.depth(SYM, [["60000.0", "3.000"]], [])
    m = ms.until(lambda m: m["stream"] == "btcusdt@depth@100ms")
    assert m["data"]["b"] == [["60000.0", "3.000"]] and m["data"]["pu"] == m["data"]["U"] - 1
    c.trade(SYM, "60000.0", "0.5", "SELL")
    m = ms.until(lambda m: m["stream"] == "btcusdt@trade")
    assert m["data"]["m"] is True
    _, depth = c.request("GET", "/fapi/v1/depth", {"symbol": SYM, "limit": 5})
    assert depth["bids"][0] == ["60000.00", "3.000"] and depth["lastUpdateId"] >= 2
