"""The Binance market-data stand-in: real sockets, Binance semantics, fault injection.

A small test-only client follows Binance's documented book procedure (buffer diffs,
snapshot, drop u < lastUpdateId, first diff U <= L <= u, then pu == previous u) with a
plain dict book, to prove that what the server serves is synchronisable -- also after
faults -- and that bookTickers agree with the book when their ``u`` matches.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mmshm.venues.capture import load_capture
from mmshm.venues.standin import CaptureSource, StandinServer, SyntheticSource

STREAMS = "btcusdt@depth@0ms/btcusdt@bookTicker/btcusdt@trade"


class BinanceBookClient:
    """Binance's snapshot + diff procedure over a dict book (reference, not production code)."""

    def __init__(self) -> None:
        self.buffer: list[dict] = []
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_u: int | None = None
        self.synced = False
        self.gaps = 0
        self.applied = 0
        self.tickers_checked = 0
        self.malformed = 0
        self.snapshots = 0
        self.on_synced = None

    def on_frame(self, raw: bytes) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.malformed += 1
            return
        data = msg["data"]
        if data["e"] == "depthUpdate":
            if not self.synced:
                self.buffer.append(data)
            else:
                self._apply(data)
        elif data["e"] == "bookTicker" and self.synced and data["u"] == self.last_u:
            bb = max(self.bids, key=float)
            ba = min(self.asks, key=float)
            assert (data["b"], data["B"], data["a"], data["A"]) == (bb, self.bids[bb], ba, self.asks[ba])
            self.tickers_checked += 1

    def sync(self, snap: dict) -> str:
        """Try to synchronise: "synced", "wait" (diffs up to the snapshot not here yet) or
        "refetch" (the buffered diffs cannot bridge this snapshot)."""
        L = snap["lastUpdateId"]
        if not self.buffer or self.buffer[-1]["u"] < L:
            return "wait"
        pending = [d for d in self.buffer if d["u"] >= L]
        if not (pending[0]["U"] <= L <= pending[0]["u"]):
            return "refetch"
        self.bids = {p: q for p, q in snap["bids"]}
        self.asks = {p: q for p, q in snap["asks"]}
        self.synced, self.last_u, self.buffer = True, None, []
        if self.on_synced is not None:
            self.on_synced()
            self.on_synced = None
        for d in pending:
            self._apply(d)
        return "synced" if self.synced else "refetch"

    def _apply(self, d: dict) -> None:
        if self.last_u is not None and d["pu"] != self.last_u:
            self.gaps += 1
            self.synced, self.buffer = False, [d]
            return
        for book, key in ((self.bids, "b"), (self.asks, "a")):
            for p, q in d[key]:
                if float(q) == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        self.last_u = d["u"]
        self.applied += 1


async def get_json(url: str) -> tuple[int, object]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            return r.status, orjson.loads(await r.read())


