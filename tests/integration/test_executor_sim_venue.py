"""The executor library against the simulated Binance USD-M venue running in its own process,
over real loopback sockets (REST, WebSocket API, user-data stream)."""
from __future__ import annotations

import asyncio
import json
import sys
import urllib.request

import pytest

from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.ratelimit import RateLimited
from mmshm.execution.session import REASON_NOT_SENT, ExecutionSession, SessionConfig
from mmshm.instruments import InstrumentTable
from mmshm.records import FEE_SCALE, OrderEventKind as K, OrderStatus as S, Side
from mmshm.venues.binance_usdm.auth import Signer
from mmshm.venues.binance_usdm.trading import (BinanceTrading, InstrumentIndex, OrderRequest, PostOnlyReject,
                                               UserStream, local_endpoints)
from rows import target_row

KEY, SECRET = "mmshm-sim-key", "mmshm-sim-secret"

VENUE_SCRIPT = r"""
import asyncio, json, sys
from mmshm.venues.sim.server import SimVenue, VenueConfig
from mmshm.venues.sim.ratelimit import RateLimitConfig
async def main():
    rl = RateLimitConfig(**json.loads(sys.argv[1])) if len(sys.argv) > 1 else RateLimitConfig()
    v = SimVenue(VenueConfig(symbols=("BTCUSDT",), market="none", rate_limits=rl))
    await v.start()
    print(v.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_venue(spawn, **rate_limits) -> int:
    proc = spawn([sys.executable, "-c", VENUE_SCRIPT] + ([json.dumps(rate_limits)] if rate_limits else []),
                 env={"MMSHM_API_KEY": KEY, "MMSHM_API_SECRET": SECRET})
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"venue did not start: {proc.stderr.read().decode()[-2000:]}")
    return int(line)


@pytest.fixture
def venue(spawn):
    """The simulated venue in a child process; yields its port."""
    return start_venue(spawn)


def control(port: int, method: str, path: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}/_control{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def acontrol(port, method, path, body=None):
    return await asyncio.to_thread(control, port, method, path, body)


def book(port, bid="50000.0", ask="50010.0", qty="1"):
    control(port, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [[bid, qty]], "asks": [[ask, qty]]})


def target(md_seq=1, bids=(), asks=(), pull=False):
    return target_row(bids, asks, flags=int(pull), md_seq=md_seq)


async def instruments(port) -> InstrumentIndex:
    def get():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/exchangeInfo", timeout=10) as r:
            return json.loads(r.read())
    info = await asyncio.to_thread(get)
    return InstrumentIndex(InstrumentTable.from_binance_exchange_info(info, ["BTCUSDT"],
                                                                      maker_fee_ppm=200, taker_fee_ppm=500).specs)


async def session(port, *, prefer_ws=True, epoch=None, deadman=False, **cfg) -> tuple[ExecutionSession, list]:
    idx = await instruments(port)
    ep = local_endpoints("127.0.0.1", port)
    t = BinanceTrading(ep, Signer(KEY, SECRET), idx, prefer_ws=prefer_ws, timeout_s=3.0)
    us = UserStream(ep.ws_stream, t.rest, idx, backoff_base_s=0.02, backoff_cap_s=0.2)
    published: list = []
    s = ExecutionSession(t, idx, ClientIdGenerator("mm", epoch=epoch), lambda r: published.append(r) or True,
                         user_stream=us, config=SessionConfig(deadman=deadman, **cfg))
    await s.start()
    for _ in range(200):                       # user stream up before we trade
        if us.connects:
            break
        await asyncio.sleep(0.01)
    return s, published


async def wait_for(cond, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if cond():
            return True
        await asyncio.sleep(0.01)
    return cond()


def run(coro):
    return asyncio.run(coro)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("prefer_ws", [True, False])
def test_place_fill_position_and_fees(venue, prefer_ws):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue, prefer_ws=prefer_ws)
        try:
            acts = await s.on_targets(target(11, bids=[(500000, 2)]))
            assert len(acts.places) == 1
            (o,) = s.working.live_orders(0)
            assert o.status == S.NEW and o.md_seq == 11
            assert s.trading.counters["via_ws" if prefer_ws else "via_rest"] == 1
            # a public sell of 1.002 at our price eats the 1.0 ahead of us, then our 0.002
            await acontrol(venue, "POST", "/market/trade", {"symbol": "BTCUSDT", "price": "50000.0",
                                                             "qty": "1.002", "side": "SELL"})
            assert await wait_for(lambda: s.working.get(o.client_id).status == S.FILLED)
            assert s.working.position[0] == 2
            # maker fee: 0.002 * 50000 * 0.0002 = 0.02 USDT
            assert s.working.fees[0] == 2 * FEE_SCALE // 100
            kinds = [int(r["kind"]) for r in pub]
            assert kinds.count(K.FILL) == 1 and K.NEW_SENT in kinds and K.ACK in kinds
            fill = next(r for r in pub if r["kind"] == K.FILL)
            assert fill["md_seq"] == 11 and fill["trade_id"] > 0 and fill["sent_mono"] > 0
            # the venue agrees
            await s.reconcile()
            assert s.last_reconcile.position_diffs == {} and s.last_reconcile.ok
            assert len(s.latency_ns) == 1
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_place_cancel_no_phantom_position_and_amend(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue)
        try:
            await s.on_targets(target(1, bids=[(499990, 3)], asks=[(500200, 3)]))
            assert len(s.working.live_orders(0)) == 2
            acts = await s.on_targets(target(2, bids=[(499980, 3)], asks=[(500210, 3)]))
            assert len(acts.amends) == 2 and not acts.places and not acts.cancels
            assert sorted(o.price for o in s.working.live_orders(0)) == [499980, 500210]
            acts = await s.on_targets(target(3, pull=True))
            assert len(acts.cancels) == 2
            assert await wait_for(lambda: not s.working.live_orders(0))
            assert s.working.position.get(0, 0) == 0
            venue_open = await s.trading.open_orders("BTCUSDT")
            assert venue_open == []
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_partial_fill_then_cancel_rest_exact(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue)
        try:
            await s.on_targets(target(1, asks=[(500100, 5)]))
            (o,) = s.working.live_orders(0)
            await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                            "asks": [["50010.0", "0"], ["50010.0", "0"]]})
            await acontrol(venue, "POST", "/market/trade", {"symbol": "BTCUSDT", "price": "50010.0",
                                                             "qty": "0.002", "side": "BUY"})
            assert await wait_for(lambda: s.working.get(o.client_id).filled_qty == 2)
            assert s.working.get(o.client_id).status == S.PARTIALLY_FILLED
            await s.on_targets(target(2, pull=True))
            assert await wait_for(lambda: s.working.get(o.client_id).status == S.CANCELED)
            assert s.working.position[0] == -2
            assert s.working.fees[0] == 2 * 50010 * FEE_SCALE * 2 // 10_000 // 1000  # 0.0002 * 100.02
            rep = await s.reconcile()
            assert rep.position_diffs == {} and rep.fills_added == 0
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_post_only_reject_changes_nothing(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue)
        try:
            await s.on_targets(target(1, bids=[(500100, 2)]))     # would cross the 50010 ask
            assert s.working.live_orders() == [] and s.working.position.get(0, 0) == 0
            rej = [r for r in pub if r["kind"] == K.REJECT]
            assert len(rej) == 1 and rej[0]["reason"] == -5022 and rej[0]["status"] == S.REJECTED
            with pytest.raises(PostOnlyReject):
                await s.trading.rest.place(OrderRequest("BTCUSDT", Side.BUY, 500100, 2, "mm1_1_1"))
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_cancel_all_and_reconcile_unknown_orders(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        # a previous run leaves two orders resting
        old, _ = await session(venue, epoch=1000)
        await old.on_targets(target(1, bids=[(499000, 3)], asks=[(501000, 2)]))
        await old.trading.close()
        old.user_stream.stop()
        # the next run reconciles at start: both are unknown to it and get cancelled
        s, pub = await session(venue, epoch=2000)
        try:
            rep = s.last_reconcile
            assert len(rep.unknown_canceled) == 2 and all(c.startswith("mm") for c in rep.unknown_canceled)
            assert await s.trading.open_orders("BTCUSDT") == []
            await s.on_targets(target(2, bids=[(499000, 3), (498000, 3)], asks=[(501000, 2)]))
            assert len(await s.trading.open_orders("BTCUSDT")) == 3
            rep = await s.cancel_all()
            assert rep.ok and rep.canceled == 3 and rep.method == "bulk", rep
            assert await wait_for(lambda: not s.working.live_orders())
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_dead_man_switch_cancels_when_refresh_stops(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue, deadman=True, deadman_countdown_ms=1000, deadman_refresh_s=0.2)
        try:
            await s.on_targets(target(1, bids=[(499000, 3)]))
            await asyncio.sleep(1.2)            # refreshed: still resting
            assert len(await s.trading.open_orders("BTCUSDT")) == 1
            await s.deadman.stop(disarm=False)   # the executor "hangs"
            assert await wait_for(lambda: not s.working.live_orders(), timeout=5)
            assert await s.trading.open_orders("BTCUSDT") == []
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_429_storm_breaker_backs_off_no_418(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue, prefer_ws=False)
        s.trading.breaker.base_ns = 50_000_000
        try:
            await acontrol(venue, "POST", "/faults", {"storm429": {"count": 3, "retry_after": 1}})
            # keep quoting every 100 ms: the storm is answered, we back off, then recover
            for i in range(100):
                await s.on_targets(target(i + 1, bids=[(499000 - i, 3)]))
                if s.working.live_orders(0) and s.trading.breaker.state == 0:
                    break
                await asyncio.sleep(0.1)
            stats = await acontrol(venue, "GET", "/stats")
            assert s.trading.budget.snapshot()["n_418"] == 0
            assert stats["faults"]["storm429"] >= 1
            assert s.trading.breaker.counts["opened"] >= 1
            assert s.trading.budget.snapshot()["n_429"] == 3
            assert s.trading.rest.counters["refused_budget"] > 0       # refused locally while blocked
            assert s.trading.breaker.state == 0      # recovered (closed)
            assert len(s.working.live_orders(0)) == 1
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(90)
def test_order_entry_and_user_stream_drop_ten_times(venue):
    """Both connections drop after N messages, ten times in a row: each reconnect is quick,
    order state resumes, and venue and local state agree (no orphaned order)."""
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        # drops apply to connections opened after the fault is set
        await acontrol(venue, "POST", "/faults", {"drop": [{"channel": "wsapi", "after": 10, "times": 10},
                                                           {"channel": "user", "after": 10, "times": 10}]})
        s, pub = await session(venue)
        try:
            i = 0
            while (s.trading.ws.connects < 11 or s.user_stream.connects < 11) and i < 2000:
                await s.on_targets(target(i + 1, bids=[(499000 - (i % 4), 3)], asks=[(501000 + (i % 3), 3)]))
                await s.tick()
                i += 1
                await asyncio.sleep(0.005)
            for _ in range(40):
                await s.tick()
                await asyncio.sleep(0.02)
            assert s.trading.ws.connects >= 11 and s.user_stream.connects >= 11
            assert len(s.trading.ws.reconnect_ns) >= 10 and max(s.trading.ws.reconnect_ns) < 5e9
            assert len(s.user_stream.reconnect_ns) >= 10 and max(s.user_stream.reconnect_ns) < 5e9
            await s.reconcile()
            venue_open = {o.client_id for o in await s.trading.open_orders("BTCUSDT")}
            local_open = {o.client_id for o in s.working.live_orders()}
            assert venue_open == local_open and len(venue_open) == 2
            assert s.counters["illegal"] == 0
        finally:
            await s.stop()
        assert s.last_cancel_all.ok
    run(main())


@pytest.mark.timeout(60)
def test_hammering_is_refused_locally_never_429(spawn):
    """Place and cancel as fast as possible against tight limits: the budget refuses
    locally before the venue would answer 429, so no 429 (and no 418) ever comes back."""
    port = start_venue(spawn, orders_10s_limit=20, orders_1m_limit=60, weight_limit=200)

    async def main():
        await acontrol(port, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                       "asks": [["50010.0", "1"]]})
        s, pub = await session(port)
        try:
            for i in range(60):
                await s.on_targets(target(2 * i + 1, bids=[(499000 - i, 3)]))
                await s.on_targets(target(2 * i + 2, pull=True))
            stats = await acontrol(port, "GET", "/stats")
            assert stats["ratelimit"] == {"429": 0, "418": 0}, stats["ratelimit"]
            snap = s.trading.budget.snapshot()
            assert snap["refused"] > 0 and snap["n_429"] == 0
            assert s.counters["not_sent"] > 0
            await s.reconcile()
            venue_open = {o.client_id for o in await s.trading.open_orders("BTCUSDT")}
            assert venue_open == {o.client_id for o in s.working.live_orders()}
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_reject_storm_and_5xx_open_the_breaker_then_recover(venue):
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue, prefer_ws=False)
        b = s.trading.breaker
        b.reject_threshold, b.base_ns = 5, 50_000_000
        try:
            await acontrol(venue, "POST", "/faults", {"reject": {"count": 8}, "errors5xx": {"count": 0}})
            for i in range(200):
                await s.on_targets(target(i + 1, bids=[(499000 - (i % 7), 3)]))
                if b.counts["opened"] and s.working.live_orders(0) and b.state == 0:
                    break
                await asyncio.sleep(0.02)
            assert b.counts["opened"] >= 1 and b.state == 0
            assert any(r["kind"] == K.REJECT and r["reason"] == -2010 for r in pub)
            opened = b.counts["opened"]
            await acontrol(venue, "POST", "/faults", {"errors5xx": {"count": 3, "status": 503}})
            for i in range(200):
                await s.on_targets(target(1000 + i, bids=[(498000 - (i % 7), 3)]))
                if b.counts["opened"] > opened and b.state == 0 and s.working.live_orders(0):
                    break
                await asyncio.sleep(0.02)
            assert b.counts["opened"] > opened and b.state == 0
            assert s.trading.budget.snapshot()["n_418"] == 0
        finally:
            await s.stop()
    run(main())


@pytest.mark.timeout(60)
def test_lost_answer_pending_new_is_resolved_by_query(venue):
    """The answer to a new order is lost (slow venue, our timeout): the order stays
    PENDING_NEW, the pending timeout queries it, and the state converges with the venue."""
    async def main():
        await acontrol(venue, "POST", "/market/depth", {"symbol": "BTCUSDT", "bids": [["50000.0", "1"]],
                                                        "asks": [["50010.0", "1"]]})
        s, pub = await session(venue, prefer_ws=False, pending_timeout_ns=300_000_000)
        s.user_stream.stop()                           # only the query can tell us
        s.trading.rest.timeout_s = 0.3
        await s.trading.rest.close()
        await s.trading.rest.start()
        try:
            await acontrol(venue, "POST", "/faults", {"latency_ms": 600})
            await s.on_targets(target(1, bids=[(499000, 3)]))
            (o,) = s.working.live_orders(0)
            assert o.status == S.PENDING_NEW and s.counters["unknown_status"] == 1
            await acontrol(venue, "DELETE", "/faults")
            await asyncio.sleep(0.5)                   # the venue has executed it by now
            for _ in range(100):
                await s.tick()
                if s.working.get(o.client_id).status != S.PENDING_NEW:
                    break
                await asyncio.sleep(0.05)
            assert s.working.get(o.client_id).status == S.NEW
            assert s.working.counters["timeout_query"] >= 1
        finally:
            await s.stop()
    run(main())


# ------------------------------------------------------------------ one write per target change

# (0.003 BTC a level: over the 100 USDT minimum notional at every price)
LADDER = dict(bids=[(500000, 3), (499990, 3), (499980, 3)], asks=[(500100, 3), (500110, 3), (500120, 3)])
MOVED = dict(bids=[(500001, 4), (499991, 4), (499981, 4)], asks=[(500101, 4), (500111, 4), (500121, 4)])


async def open_prices(port) -> list[str]:
    """The prices of every order open at the venue (all accounts)."""
    state = await acontrol(port, "GET", "/state")
    return sorted(o["price"] for acct in state.values() for o in acct["open_orders"])


@pytest.mark.timeout(60)
def test_a_ladder_goes_out_in_one_socket_write_and_the_venue_takes_every_request(venue):
    """Six places, then six amends: one socket write each time (not six), every request
    signed and framed so the venue accepts it, the journal told of each order."""
    async def main():
        book(venue)
        s, pub = await session(venue)
        ws = s.trading.ws
        try:
            writes, requests = len(ws.write_ns), ws.counters["requests"]
            acts = await s.on_targets(target(1, **LADDER))
            assert len(acts.places) == 6
            assert len(ws.write_ns) == writes + 1 and ws.counters["requests"] == requests + 6
            assert sorted(o.status for o in s.working.live_orders(0)) == [S.NEW] * 6
            assert s.trading.counters["via_ws"] == 6 and ws.counters["python_frames"] == 0
            acts = await s.on_targets(target(2, **MOVED))
            assert len(acts.amends) == 6 and not acts.places and not acts.cancels
            assert len(ws.write_ns) == writes + 2
            assert await open_prices(venue) == sorted(["49998.10", "49999.10", "50000.10", "50010.10",
                                                       "50011.10", "50012.10"])   # (the venue's 2 decimals)
            assert all(o.qty == 4 and o.pending_amend is None for o in s.working.live_orders(0))
            kinds = [int(r["kind"]) for r in pub]
            assert kinds.count(K.NEW_SENT) == 6 and kinds.count(K.AMEND_SENT) == 6 and kinds.count(K.AMENDED) == 6
            assert len(s.latency_ns) == 12 and s.counters["rejects"] == s.counters["not_sent"] == 0
            # the journal's sent_mono of each request is the time of the one write it went out in
            sent = {int(r["sent_mono"]) for r in pub if r["kind"] in (K.NEW_SENT, K.AMEND_SENT)}
            assert len(sent) == 2 and all(v > 0 for v in sent)
        finally:
            await s.stop(cancel=True)
    run(main())


@pytest.mark.timeout(60)
def test_a_request_the_budget_refuses_is_left_out_of_the_write_and_rejected_locally(venue):
    async def main():
        book(venue)
        s, pub = await session(venue)
        budget = s.trading.ws.budget
        real, calls = budget.acquire, []

        def second_refused(cost):
            calls.append(cost)
            if len(calls) == 2:
                raise RateLimited("test: bucket full", 1_000_000)
            return real(cost)
        budget.acquire = second_refused
        try:
            await s.on_targets(target(1, bids=LADDER["bids"]))
            statuses = sorted(o.status for o in s.working.orders.values())
            assert statuses == sorted([S.NEW, S.NEW, S.REJECTED])
            assert s.counters["not_sent"] == 1 and s.counters["places"] == 3
            assert len(await open_prices(venue)) == 2
            rej = [r for r in pub if r["kind"] == K.REJECT]
            assert len(rej) == 1 and rej[0]["reason"] == REASON_NOT_SENT
        finally:
            budget.acquire = real
            await s.stop(cancel=True)
    run(main())


@pytest.mark.timeout(60)
def test_the_native_order_path_leaves_out_what_the_shared_budget_refuses(venue):
    """The native order path (plan, budget debits and frames in C): with room for two orders
    in the 10 s bucket, a three-level ladder writes two places in one write, the third is
    REJECTED locally as not sent, and the budget counts exactly what went out."""
    async def main():
        book(venue)
        s, pub = await session(venue)
        ws = s.trading.ws
        ws.budget.configure([{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 2}])
        try:
            writes = len(ws.write_ns)
            await s.on_targets(target(1, bids=LADDER["bids"]))
            assert len(ws.write_ns) == writes + 1 and ws.counters["python_frames"] == 0
            assert sorted(o.status for o in s.working.orders.values()) == sorted([S.NEW, S.NEW, S.REJECTED])
            assert s.counters["not_sent"] == 1 and s.counters["places"] == 3
            assert len(await open_prices(venue)) == 2
            rej = [r for r in pub if r["kind"] == K.REJECT]
            assert len(rej) == 1 and rej[0]["reason"] == REASON_NOT_SENT and rej[0]["price"] == 499980
            assert ws.budget.snapshot()["orders_10s_used"] == 2
        finally:
            await s.stop(cancel=True)
    run(main())


@pytest.mark.timeout(60)
def test_frames_the_native_encoder_cannot_build_go_out_in_python_framing(venue):
    """No native encoder (a key or symbol outside its alphabet), or one refusing a request:
    the Python encoder frames it instead, in the same single write, and the venue's
    signature check passes."""
    class Refusing:
        def __getattr__(self, name):
            def refuse(*a):
                raise ValueError("test: outside the alphabet")
            return refuse

    async def main():
        book(venue)
        s, _ = await session(venue)
        ws = s.trading.ws
        try:
            ws.encoder = Refusing()
            await s.on_targets(target(1, **LADDER))
            ws.encoder = None
            await s.on_targets(target(2, **MOVED))
            assert ws.counters["python_frames"] == 12 and ws.counters["errors"] == 0
            assert len(await open_prices(venue)) == 6
            assert all(o.status == S.NEW and o.qty == 4 for o in s.working.live_orders(0))
        finally:
            await s.stop(cancel=True)
    run(main())


@pytest.mark.timeout(60)
def test_a_write_into_a_closing_connection_sends_nothing_and_the_orders_go_out_after_reconnect(venue):
    async def main():
        book(venue)
        s, _ = await session(venue)
        ws = s.trading.ws
        try:
            ws._ws.transport.close()               # the socket goes away under the executor
            await s.on_targets(target(1, bids=[(500000, 3), (499990, 3)]))
            if ws.connected:                       # still believed up: refused as not sent, nothing written
                assert s.counters["not_sent"] == 2
            else:                                  # the reader saw it first: REST took them
                assert s.trading.counters["via_rest"] == 2
            assert await wait_for(lambda: not ws.connected)
            assert await s.trading.ensure_ws()
            await s.on_targets(target(2, bids=[(500000, 3), (499990, 3)]))
            assert await wait_for(lambda: len([o for o in s.working.live_orders(0) if o.status == S.NEW]) == 2)
            assert len(await open_prices(venue)) == 2
        finally:
            await s.stop(cancel=True)
    run(main())


@pytest.mark.timeout(60)
def test_rest_batch_orders_signature_over_the_encoded_query_is_accepted(venue):
    """``POST /fapi/v1/batchOrders`` carries JSON, percent-encoded in the query: Binance
    checks the signature over the query exactly as sent (the simulated venue once checked
    it over the decoded text and refused every multi-order REST batch with -1022)."""
    async def main():
        book(venue)
        s, _ = await session(venue, prefer_ws=False)
        try:
            res = await s.trading.place_batch([OrderRequest("BTCUSDT", Side.BUY, 499000 - i, 3, f"rb{i}")
                                               for i in range(3)])
            assert [r.status for r in res] == [S.NEW] * 3
            assert len(await open_prices(venue)) == 3
        finally:
            await s.stop(cancel=True)
    run(main())
