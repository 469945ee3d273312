"""The venue account end to end over loopback: the simulated venue in its own process, its
REST account and user-stream ACCOUNT_UPDATE into the ``account`` table by AccountWriter,
and risk's engine reading that table (venue equity and margin)."""
from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from decimal import Decimal

import pytest

from mmshm.execution.account import AccountTable, AccountWriter
from mmshm.instruments import InstrumentTable
from mmshm.records import FEE_SCALE, AccountSource, Side
from mmshm.risk import InstrumentRisk, RiskEngine, RiskParams
from mmshm.risk.account import VENUE
from mmshm.venues.binance_usdm.auth import Signer
from mmshm.venues.binance_usdm.trading import (AccountUpdate, BinanceTrading, InstrumentIndex, OrderRequest,
                                               UserStream, local_endpoints)

KEY, SECRET = "mmshm-acct-key", "mmshm-acct-secret"

VENUE_SCRIPT = r"""
import asyncio
from mmshm.venues.sim.server import SimVenue, VenueConfig
async def main():
    v = SimVenue(VenueConfig(symbols=("BTCUSDT",), market="none"))
    await v.start()
    print(v.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def units(s: str) -> int:
    return int(Decimal(s) * FEE_SCALE)


def http(port: int, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def venue(spawn) -> int:
    proc = spawn([sys.executable, "-c", VENUE_SCRIPT], env={"MMSHM_API_KEY": KEY, "MMSHM_API_SECRET": SECRET})
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"venue did not start: {proc.stderr.read().decode()[-2000:]}")
    return int(line)


async def wait_for(cond, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return True
        await asyncio.sleep(0.01)
    return cond()


@pytest.mark.timeout(60)
def test_rest_and_stream_account_into_the_table_and_risk(venue, instance):
    http(venue, "/_control/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]], "asks": [["50010.0", "1"]]})
    info = http(venue, "/fapi/v1/exchangeInfo")
    specs = InstrumentTable.from_binance_exchange_info(info, ["BTCUSDT"]).specs
    idx = InstrumentIndex(specs)

    async def main():
        ep = local_endpoints("127.0.0.1", venue)
        trading = BinanceTrading(ep, Signer(KEY, SECRET), idx, prefer_ws=False, timeout_s=3.0)
        await trading.start(connect_ws=False)
        writer = AccountWriter.create(instance, venue=1, asset="USDT")
        stream = UserStream(ep.ws_stream, trading.rest, idx, backoff_base_s=0.02, backoff_cap_s=0.2)

        def on_event(ev):
            if isinstance(ev, AccountUpdate):
                writer.on_account_update(ev)
        task = asyncio.ensure_future(stream.run(on_event))
        try:
            # REST: the funded, flat account
            assert await writer.poll_once(trading.rest)
            r = writer.read()
            assert r["source"] == AccountSource.REST and r["wallet_balance"] == units("100000")
            assert r["initial_margin"] == 0 and r["margin_mono"] > 0
            assert await wait_for(lambda: stream.connects >= 1)
            # a taker buy of 0.010 at 50010.0: fee 500 ppm of 500.1 = 0.25005
            await trading.place(OrderRequest("BTCUSDT", Side.BUY, 500100, 10, "acct-1", post_only=False))
            assert await wait_for(lambda: writer.counters["stream_updates"] >= 1)
            r = writer.read()
            assert r["source"] == AccountSource.STREAM and r["wallet_balance"] == units("99999.74995")
            # REST again: margins of the new position at the mid 50005.0 (leverage 20, maintenance 0.4%)
            assert await writer.poll_once(trading.rest)
        finally:
            stream.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await trading.close()
        return writer

    writer = asyncio.run(main())
    table = AccountTable.attach(instance)
    try:
        row = table.read(0)
        assert row["source"] == AccountSource.REST and row["rest_updates"] == 2 and row["stream_updates"] >= 1
        assert row["initial_margin"] == units("25.0025") and row["maint_margin"] == units("2.0002")
        assert row["unrealized_pnl"] == units("-0.05") and row["drops"] == 0
        # risk: equity from the venue (not the configured 10 000), margin from the venue's figure
        inst = InstrumentRisk.from_instrument_row(specs[0].to_row(0)[0])
        eng = RiskEngine(RiskParams(initial_equity=10_000 * FEE_SCALE), [inst])
        eng.account.asset = "USDT"
        assert eng.on_account_row(row)
        eng.evaluate()
        assert eng.equity_source == VENUE and eng.margin_source == "venue"
        assert eng.equity() == units("99999.74995")
        assert eng.metrics.margin_utilisation == pytest.approx(25.0025 / 99999.74995)
    finally:
        table.close()
        writer.close(unlink=True)
