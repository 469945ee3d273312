"""Signatures, timestamps, rate-limit windows and fault bookkeeping of the simulated venue."""
from __future__ import annotations

import pytest

from mmshm.venues.sim import auth
from mmshm.venues.sim import errors as E
from mmshm.venues.sim.faults import FaultInjector
from mmshm.venues.sim.ratelimit import RateLimitConfig, RateLimiter, interval_suffix


def test_signature_over_exact_total_params():
    # Binance's documented example (HMAC key/secret from the API docs)
    secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
    qs = ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
          "&recvWindow=5000&timestamp=1591702613943")
    sig = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    assert auth.sign(secret, qs) == sig
    payload, got = auth.split_signature(qs + "&signature=" + sig)
    assert (payload, got) == (qs, sig)
    auth.verify_signature(secret, payload, got.upper())
    with pytest.raises(E.VenueError) as info:
        auth.verify_signature(secret, payload + "0", got)
    assert info.value.code == -1022
    with pytest.raises(E.VenueError) as info:
        auth.verify_signature(secret, payload, None)
    assert info.value.code == -1102


def test_split_signature_in_the_middle_or_first():
    assert auth.split_signature("signature=ab&a=1") == ("a=1", "ab")
    assert auth.split_signature("a=1&signature=ab&b=2") == ("a=1&b=2", "ab")
    assert auth.split_signature("a=1") == ("a=1", None)


def test_ws_payload_sorted_without_signature():
    p = {"symbol": "BTCUSDT", "apiKey": "k", "timestamp": 5, "reduceOnly": False, "signature": "x"}
    assert auth.ws_payload(p) == "apiKey=k&reduceOnly=false&symbol=BTCUSDT&timestamp=5"


@pytest.mark.parametrize("ts,rw,ok", [(10_000, None, True), (4_999, None, False), (5_000, None, True),
                                      (11_000, None, False), (10_999, None, True), (1_000, 9_000, True),
                                      (1_000, 70_000, False)])
def test_timestamp_window(ts, rw, ok):
    params = {"timestamp": str(ts)}
    if rw is not None:
        params["recvWindow"] = str(rw)
    if ok:
        auth.check_timestamp(params, 10_000)
    else:
        with pytest.raises(E.VenueError) as info:
            auth.check_timestamp(params, 10_000)
        assert info.value.code in (-1021, -1130)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_weight_window_429_then_418_then_recovers():
    clock = Clock(600.0)
    rl = RateLimiter(RateLimitConfig(weight_limit=3, ban_after=2, ban_seconds=30), clock=clock)
    for i in range(3):
        assert rl.charge("ip", 1)["X-MBX-USED-WEIGHT-1M"] == str(i + 1)
    clock.t = 630.0
    with pytest.raises(E.VenueError) as info:
        rl.charge("ip", 1)
    assert (info.value.http_status, info.value.code, info.value.retry_after) == (429, -1003, 30)
    with pytest.raises(E.VenueError) as info:
        rl.charge("ip", 1)
    assert info.value.http_status == 429
    with pytest.raises(E.VenueError) as info:
        rl.charge("ip", 1)
    assert info.value.http_status == 418 and info.value.retry_after == 30
    clock.t = 655.0                        # still banned (until 660)
    with pytest.raises(E.VenueError) as info:
        rl.charge("ip", 1)
    assert info.value.http_status == 418
    clock.t = 700.0
    assert rl.charge("ip", 1)["X-MBX-USED-WEIGHT-1M"] == "1"
    assert rl.charge("other", 1)["X-MBX-USED-WEIGHT-1M"] == "1"


def test_client_that_waits_retry_after_is_not_banned():
    clock = Clock(0.0)
    rl = RateLimiter(RateLimitConfig(weight_limit=1, ban_after=2), clock=clock)
    for minute in range(5):
        clock.t = minute * 60.0
        rl.charge("ip", 1)
        with pytest.raises(E.VenueError) as info:
            rl.charge("ip", 1)
        assert info.value.http_status == 429


def test_order_count_windows():
    clock = Clock(0.0)
    rl = RateLimiter(RateLimitConfig(orders_10s_limit=2, orders_1m_limit=3), clock=clock)
    rl.charge_orders("a", 1)
    h = rl.charge_orders("a", 1)
    assert h == {"X-MBX-ORDER-COUNT-10S": "2", "X-MBX-ORDER-COUNT-1M": "2"}
    with pytest.raises(E.VenueError) as info:
        rl.charge_orders("a", 1)
    assert (info.value.code, info.value.http_status) == (-1015, 429)
    clock.t = 10.0
    rl.charge_orders("a", 1)
    with pytest.raises(E.VenueError):
        rl.charge_orders("a", 1)               # the minute bucket is full
    rl.charge_orders("b", 2)                   # per account


def test_exchange_info_rate_limits_and_suffixes():
    assert interval_suffix(60) == ("1M", 1, "MINUTE")
    assert interval_suffix(10) == ("10S", 10, "SECOND")
    cfg = RateLimitConfig(weight_limit=7)
    assert cfg.exchange_info()[0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                      "intervalNum": 1, "limit": 7}


def test_faults_count_down_and_clear():
    f = FaultInjector()
    f.apply({"drop": [{"channel": "wsapi", "after": 3, "times": 2}], "reject": {"count": 1, "code": -2010},
             "storm429": {"count": 1}, "errors5xx": {"count": 1, "status": 500}, "latency_ms": [1, 2]})
    assert f.take_drop_budget("wsapi") == 3 and f.take_drop_budget("wsapi") == 3
    assert f.take_drop_budget("wsapi") is None
    assert f.take_reject() == (-2010, "Order rejected by fault injection.") and f.take_reject() is None
    assert f.take_429() == 1 and f.take_429() is None
    assert f.take_5xx() == 500 and f.take_5xx() is None
    with pytest.raises(ValueError):
        f.drop_after("nope", 1)
    with pytest.raises(ValueError):
        f.errors_5xx(1, 404)
    f.clear()
    assert f.describe()["latency_ms"] == [0.0, 0.0]
