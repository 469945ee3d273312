"""Feed library parts in one process: counters, endpoints, specs, latency window, and the
Hyperliquid and replay sources publishing into real segments."""
from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from mmshm.agent.counters import ROLE_COUNTERS, counter_index
from mmshm.config import load_config
from mmshm.feed import counters as fc
from mmshm.feed.base import LatencyWindow
from mmshm.feed.binance import snapshot_limit, specs_from_exchange_info, stream_url
from mmshm.feed.endpoints import (TESTNET_REST_BASE, TESTNET_WS_BASE, FeedConfigError, binance_urls,
                                  source_from_config)
from mmshm.instruments import InstrumentError
from mmshm.records import BOOK_ROW, MARKET_EVENT, MdKind, MdStatus
from mmshm.shm import BroadcastReader, BroadcastWriter, SeqlockTable
from mmshm.venues.binance_usdm import constants as C
from mmshm.venues.capture import load_capture


def cfg(*sets: str):
    return load_config(profile="ci", cli_overrides=list(sets), env={})


# ---------------------------------------------------------------------------- counters

def test_feed_counter_names_fit_the_row_and_are_unique() -> None:
    names = ROLE_COUNTERS["feed"]
    assert len(names) == 16 == len(set(names))
    for n in fc.TOTAL_SLOTS + ("drops", "stale", "lat_p50_us", "lat_max_us", "drop_malformed", "drop_unknown",
                               "drop_invalid", "drop_off_grid"):
        assert counter_index("feed", n) >= 0


def test_fold_groups_drop_reasons_and_copies_totals() -> None:
    c = np.zeros(16, np.int64)
    totals = {"md_events": 10, "md_gaps": 2, "reconnects": 1, "book_resyncs": 3, "snapshots": 4,
              "msg_depth": 5, "msg_ticker": 6, "msg_trade": 7}
    drops = {"malformed": 2, "json": 1, "wrong_symbol": 1, "unrouted": 1, "off_tick": 3, "off_lot": 1,
             "bad_number": 4, "missing_field": 1}
    fc.fold(c, totals, drops, stale=5, lat_p50_us=120, lat_max_us=900)
    got = {n: int(c[counter_index("feed", n)]) for n in ROLE_COUNTERS["feed"]}
    assert got == dict(totals, drops=14, stale=5, drop_malformed=3, drop_unknown=2, drop_off_grid=4,
                       drop_invalid=5, lat_p50_us=120, lat_max_us=900)


def test_latency_window_drains_and_counts_overflow() -> None:
    w = LatencyWindow(4)
    for x in (5, 1, 3, 2, 9, 9):
        w.add(x)
    assert w.n == 4
    assert list(w.drain()) == [5, 1, 3, 2]
    assert w.overflow == 2                     # of the window just drained
    assert w.n == 0 and w.drain().size == 0 and w.overflow == 0


# ---------------------------------------------------------------------------- endpoints

def test_stream_url_and_snapshot_limit() -> None:
    streams = C.market_streams("BTCUSDT", "100ms", "aggTrade")
    assert stream_url("wss://fstream.binance.com", streams) == \
        "wss://fstream.binance.com/stream?streams=btcusdt@bookTicker/btcusdt@depth@100ms/btcusdt@aggTrade"
    assert stream_url("ws://h:1/stream", ["a"]) == stream_url("ws://h:1/ws/", ["a"]) == "ws://h:1/stream?streams=a"
    assert [snapshot_limit(n) for n in (1, 20, 21, 1000, 5000)] == [5, 20, 50, 1000, 1000]


