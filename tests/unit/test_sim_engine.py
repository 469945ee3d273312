"""The simulated exchange (no sockets): validation codes, fills, fees, positions, modify."""
from __future__ import annotations

from decimal import Decimal

import pytest

from mmshm._native import matching as M
from mmshm.records import FEE_SCALE
from mmshm.venues.sim import errors as E
from mmshm.venues.sim.engine import SimExchange
from mmshm.venues.sim.symbols import default_spec


@pytest.fixture
def ex():
    x = SimExchange([default_spec("BTCUSDT")])
    x.add_account("a", "ka", "sa", balance="1000", maker_fee_ppm=200, taker_fee_ppm=500)
    x.add_account("b", "kb", "sb", balance="1000")
    x.events = []
    x.listeners.append(lambda acct, ev: x.events.append((acct.name, ev)))
    x.on_level("BTCUSDT", M.BUY, 600000, 1000)     # 60000.0 x 1.000
    x.on_level("BTCUSDT", M.SELL, 600001, 1000)    # 60000.1 x 1.000
    return x


def limit(side, px, qty, **kw):
    return {"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "timeInForce": kw.pop("tif", "GTC"),
            "price": px, "quantity": qty, **kw}


@pytest.mark.parametrize("params,code", [
    (limit("BUY", "60000.001", "0.010"), E.BAD_PRECISION),
    (limit("BUY", "60000.05", "0.010"), E.PRICE_NOT_INCREASED_BY_TICK_SIZE),
    (limit("BUY", "60000.0", "0.0105"), E.BAD_PRECISION),
    (limit("BUY", "60000.0", "0.001"), E.MIN_NOTIONAL),
    (limit("HOLD", "60000.0", "0.010"), E.INVALID_SIDE),
    (limit("BUY", "60000.0", "0.010", tif="GTD"), E.INVALID_TIF),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}, E.MANDATORY_PARAM),
    (limit("BUY", "60000.0", "0.010", symbol="NOPE"), E.BAD_SYMBOL),
    (limit("BUY", "abc", "0.010"), E.ILLEGAL_CHARS),
    (limit("BUY", "60000.0", "0.010", reduceOnly="true"), E.REDUCE_ONLY_REJECT),
    (limit("BUY", "60000.1", "0.010", tif="GTX"), E.GTX_ORDER_REJECT),
    (limit("BUY", "60000.1", "2.000", tif="FOK"), E.FOK_ORDER_REJECT),
])
def test_rejects_carry_binance_codes(ex, params, code):
    with pytest.raises(E.VenueError) as info:
        ex.place(ex.accounts["ka"], params)
    assert info.value.code == code
    assert ex.open_orders(ex.accounts["ka"]) == []


def test_partial_fill_cancel_rest_position_and_fees_exact(ex):
    a = ex.accounts["ka"]
    o = ex.place(a, limit("BUY", "60000.0", "0.010"))
    ex.on_trade("BTCUSDT", 600000, 1004, M.SELL)    # 1.000 ahead, 0.004 to us
    assert o.status == "PARTIALLY_FILLED" and o.executed == 4
    ex.cancel(a, {"symbol": "BTCUSDT", "orderId": str(o.order_id)})
    assert o.status == "CANCELED"
    pos = a.positions["BTCUSDT"]
    assert pos.qty == 4 and pos.entry == 600000
    # maker fee: 60000 * 0.004 * 0.0002 = 0.048 USDT
    assert a.balances["USDT"] == 1000 * FEE_SCALE - int(Decimal("0.048") * FEE_SCALE)
    xs = [ev["o"]["x"] for n, ev in ex.events if n == "a" and ev["e"] == "ORDER_TRADE_UPDATE"]
    assert xs == ["NEW", "TRADE", "CANCELED"]


