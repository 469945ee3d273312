"""Fault injection of the simulated venue over real sockets: order-entry drops, stalls,
added latency, WebSocket API rate limits, STP across accounts."""
from __future__ import annotations

import time

import pytest

from mmshm.venues.sim.ratelimit import RateLimitConfig
from mmshm.venues.sim.server import AccountConfig, VenueConfig, VenueThread
from mmshm.venues.sim.testclient import SimClient, StreamClient, WsApiClient

pytestmark = pytest.mark.timeout(60)
SYM = "BTCUSDT"
ORDER = {"symbol": SYM, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "59000.0",
         "quantity": "0.010"}


@pytest.fixture
def make_venue():
    threads = []

    def _make(**kw):
        kw.setdefault("market", "none")
        vt = VenueThread(VenueConfig(**kw))
        venue = vt.start()
        threads.append(vt)
        client = SimClient(venue.urls["rest"])
        client.depth(SYM, [["60000.0", "1.000"]], [["60000.1", "1.000"]])
        return venue, client

    yield _make
    for vt in threads:
        vt.stop()


def test_order_entry_drops_after_n_messages_for_n_connections(make_venue):
    v, c = make_venue()
    c.control("POST", "/faults", {"drop": [{"channel": "wsapi", "after": 2, "times": 2}]})
    for _ in range(2):
        ws = WsApiClient(v.urls["wsapi"])
        assert ws.call("order.place", ORDER)["status"] == 200
        assert ws.call("order.place", ORDER)["status"] == 200
        with pytest.raises(Exception):
            ws.call("order.place", ORDER, timeout=3)   # the request may land; its answer never comes
        ws.close()
    ws = WsApiClient(v.urls["wsapi"])
    for _ in range(4):
        assert ws.call("order.place", ORDER)["status"] == 200
    ws.close()
    assert c.control("GET", "/faults")["counters"]["dropped"] == 2


def test_user_stream_stall_delays_events(make_venue):
    v, c = make_venue()
    us = StreamClient(v.urls["ws"] + "/" + c.listen_key())
    time.sleep(0.05)
    c.control("POST", "/faults", {"stall": [{"channel": "user", "seconds": 0.5}]})
    t0 = time.monotonic()
    assert c.place(**ORDER)[0] == 200
    msg = us.next(timeout=5)
    assert msg["o"]["x"] == "NEW" and time.monotonic() - t0 >= 0.4


def test_added_latency(make_venue):
    v, c = make_venue()
    c.control("POST", "/faults", {"latency_ms": 200})
    t0 = time.monotonic()
    assert c.request("GET", "/fapi/v1/time")[0] == 200
    assert time.monotonic() - t0 >= 0.19
    c.control("DELETE", "/faults")


def test_ws_api_rate_limit_then_ban(make_venue):
    v, c = make_venue(rate_limits=RateLimitConfig(weight_limit=8, ban_after=2, ban_seconds=30))
    ws = WsApiClient(v.urls["wsapi"])                     # the connection costs 5
    statuses = []
    for _ in range(8):
        r = ws.call("order.status", {"symbol": SYM, "orderId": 1})
        statuses.append(r["status"])
        if r["status"] == 429:
            data = r["error"]["data"]
            assert r["error"]["code"] == -1003 and data["retryAfter"] > data["serverTime"]
    ws.close()
    assert statuses[:3] == [400, 400, 400]                # -2013: unknown order, but not limited
    assert 429 in statuses and statuses[-1] == 418
    assert c.request("GET", "/fapi/v1/time")[0] == 418    # the ban is per IP, REST too


def test_self_trade_prevention_and_cross_account_fill(make_venue):
    accounts = [AccountConfig("a", "ka", "sa"), AccountConfig("b", "kb", "sb")]
    v, c = make_venue(accounts=accounts)
    a = SimClient(v.urls["rest"], "ka", "sa")
    b = SimClient(v.urls["rest"], "kb", "sb")
    a.depth(SYM, [], [["60000.1", "0"]])                  # no outside asks left
    assert a.place(symbol=SYM, side="SELL", type="LIMIT", timeInForce="GTC", price="60005.0",
                   quantity="0.010")[0] == 200
    status, body = a.place(symbol=SYM, side="BUY", type="LIMIT", timeInForce="GTC", price="60005.0",
                           quantity="0.010", newOrderRespType="RESULT")
    assert body["status"] == "EXPIRED_IN_MATCH"         # default EXPIRE_TAKER
    status, body = b.place(symbol=SYM, side="BUY", type="LIMIT", timeInForce="IOC", price="60005.0",
                           quantity="0.004", newOrderRespType="RESULT")
    assert body["status"] == "FILLED" and body["avgPrice"].startswith("60005.0")
    _, ta = a.request("GET", "/fapi/v1/userTrades", {"symbol": SYM}, signed=True)
    _, tb = b.request("GET", "/fapi/v1/userTrades", {"symbol": SYM}, signed=True)
    assert ta[0]["maker"] is True and tb[0]["maker"] is False and ta[0]["id"] == tb[0]["id"]
    state = c.control("GET", "/state")
    assert state["a"]["positions"][SYM]["qty_lots"] == -4 and state["b"]["positions"][SYM]["qty_lots"] == 4


def test_market_stream_drop_after_n(make_venue):
    v, c = make_venue()
    c.control("POST", "/faults", {"drop": [{"channel": "market", "after": 3}]})
    ms = StreamClient(v.urls["stream"] + "?streams=btcusdt@trade")
    time.sleep(0.05)
    for i in range(5):
        c.trade(SYM, "60000.0", "0.001", "BUY")
    got = 0
    with pytest.raises(Exception):
        while True:
            assert ms.next(timeout=3)["stream"] == "btcusdt@trade"
            got += 1
    assert got == 3
    ms2 = StreamClient(v.urls["ws"] + "/btcusdt@trade")   # raw stream: data only
    time.sleep(0.05)
    c.trade(SYM, "60000.0", "0.001", "BUY")
    assert ms2.next(timeout=3)["e"] == "trade"