def test_binance_urls_by_mode_and_overrides() -> None:
    assert binance_urls(cfg("venue.name=binance-usdm", "mode=live")) == (C.WS_BASE, C.REST_BASE)
    assert binance_urls(cfg("venue.name=binance-usdm", "mode=testnet")) == (TESTNET_WS_BASE, TESTNET_REST_BASE)
    assert binance_urls(cfg("venue.name=binance-usdm", "venue.ws_url=ws://x:1", "venue.rest_url=http://x:1")) == \
        ("ws://x:1", "http://x:1")
    assert binance_urls(cfg("venue.name=sim", "venue.sim_port=4242")) == \
        ("ws://127.0.0.1:4242", "http://127.0.0.1:4242")
    with pytest.raises(FeedConfigError, match="sim_port"):
        binance_urls(cfg("venue.name=sim"))


def test_source_from_config_picks_the_venue(binance_capture) -> None:
    from mmshm.feed.binance import BinanceFeedSource
    from mmshm.feed.hyperliquid import HyperliquidFeedSource
    from mmshm.feed.replay import ReplayFeedSource

    s = source_from_config(cfg("venue.name=binance-usdm", "feed.depth_speed=100ms", "feed.stale_after_s=2"),
                           trades="aggTrade")
    assert isinstance(s, BinanceFeedSource) and s.url.endswith("/public/stream?streams=btcusdt@bookTicker/"
                                                               "btcusdt@depth@100ms")
    assert s.trade_url.endswith("/market/stream?streams=btcusdt@aggTrade")
    assert s.conn.config.silence_timeout_s == 2 and s.conn.config.silence_reconnect_s == 8
    assert isinstance(source_from_config(cfg("venue.name=hyperliquid", 'venue.symbols=["BTC"]')),
                      HyperliquidFeedSource)
    r = source_from_config(cfg("venue.name=replay", f"venue.replay_file={binance_capture}"))
    assert isinstance(r, ReplayFeedSource) and r.symbol is None and r.pace == "recorded"


