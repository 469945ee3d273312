"""`mmshm venue` as a child process (synthetic market), and a capture replay in process."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from tests.conftest import PYTHON
from mmshm.venues.sim.server import VenueConfig, VenueThread
from mmshm.venues.sim.testclient import SimClient, StreamClient

SYM = "BTCUSDT"


def _read_listening(proc) -> dict:
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()
    info = json.loads(line)
    assert info["event"] == "listening"
    return info


@pytest.mark.timeout(60)
def test_cli_venue_synthetic_market_trades(spawn):
    proc = spawn([PYTHON, "-m", "mmshm", "venue", "--port", "0", "--seed", "3", "--symbols", "BTCUSDT",
                  "--taker-fee-ppm", "400", "--account", "b:kb:sb"], env={"MMSHM_API_KEY": "k1", "MMSHM_API_SECRET": "s1"})
    info = _read_listening(proc)
    assert info["port"] > 0 and info["api_key"] == "k1"
    c = SimClient(info["rest"], api_key="k1", secret="s1")
    status, ex = c.request("GET", "/fapi/v1/exchangeInfo")
    assert status == 200 and ex["symbols"][0]["symbol"] == SYM
    assert {r["rateLimitType"] for r in ex["rateLimits"]} == {"REQUEST_WEIGHT", "ORDERS"}
    ms = StreamClient(info["stream"] + "?streams=btcusdt@depth@0ms/btcusdt@bookTicker")
    first = ms.next(timeout=10)
    assert first["stream"] in ("btcusdt@depth@0ms", "btcusdt@bookTicker")
    ms.close()
    _, depth = c.request("GET", "/fapi/v1/depth", {"symbol": SYM, "limit": 5})
    best_ask = Decimal(depth["asks"][0][0])
    status, body = c.place(symbol=SYM, side="BUY", type="MARKET", quantity="0.002", newOrderRespType="RESULT")
    assert status == 200 and body["status"] == "FILLED", body
    assert Decimal(body["avgPrice"]) >= best_ask - Decimal("100")
    _, rate = c.request("GET", "/fapi/v1/commissionRate", {"symbol": SYM}, signed=True)
    assert rate["takerCommissionRate"] == "0.000400"
    _, pos = c.request("GET", "/fapi/v2/positionRisk", {"symbol": SYM}, signed=True)
    assert pos[0]["positionAmt"] == "0.002"
    b = SimClient(info["rest"], api_key="kb", secret="sb")
    _, pos = b.request("GET", "/fapi/v2/positionRisk", {"symbol": SYM}, signed=True)
    assert pos[0]["positionAmt"] == "0.000"
    proc.terminate()
    assert proc.wait(timeout=10) == 0


@pytest.mark.timeout(60)
def test_capture_replay_drives_book_and_streams(binance_capture):
    vt = VenueThread(VenueConfig(market="capture", capture=str(binance_capture), speed=20.0))
    v = vt.start()
    try:
        c = SimClient(v.urls["rest"])
        ms = StreamClient(v.urls["stream"] + "?streams=btcusdt@bookTicker/btcusdt@trade")
        seen = set()
        deadline = time.monotonic() + 20
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(ms.next(timeout=10)["stream"])
        assert seen == {"btcusdt@bookTicker", "btcusdt@trade"}
        ms.close()
        _, depth = c.request("GET", "/fapi/v1/depth", {"symbol": SYM, "limit": 5})
        assert depth["bids"] and depth["asks"]
        assert Decimal(depth["bids"][0][0]) < Decimal(depth["asks"][0][0])
        status, body = c.place(symbol=SYM, side="SELL", type="MARKET", quantity="0.002", newOrderRespType="RESULT")
        assert status == 200 and body["status"] == "FILLED", body
        assert Decimal("50000") < Decimal(body["avgPrice"]) < Decimal("70000")
    finally:
        vt.stop()
