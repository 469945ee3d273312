"""The simulated venue's account figures (GET /fapi/v2/account, /fapi/v2/balance, v3
positionRisk): initial and maintenance margin of positions and open orders, available
balance, in Binance's shapes, checked against hand-computed values."""
from __future__ import annotations

from decimal import Decimal

import pytest

from mmshm._native import matching as M
from mmshm.execution.account import parse_rest_account
from mmshm.records import FEE_SCALE
from mmshm.venues.sim.engine import SimExchange
from mmshm.venues.sim.symbols import default_spec


@pytest.fixture
def ex():
    x = SimExchange([default_spec("BTCUSDT")])
    x.add_account("a", "ka", "sa", balance="1000", maker_fee_ppm=200, taker_fee_ppm=500)
    x.on_level("BTCUSDT", M.BUY, 600000, 1000)     # 60000.0 x 1.000
    x.on_level("BTCUSDT", M.SELL, 600001, 1000)    # 60000.1 x 1.000
    return x


def limit(side, px, qty):
    return {"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "timeInForce": "GTC", "price": px, "quantity": qty}


def test_flat_account_has_no_margin(ex):
    info = ex.account_info(ex.accounts["ka"])
    assert info["totalInitialMargin"] == "0.00000000" and info["totalMaintMargin"] == "0.00000000"
    assert info["availableBalance"] == info["totalMarginBalance"] == "1000.00000000"


def test_position_and_open_order_margins(ex):
    a = ex.accounts["ka"]
    ex.place(a, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"})   # taker @ 60000.1
    ex.place(a, limit("BUY", "59990.0", "0.010"))
    ex.place(a, limit("SELL", "60100.0", "0.030"))   # 0.010 of it would close the long
    info = ex.account_info(a)
    # mark = mid 60000.05; notional 600.0005; leverage 20 -> 30.000025; maintenance 0.4% -> 2.400002
    # open orders: buys would add 0.010 @ 59990 = 599.9, sells 0.020 @ 60100 = 1202: the larger / 20 = 60.1
    assert info["totalPositionInitialMargin"] == "30.00002500"
    assert info["totalOpenOrderInitialMargin"] == "60.10000000"
    assert info["totalInitialMargin"] == "90.10002500"
    assert info["totalMaintMargin"] == "2.40000200"
    # wallet 1000 - taker fee 0.3000005; unrealized (60000.05 - 60000.1) x 0.01 = -0.0005
    assert info["totalWalletBalance"] == "999.69999950"
    assert info["totalMarginBalance"] == "999.69949950"
    assert info["availableBalance"] == "909.59947450"
    usdt = info["assets"][0]
    assert usdt["initialMargin"] == "90.10002500" and usdt["maintMargin"] == "2.40000200"
    assert usdt["availableBalance"] == "909.59947450"
    (pos,) = info["positions"]
    assert pos["initialMargin"] == "90.10002500" and pos["positionInitialMargin"] == "30.00002500"
    assert pos["leverage"] == "20"
    (bal,) = ex.balances(a)
    assert bal["availableBalance"] == "909.59947450" and bal["maxWithdrawAmount"] == "909.59947450"
    (v3,) = ex.position_risk(a, "BTCUSDT", version=3)
    assert v3["maintMargin"] == "2.40000200" and v3["openOrderInitialMargin"] == "60.10000000"
    # what the executor's writer makes of it
    vals, venue_ts, upnl = parse_rest_account(info, "USDT")
    assert vals["initial_margin"] == int(Decimal("90.100025") * FEE_SCALE)
    assert vals["margin_balance"] == int(Decimal("999.6994995") * FEE_SCALE) and venue_ts > 0
    assert upnl == {"BTCUSDT": -50_000}


def test_leverage_setting_changes_margin(ex):
    a = ex.accounts["ka"]
    ex.place(a, {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010"})   # short @ 60000.0
    a.leverage["BTCUSDT"] = 5
    info = ex.account_info(a)
    assert info["totalPositionInitialMargin"] == "120.00010000"      # 600.0005 / 5
    ex.place(a, limit("BUY", "59000.0", "0.010"))     # would only close the short: no order margin
    assert ex.account_info(a)["totalOpenOrderInitialMargin"] == "0.00000000"
