"""Binance production's split WebSocket routes: book streams on /public, trades on /market."""
from __future__ import annotations

from mmshm.venues.binance_usdm.constants import (is_routed_host, market_streams, routed_stream_urls,
                                                 stream_url)


def test_production_needs_one_connection_per_route() -> None:
    streams = market_streams("BTCUSDT")
    urls = routed_stream_urls("wss://fstream.binance.com", streams)
    assert urls == [
        "wss://fstream.binance.com/public/stream?streams=btcusdt@bookTicker/btcusdt@depth@0ms",
        "wss://fstream.binance.com/market/stream?streams=btcusdt@trade",
    ]


def test_local_and_testnet_hosts_keep_one_combined_stream() -> None:
    streams = market_streams("BTCUSDT", trades="aggTrade")
    for base in ("ws://127.0.0.1:8123", "wss://fstream.binancefuture.com"):
        assert not is_routed_host(base)
        assert routed_stream_urls(base, streams) == [
            f"{base}/stream?streams=btcusdt@bookTicker/btcusdt@depth@0ms/btcusdt@aggTrade"]


def test_stream_url_replaces_a_given_suffix_or_route() -> None:
    assert stream_url("wss://fstream.binance.com/public/stream", ["a"], route="market") == \
        "wss://fstream.binance.com/market/stream?streams=a"
    assert stream_url("ws://h:1/ws", ["a", "b"]) == "ws://h:1/stream?streams=a/b"