def test_specs_from_exchange_info() -> None:
    info = {"symbols": [{"symbol": "BTCUSDT", "quoteAsset": "USDT", "filters": [
        {"filterType": "PRICE_FILTER", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"}]}]}
    [spec] = specs_from_exchange_info(orjson.dumps(info), ["BTCUSDT"], "sim")
    assert (spec.venue, spec.symbol, spec.tick, spec.lot) == ("sim", "BTCUSDT", "0.1", "0.001")
    with pytest.raises(InstrumentError, match="ETHUSDT"):
        specs_from_exchange_info(info, ["ETHUSDT"], "sim")
    with pytest.raises(InstrumentError):
        specs_from_exchange_info(b"{}", ["BTCUSDT"], "sim")


# ---------------------------------------------------------------------------- sources into segments

def _segments(instance: str, capacity: int = 1 << 12):
    md = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=capacity)
    book = SeqlockTable.create(instance, "book", BOOK_ROW, rows=2)
    reader = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="t")
    return md, book, reader


def _drain(reader) -> np.ndarray:
    out, buf = [], np.zeros(4096, MARKET_EVENT)
    while n := reader.poll_batch(buf):
        out.append(buf[:n].copy())
    return np.concatenate(out) if out else np.zeros(0, MARKET_EVENT)


@pytest.mark.timeout(30)
def test_replay_source_publishes_the_capture(binance_capture, instance) -> None:
    from mmshm.feed.replay import ReplayFeedSource

    md, book, reader = _segments(instance, 1 << 15)     # the whole replay fits: read after the run
    beats = []
    src = ReplayFeedSource(binance_capture, pace="fast", beat=lambda: beats.append(1), batch=4096)

    async def go():
        [spec] = await src.prepare()
        assert spec.symbol == "BTCUSDT"
        src.bind(md, book)
        task = asyncio.ensure_future(src.run())
        while not src.finished:
            await asyncio.sleep(0.01)
        await src.stop()
        await task

    try:
        asyncio.run(go())
        ev = _drain(reader)
        t = src.totals()
        assert t["md_events"] == len(ev) and t["md_gaps"] == 0 and t["snapshots"] == 1
        # diffs buffered before the snapshot are parsed again when replayed onto it
        assert t["msg_depth"] >= 6551 and t["msg_ticker"] == 66089 and t["msg_trade"] == 21313
        assert src.drops() == {}
        assert (ev["kind"] == MdKind.TRADE).sum() == 21313
        statuses = list(ev["status"][ev["kind"] == MdKind.STATUS])
        assert statuses == [MdStatus.SYNCING, MdStatus.LIVE, MdStatus.STALE, MdStatus.DISCONNECTED]
        c = src.details()["instruments"]["BTCUSDT"]
        assert c["ticker_checks"] == 629 and c["ticker_mismatches"] == 0
        assert beats and src.latency.n > 0
    finally:
        reader.close()
        for seg in (md, book):
            seg.unlink()
            seg.close()


class _HyperliquidServer:
    """A loopback WebSocket that answers subscriptions with the recorded Hyperliquid frames."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.subscriptions: list[dict] = []

    async def handler(self, ws) -> None:
        async for msg in ws:
            req = orjson.loads(msg)
            if req.get("method") != "subscribe":
                continue
            self.subscriptions.append(req["subscription"])
            await ws.send(orjson.dumps({"channel": "subscriptionResponse", "data": req}).decode())
            if len(self.subscriptions) == 2:
                for f in self.frames:
                    await ws.send(f.decode())


@pytest.mark.timeout(30)
def test_hyperliquid_source_publishes_books_and_trades(hyperliquid_capture, instance) -> None:
    from websockets.asyncio.server import serve

    from mmshm.feed.hyperliquid import HyperliquidFeedSource

    _, frames = load_capture(hyperliquid_capture)
    md, book, reader = _segments(instance)
    server = _HyperliquidServer([f for f in frames if b'"channel":"l2Book"' in f or b'"channel":"trades"' in f])

    async def go():
        async with serve(server.handler, "127.0.0.1", 0) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            src = HyperliquidFeedSource(["BTC"], ws_url=f"ws://127.0.0.1:{port}", stale_after_s=5)
            await src.prepare()
            src.bind(md, book)
            task = asyncio.ensure_future(src.run())
            for _ in range(500):
                if src.totals()["snapshots"] >= 46:
                    break
                await asyncio.sleep(0.01)
            await src.stop()
            await task
            return src

    try:
        src = asyncio.run(go())
        ev = _drain(reader)
        assert [s["type"] for s in server.subscriptions] == ["l2Book", "trades"]
        t = src.totals()
        assert t["snapshots"] == 46 and t["md_events"] == len(ev) and src.drops() == {}
        assert list(ev["md_seq"]) == list(range(1, len(ev) + 1))       # feed-wide sequence
        assert (ev["kind"] == MdKind.TRADE).sum() > 0
        assert ev["status"][ev["kind"] == MdKind.STATUS][-1] == MdStatus.DISCONNECTED
        row = book.read(0)
        assert row["status"] == MdStatus.DISCONNECTED and row["bid_px"][0] < row["ask_px"][0]
        assert int(row["md_seq"]) == int(ev["md_seq"][-1])
    finally:
        reader.close()
        for seg in (md, book):
            seg.unlink()
            seg.close()


# ---------------------------------------------------------------------------- the service in process

@pytest.mark.timeout(30)
def test_service_stops_cleanly_while_waiting_for_exchange_info(instance) -> None:
    """No venue at all: exchangeInfo is retried with backoff; a stop request ends it with 0,
    the process row is released and no market segment was created."""
    import socket

    from mmshm.agent.proctable import ProcessTable
    from mmshm.feed.binance import BinanceFeedSource
    from mmshm.feed.service import FeedService, FeedSettings
    from mmshm.records import ProcState
    from mmshm.shm import segment as segmod
    from mmshm.venues.connection import BackoffPolicy

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens there now
    src = BinanceFeedSource(["BTCUSDT"], ws_url=f"ws://127.0.0.1:{port}", rest_url=f"http://127.0.0.1:{port}",
                            backoff=BackoffPolicy(base_s=0.01, cap_s=0.05))
    svc = FeedService(src, FeedSettings(instance=instance))

    async def go():
        task = asyncio.ensure_future(svc.run())
        await asyncio.sleep(0.3)
        svc.request_stop("test")
        return await task

    assert asyncio.run(go()) == 0
    assert svc.md is None
    with pytest.raises(segmod.SegmentNotFound):
        BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="t")
    procs = ProcessTable.attach(instance)
    try:
        row = procs.read(svc.slot.row)
        assert int(row["state"]) == ProcState.STOPPED and int(row["heartbeat_count"]) > 1
    finally:
        procs.close()


@pytest.mark.timeout(30)
def test_service_against_standin_publishes_then_disconnects(binance_capture, instance) -> None:
    from mmshm.feed.binance import BinanceFeedSource
    from mmshm.feed.service import FeedService, FeedSettings
    from mmshm.instruments import InstrumentTable
    from mmshm.venues.standin import CaptureSource, StandinServer

    async def go():
        async with StandinServer(CaptureSource(binance_capture)) as server:
            src = BinanceFeedSource(["BTCUSDT"], ws_url=server.ws_url, rest_url=server.rest_url)
            svc = FeedService(src, FeedSettings(instance=instance, md_capacity=1 << 12, book_rows=2))
            task = asyncio.ensure_future(svc.run())
            for _ in range(1000):
                if svc.ready and svc.counters().get("md_events", 0) > 100:
                    break
                await asyncio.sleep(0.01)
            assert svc.ready
            assert InstrumentTable.read_segment(instance)[0].symbol == "BTCUSDT"
            svc.request_stop("test")
            assert await task == 0
            return svc

    svc = asyncio.run(go())
    book = SeqlockTable.attach(instance, "book", BOOK_ROW)     # left for readers after the stop
    try:
        row = book.read(0)
        assert row["status"] == MdStatus.DISCONNECTED and row["bid_px"][0] > 0
    finally:
        book.close()
    c = svc.counters()
    assert c["md_events"] > 100 and c["snapshots"] == 1 and c["md_gaps"] == 0


def test_binance_production_splits_book_and_trade_streams(binance_capture, instance) -> None:
    """fstream.binance.com: book streams on /public, trades on /market (a second connection
    whose frames publish TRADE events without touching the book sync)."""
    from mmshm.feed.binance import BinanceFeedSource, is_routed_host

    assert is_routed_host("wss://fstream.binance.com") and not is_routed_host("ws://127.0.0.1:1")
    assert not is_routed_host("wss://fstream.binancefuture.com")
    spec = specs_from_exchange_info({"symbols": [{"symbol": "BTCUSDT", "filters": [
        {"filterType": "PRICE_FILTER", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"}]}]}, ["BTCUSDT"], "binance-usdm")
    src = BinanceFeedSource(["BTCUSDT"], ws_url="wss://fstream.binance.com/public", rest_url=C.REST_BASE,
                            specs=spec)
    assert src.url == "wss://fstream.binance.com/public/stream?streams=btcusdt@bookTicker/btcusdt@depth@0ms"
    assert src.trade_url == "wss://fstream.binance.com/market/stream?streams=btcusdt@trade"
    local = BinanceFeedSource(["BTCUSDT"], ws_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9", specs=spec)
    assert local.trade_conn is None and local.url.endswith("btcusdt@depth@0ms/btcusdt@trade")

    md, book, reader = _segments(instance)
    try:
        asyncio.run(src.prepare())
        src.bind(md, book)
        _, frames = load_capture(binance_capture)
        trades = [f for f in frames if b"@trade" in f[:40]][:50]
        for f in trades:
            src._on_trade_message(f, 1)
        ev = _drain(reader)
        assert len(ev) == 50 and (ev["kind"] == MdKind.TRADE).all()
        assert src.totals()["msg_trade"] == 50 and src.totals()["msg_depth"] == 0
    finally:
        reader.close()
        for seg in (md, book):
            seg.unlink()
            seg.close()
