"""Which venue the feed connects to, from the config (``[venue]``, ``[feed]``, ``mode``).

- ``binance-usdm``: ``venue.ws_url``/``venue.rest_url`` when set (``mmshm up`` sets them to
  the simulated venue in paper mode), else Binance's testnet endpoints in ``testnet``
  mode and the production endpoints otherwise;
- ``sim``: the simulated venue (same protocol): the configured URLs, else
  ``sim_host:sim_port`` when a port is fixed;
- ``hyperliquid``: its adapter (``venue.symbols`` are coins, e.g. BTC);
- ``replay``: ``venue.replay_file`` at ``venue.replay_pace``.
"""
from __future__ import annotations

from typing import Any

from mmshm.feed.base import LatencyWindow
from mmshm.venues.binance_usdm import constants as C
from mmshm.venues.connection import BackoffPolicy

#: Binance USD-M futures testnet.
TESTNET_WS_BASE = "wss://fstream.binancefuture.com"
TESTNET_REST_BASE = "https://testnet.binancefuture.com"
#: Silence that drops and re-establishes the connection, in multiples of ``feed.stale_after_s``.
SILENCE_RECONNECT_FACTOR = 4.0


class FeedConfigError(ValueError):
    """The config does not say where the feed can get market data."""


def binance_urls(cfg: Any) -> tuple[str, str]:
    """(ws base, REST base) for ``binance-usdm`` or ``sim`` (see the module docstring)."""
    v = cfg.venue
    if v.ws_url and v.rest_url:
        return v.ws_url, v.rest_url
    if v.name == "sim":
        if v.sim_port:
            return (v.ws_url or f"ws://{v.sim_host}:{v.sim_port}", v.rest_url or f"http://{v.sim_host}:{v.sim_port}")
        raise FeedConfigError("venue.name = 'sim' needs venue.ws_url and venue.rest_url (mmshm up sets them) "
                              "or a fixed venue.sim_port")
    if cfg.mode == "testnet":
        return v.ws_url or TESTNET_WS_BASE, v.rest_url or TESTNET_REST_BASE
    return v.ws_url or C.WS_BASE, v.rest_url or C.REST_BASE


def source_from_config(cfg: Any, *, trades: str = "trade", latency: LatencyWindow | None = None):
    """The feed source the config selects (not started)."""
    from mmshm.feed.binance import BinanceFeedSource

    f, v = cfg.feed, cfg.venue
    latency = latency or LatencyWindow()
    backoff = BackoffPolicy(base_s=f.reconnect_backoff_base_s, cap_s=f.reconnect_backoff_max_s,
                            reset_after_s=max(30.0, f.reconnect_backoff_max_s))
    silence_reconnect = f.stale_after_s * SILENCE_RECONNECT_FACTOR
    if v.name in ("binance-usdm", "sim"):
        ws, rest = binance_urls(cfg)
        return BinanceFeedSource(list(v.symbols), ws_url=ws, rest_url=rest, venue=v.name,
                                 depth_speed=f.depth_speed, trades=trades, book_depth=f.book_depth,
                                 stale_after_s=f.stale_after_s, silence_reconnect_s=silence_reconnect,
                                 backoff=backoff, ping_interval_s=f.ping_interval_s, latency=latency)
    if v.name == "hyperliquid":
        from mmshm.feed.hyperliquid import HyperliquidFeedSource

        return HyperliquidFeedSource(list(v.symbols), ws_url=v.ws_url or None, book_depth=f.book_depth,
                                     stale_after_s=f.stale_after_s, silence_reconnect_s=silence_reconnect,
                                     backoff=backoff, ping_interval_s=f.ping_interval_s, latency=latency)
    if v.name == "replay":
        from mmshm.feed.replay import ReplayFeedSource

        explicit = getattr(cfg, "sources", {}).get("venue.symbols", "default") != "default"
        return ReplayFeedSource(v.replay_file, symbol=v.symbols[0] if explicit else None, pace=v.replay_pace,
                                book_depth=f.book_depth, latency=latency)
    raise FeedConfigError(f"venue.name = {v.name!r}: the feed does not know this venue")


__all__ = ["FeedConfigError", "TESTNET_REST_BASE", "TESTNET_WS_BASE", "binance_urls", "source_from_config"]
