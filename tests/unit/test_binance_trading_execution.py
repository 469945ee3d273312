"""Cancel-all, reconciliation and the dead-man switch through the real Binance client,
over loopback sockets, against the documented-shape stub server."""
from __future__ import annotations

import asyncio

import pytest

from mmshm.execution.cancel_all import cancel_all
from mmshm.execution.orders import VenueEvent, WorkingOrders
from mmshm.execution.reconcile import DeadManSwitch, reconcile
from mmshm.records import OrderEventKind as K, OrderStatus as S, Side
from test_binance_trading_client import _client, req, stub_loop  # noqa: F401  (fixture)


@pytest.mark.timeout(20)
def test_cancel_all_bulk(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        try:
            for i in range(3):
                await t.place(req(f"mm1_{i + 1}_1", price=1000000 - i))
            rep = await cancel_all(t, ["BTCUSDT"])
            assert rep.ok and rep.method == "bulk" and rep.canceled == 3 and rep.remaining == []
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_cancel_all_falls_back_to_per_order_when_bulk_fails(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        try:
            for i in range(3):
                await t.place(req(f"mm1_{i + 1}_1", price=1000000 - i))
            stub.fail_path["DELETE /fapi/v1/allOpenOrders"] = [(500, {"code": -1000, "msg": "boom"})]
            stub.fail_path["DELETE /fapi/v1/order"] = [(503, {"code": -1000, "msg": "Service Unavailable."})]
            rep = await cancel_all(t, ["BTCUSDT"], backoff_s=0.001)
            assert rep.ok and rep.method == "per_order" and rep.canceled == 3, rep
            assert any("allOpenOrders" in e for e in rep.errors)
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_cancel_all_reports_failure_when_venue_keeps_failing(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        t.breaker.failure_threshold = 1000
        try:
            await t.place(req("mm1_1_1"))
            stub.fail_path["DELETE /fapi/v1/allOpenOrders"] = [(500, {"code": -1000, "msg": "x"})]
            stub.fail_path["DELETE /fapi/v1/order"] = [(500, {"code": -1000, "msg": "x"})] * 10
            rep = await cancel_all(t, ["BTCUSDT"], retries=2, backoff_s=0.001)
            assert not rep.ok and rep.verified and rep.remaining == ["mm1_1_1"] and rep.failed == ["mm1_1_1"]
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_reconcile_merges_venue_state(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        w = WorkingOrders()
        try:
            # A: we sent it, the ack was lost; the venue has it open
            w.new_sent(client_id="mm1_1_1", cid_num=1, instrument=0, side=Side.BUY, price=1000000, qty=2)
            await t.place(req("mm1_1_1"))
            # B: acked locally, then filled at the venue while we were disconnected
            w.new_sent(client_id="mm1_2_1", cid_num=2, instrument=0, side=Side.BUY, price=999999, qty=2)
            b = await t.place(req("mm1_2_1", price=999999))
            w.apply(VenueEvent(K.ACK, "mm1_2_1", b.venue_order_id))
            await stub.fill("mm1_2_1", "0.001", 501)
            w.apply(VenueEvent(K.FILL, "mm1_2_1", b.venue_order_id, fill_px=999999, fill_qty=1, trade_id=501))
            await stub.fill("mm1_2_1", "0.001", 502)
            # C: an order at the venue that we do not know (a previous run's)
            await t.place(req("mm0_9_9", price=999000))
            # D: we think we sent it; the venue never got it
            w.new_sent(client_id="mm1_4_1", cid_num=4, instrument=0, side=Side.SELL, price=1100000, qty=1)
            # D's request is recent: it might still be in flight, so it is not judged yet
            rep = await reconcile(t, w, ["BTCUSDT"], lambda i: "BTCUSDT", since_ms=0)
            assert rep.still_pending == ["mm1_4_1"] and w.get("mm1_4_1").status == S.PENDING_NEW
            w.get("mm1_4_1").placed_mono -= 10_000_000_000   # ... older than recvWindow: final
            rep2 = await reconcile(t, w, ["BTCUSDT"], lambda i: "BTCUSDT", since_ms=0)
            assert rep2.resolved == {"mm1_4_1": "REJECTED"}
            assert rep.acked == ["mm1_1_1"] and w.get("mm1_1_1").status == S.NEW
            assert rep.unknown_canceled == ["mm0_9_9"]
            assert stub.orders["mm0_9_9"]["status"] == "CANCELED"
            assert rep.fills_added == 1 and rep.fills_duplicate == 1
            assert w.get("mm1_2_1").status == S.FILLED   # the merged fill completed it
            assert rep.position_diffs == {0: (2, 3)} and w.position[0] == 3
            assert rep.ok, rep.errors
            assert all(r["kind"] in (K.ACK, K.FILL, K.RECONCILE) for r in rep.records)
            # another pass finds nothing new
            rep2 = await reconcile(t, w, ["BTCUSDT"], lambda i: "BTCUSDT", since_ms=0)
            assert rep2.fills_added == 0 and not rep2.unknown_canceled and not rep2.resolved
        finally:
            await t.close()
    stub_loop(body)


@pytest.mark.timeout(20)
def test_dead_man_switch_refreshes_and_disarms(stub_loop):
    async def body(stub):
        t = await _client(stub, prefer_ws=False)
        healthy = [True]
        try:
            d = DeadManSwitch(t, ["BTCUSDT"], countdown_ms=1000, refresh_s=0.05, healthy=lambda: healthy[0])
            d.start()
            await asyncio.sleep(0.2)
            assert d.refreshes >= 2 and stub.countdown["BTCUSDT"] == 1000
            healthy[0] = False
            n = d.refreshes
            await asyncio.sleep(0.15)
            assert d.refreshes == n and d.skipped >= 1
            await d.stop()
            assert stub.countdown["BTCUSDT"] == 0
            with pytest.raises(ValueError):
                DeadManSwitch(t, ["BTCUSDT"], countdown_ms=1000, refresh_s=2)
        finally:
            await t.close()
    stub_loop(body)