async def run_client(server, client: BinanceBookClient, n_frames: int, *, stop_on_close: bool = True,
                     max_frames: int = 80_000, until=None) -> int:
    """Connect, follow the procedure, consume ``n_frames`` after the client is in sync (and
    until ``until(client)`` holds, if given); returns the frames consumed. Frames sent but
    not yet read sit in the loopback socket buffers, so a client syncs (and sees a fault)
    only once it has read up to the server's position at that moment."""
    got = 0
    after_sync = 0
    snap = None
    async with connect(server.ws_url + "/stream?streams=" + STREAMS, max_size=1 << 24, close_timeout=0.5) as ws:
        while (after_sync < n_frames or (until is not None and not until(client))) and got < max_frames:
            try:
                raw = await asyncio.wait_for(ws.recv(decode=False), 5)
            except ConnectionClosed:
                if stop_on_close:
                    break
                raise
            got += 1
            after_sync += client.synced
            client.on_frame(raw)
            if not client.synced and client.buffer:
                if snap is None:
                    client.snapshots += 1
                    status, snap = await get_json(server.rest_url + "/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
                    assert status == 200
                if client.sync(snap) != "wait":
                    snap = None
    return got


@pytest.fixture(scope="module")
def capture_frames(binance_capture):
    stamps, frames = load_capture(binance_capture)
    return frames


@pytest.mark.timeout(60)
def test_capture_is_served_byte_exact_with_its_recorded_snapshot(binance_capture, capture_frames) -> None:
    async def main() -> None:
        async with StandinServer(CaptureSource(binance_capture, speed=0.5)) as server:
            async with connect(server.ws_url + "/stream?streams=" + STREAMS, max_size=1 << 24, close_timeout=0.5) as ws:
                first = await ws.recv(decode=False)
                status, snap = await get_json(server.rest_url + "/fapi/v1/depth?symbol=BTCUSDT&limit=1000")
                got = [first] + [await ws.recv(decode=False) for _ in range(60)]
        stream_frames = [f for f in capture_frames if not f.startswith(b'{"lastUpdateId"')]
        assert got == stream_frames[:61]
        recorded = next(f for f in capture_frames if f.startswith(b'{"lastUpdateId"'))
        assert status == 200 and snap == orjson.loads(recorded)

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_client_syncs_mid_stream_and_after_every_fault(binance_capture) -> None:
    async def main() -> None:
        # As fast as the client reads: the server keeps only ~1,000 frames in flight (small
        # SO_SNDBUF), and a client syncs (or sees a fault) once it has read up to that point.
        async with StandinServer(CaptureSource(binance_capture)) as server:
            # Late joiner: the recorded snapshot is stale by now; the server cuts a fresh one.
            warm = BinanceBookClient()
            await run_client(server, warm, 500, until=lambda c: c.tickers_checked >= 3)
            assert warm.synced and warm.tickers_checked >= 3 and warm.snapshots == 1
            c = BinanceBookClient()
            server.malformed("truncated")
            server.malformed("garbage")

            def on_synced_once() -> None:
                server.drop_diff()  # a gap once the client is in sync

            c.on_synced = on_synced_once
            await run_client(server, c, 500, until=lambda c: c.gaps == 1 and c.synced and c.tickers_checked >= 3)
            assert c.malformed == 2
            assert c.gaps == 1 and server.stats["diffs_dropped"] == 1
            assert c.synced, "client must resynchronise after the gap"
            assert c.snapshots == 2
            assert c.tickers_checked >= 3
            # close-after-N: the connection ends; a new one syncs again.
            server.close_after(100)
            d = BinanceBookClient()
            assert await run_client(server, d, 100_000) == 100
            e = BinanceBookClient()
            await run_client(server, e, 500, until=lambda c: c.tickers_checked >= 1)
            assert e.synced and e.tickers_checked >= 1

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_synthetic_source_is_synchronisable_with_consistent_tickers() -> None:
    async def main() -> None:
        async with StandinServer(SyntheticSource(["BTCUSDT"], seed=2, speed=20.0, step_ms=5)) as server:
            c = BinanceBookClient()
            await run_client(server, c, 1500)
            assert c.synced and c.applied > 100 and c.tickers_checked > 50 and c.gaps == 0
            status, info = await get_json(server.rest_url + "/fapi/v1/exchangeInfo")
            assert status == 200 and info["symbols"][0]["symbol"] == "BTCUSDT"

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_subscription_methods_routing_and_raw_streams() -> None:
    async def main() -> None:
        async with StandinServer(SyntheticSource(["BTCUSDT"], seed=4, speed=20.0, step_ms=5)) as server:
            async with connect(server.ws_url + "/ws") as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 7}))
                assert orjson.loads(await ws.recv()) == {"result": None, "id": 7}
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
                msgs = [orjson.loads(await ws.recv()) for _ in range(30)]
                assert {"result": ["btcusdt@aggTrade"], "id": 8} in msgs
                data = [m for m in msgs if "e" in m]
                assert data and all(m["e"] == "aggTrade" for m in data)  # raw data frames, only what was asked
                await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 9}))
                await ws.send("{not json")
                replies = []
                while len(replies) < 2:
                    m = orjson.loads(await ws.recv())
                    if "e" not in m:
                        replies.append(m)
                assert replies == [{"result": None, "id": 9}, {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}]
                await ws.send(json.dumps({"method": "BOGUS", "id": 10}))
                m = orjson.loads(await ws.recv())
                assert m["id"] == 10 and m["error"]["code"] == 2
            # /ws/<stream> gives raw data; a depth alias is served from the 0ms diffs under the asked name.
            async with connect(server.ws_url + "/stream?streams=btcusdt@depth@100ms") as ws:
                m = orjson.loads(await ws.recv())
                assert m["stream"] == "btcusdt@depth@100ms" and m["data"]["e"] == "depthUpdate"
            async with connect(server.ws_url + "/ws/btcusdt@bookTicker") as ws:
                assert orjson.loads(await ws.recv())["e"] == "bookTicker"
            # REST errors look like Binance's.
            assert await get_json(server.rest_url + "/fapi/v1/depth?symbol=NOPE&limit=5") == (
                400, {"code": -1121, "msg": "Invalid symbol."})
            status, body = await get_json(server.rest_url + "/fapi/v1/depth?symbol=BTCUSDT&limit=7")
            assert status == 400 and body["code"] == -1130
            status, body = await get_json(server.rest_url + "/fapi/v1/time")
            assert status == 200 and body["serverTime"] > 0

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_outage_refuses_websocket_and_rest_then_recovers() -> None:
    async def main() -> None:
        async with StandinServer(SyntheticSource(["BTCUSDT"], seed=4, speed=20.0)) as server:
            async with connect(server.ws_url + "/ws/btcusdt@trade") as ws:
                await ws.recv()
                server.outage(0.5)
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
            with pytest.raises(InvalidStatus) as exc:
                async with connect(server.ws_url + "/ws/btcusdt@trade"):
                    pass
            assert exc.value.response.status_code == 503
            status, _ = await get_json(server.rest_url + "/fapi/v1/ping")
            async with aiohttp.ClientSession() as http:
                async with http.get(server.rest_url + "/fapi/v1/depth?symbol=BTCUSDT&limit=5") as r:
                    assert r.status == 503
            await asyncio.sleep(0.6)
            async with connect(server.ws_url + "/ws/btcusdt@trade") as ws:
                assert orjson.loads(await ws.recv())["e"] == "trade"

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_subprocess_prints_urls_and_obeys_http_control_api(spawn, binance_capture) -> None:
    proc = spawn([sys.executable, "-m", "mmshm.venues.standin", "--capture", str(binance_capture), "--port", "0"])
    line = proc.stdout.readline()
    info = json.loads(line)
    assert info["ws_url"].startswith("ws://127.0.0.1:") and info["rest_url"].startswith("http://127.0.0.1:")

    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(info["control_url"] + "/close_after", json={"n": 25}) as r:
                assert r.status == 200
            async with http.post(info["control_url"] + "/nonsense", json={}) as r:
                assert r.status == 404
            async with http.post(info["control_url"] + "/stall", json={}) as r:
                assert r.status == 400  # seconds missing
        n = 0
        async with connect(info["ws_url"] + "/stream?streams=" + STREAMS, max_size=1 << 24) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
                    n += 1
        assert n == 25
        status, stats = await get_json(info["rest_url"] + "/_control/stats")
        assert stats["closed_by_fault"] == 1 and stats["messages_sent"] == 25

    asyncio.run(main())
    proc.terminate()
    assert proc.wait(timeout=10) == 0


@pytest.mark.timeout(60)
def test_thread_runner_plays_a_short_capture_to_the_end(tmp_path, binance_capture) -> None:
    from mmshm.venues.standin import StandinThread
    from websockets.sync.client import connect as sync_connect

    stamps, frames = load_capture(binance_capture)
    short = tmp_path / "short.txt"
    short.write_bytes(b"".join(b"%d %s\n" % (ns, f) for ns, f in list(zip(stamps, frames))[:300]))
    src = CaptureSource(short)
    assert len(src) == 299 and src.bridge_index is not None and src.bad_lines == 0
    with StandinThread(src) as standin:
        with sync_connect(standin.ws_url + "/stream?streams=" + STREAMS, close_timeout=0.5) as ws:
            got = [ws.recv(timeout=5) for _ in range(299)]
            assert standin.wait_finished(10)
        stats = standin.stats
    assert stats["position"] == 299 and stats["messages_sent"] == 299
    assert [g.encode() for g in got] == [f.combined for f in src.frames]