def test_taker_round_trip_realized_pnl(ex):
    a = ex.accounts["ka"]
    ex.place(a, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"})
    assert a.positions["BTCUSDT"].qty == 10
    ex.on_level("BTCUSDT", M.BUY, 600100, 1000)     # bid 60010.0
    ex.place(a, {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010", "reduceOnly": "true"})
    pos = a.positions["BTCUSDT"]
    assert pos.qty == 0
    # bought 0.01 @ 60000.1, sold @ 60010.0: +0.099; taker fees 0.3000005 + 0.30005
    assert pos.realized == int(Decimal("0.099") * FEE_SCALE)
    fees = Decimal("0.3000005") + Decimal("0.30005")
    assert a.balances["USDT"] == int((Decimal(1000) + Decimal("0.099") - fees) * FEE_SCALE)


def test_modify_requeues_and_amendment_event(ex):
    a = ex.accounts["ka"]
    o = ex.place(a, limit("BUY", "59990.0", "0.010", newClientOrderId="q1"))
    ex.modify(a, {"symbol": "BTCUSDT", "origClientOrderId": "q1", "side": "BUY", "quantity": "0.020",
                  "price": "60000.0"})
    st = ex.symbols["BTCUSDT"]
    assert st.core.order(o.order_id)[1:4] == (600000, 20, 1000)
    assert ex.events[-1][1]["o"]["x"] == "AMENDMENT"
    with pytest.raises(E.VenueError) as info:
        ex.modify(a, {"symbol": "BTCUSDT", "orderId": str(o.order_id), "side": "BUY", "quantity": "0.020",
                      "price": "60000.0"})
    assert info.value.code == E.SAME_ORDER


def test_unknown_cancel_and_query_codes(ex):
    a = ex.accounts["ka"]
    with pytest.raises(E.VenueError) as info:
        ex.cancel(a, {"symbol": "BTCUSDT", "orderId": "1"})
    assert info.value.code == -2011
    with pytest.raises(E.VenueError) as info:
        ex.query(a, {"symbol": "BTCUSDT", "orderId": "1"})
    assert info.value.code == -2013


def test_self_trade_expire_taker_between_own_orders(ex):
    a = ex.accounts["ka"]
    ex.place(a, limit("SELL", "60000.1", "0.010"))
    o = ex.place(a, {**limit("BUY", "60000.1", "0.005", tif="IOC"), "selfTradePreventionMode": "EXPIRE_TAKER"})
    # the displayed 1.000 at 60000.1 goes first, so the IOC fills against it
    assert o.status == "FILLED"
    ex.on_level("BTCUSDT", M.SELL, 600001, 0)
    ex.on_level("BTCUSDT", M.SELL, 600005, 1000)
    o2 = ex.place(a, limit("BUY", "60000.1", "0.005"))
    assert o2.status == "EXPIRED_IN_MATCH"


def test_countdown_cancels_all(ex):
    a = ex.accounts["ka"]
    ex.place(a, limit("BUY", "59000.0", "0.010"))
    ex.countdown(a, "BTCUSDT", 1)
    ex.clock_ms = lambda: 2 ** 50
    assert ex.check_countdowns() == 1
    assert ex.open_orders(a) == []


def test_duplicate_client_order_id(ex):
    a = ex.accounts["ka"]
    ex.place(a, limit("BUY", "59000.0", "0.010", newClientOrderId="dup"))
    with pytest.raises(E.VenueError) as info:
        ex.place(a, limit("BUY", "59000.0", "0.010", newClientOrderId="dup"))
    assert info.value.code == E.DUPLICATED_CLIENT_ORDER_ID


def test_reduce_only_never_flips(ex):
    a = ex.accounts["ka"]
    ex.place(a, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"})
    with pytest.raises(E.VenueError) as info:
        ex.place(a, limit("SELL", "60100.0", "0.020", reduceOnly="true"))
    assert info.value.code == E.REDUCE_ONLY_REJECT
    ro = ex.place(a, limit("SELL", "60100.0", "0.010", reduceOnly="true"))
    assert ro.status == "NEW"
    # the position is closed by another order: the reduce-only order can no longer reduce
    ex.place(a, {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010"})
    assert a.positions["BTCUSDT"].qty == 0
    assert ro.status == "EXPIRED" and ex.open_orders(a) == []
