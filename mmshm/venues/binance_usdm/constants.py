"""Binance USD-M futures: endpoints, stream names and reference instrument specs."""
from __future__ import annotations

from urllib.parse import urlsplit

VENUE = "binance-usdm"

#: Production endpoints (the feed may be pointed at the local stand-in instead).
WS_BASE = "wss://fstream.binance.com"
REST_BASE = "https://fapi.binance.com"
#: REST paths.
DEPTH_PATH = "/fapi/v1/depth"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
#: The deepest REST snapshot Binance serves; the book keeps at most this many levels a side
#: by default because deeper levels can never be known consistently.
SNAPSHOT_LIMIT = 1000


def combined_stream_path(streams: list[str]) -> str:
    """`/stream?streams=a/b/c`: the combined-stream URL path (frames are `{"stream":..,"data":..}`)."""
    return "/stream?streams=" + "/".join(streams)


#: Production splits its USD-M WebSocket endpoints by data category (since 2026-04-23):
#: ``/public`` carries bookTicker and depth, ``/market`` trades, ``/private`` user data; a
#: legacy URL without a route carries only the public streams.
ROUTES = ("public", "market", "private")
#: Hosts that apply the split (local venues and the testnet keep the single combined stream).
ROUTED_HOSTS = frozenset({"fstream.binance.com"})


def is_routed_host(ws_url: str) -> bool:
    """Whether ``ws_url`` is a host that splits streams by route (see :data:`ROUTES`)."""
    return (urlsplit(ws_url).hostname or "") in ROUTED_HOSTS


def stream_url(ws_url: str, streams: list[str], route: str = "") -> str:
    """The combined-stream URL on ``ws_url`` (a base such as ``wss://fstream.binance.com``;
    a trailing ``/stream``, ``/ws`` or route is accepted and replaced), under ``/<route>`` if given."""
    base = ws_url.rstrip("/")
    for suffix in ("/stream", "/ws"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    for r in ROUTES:
        if base.endswith("/" + r):
            base = base[: -len(r) - 1]
    return base + (f"/{route}" if route else "") + combined_stream_path(streams)


def is_trade_stream(stream: str) -> bool:
    return "@trade" in stream or "@aggTrade" in stream


def routed_stream_urls(ws_url: str, streams: list[str]) -> list[str]:
    """One combined-stream URL per connection needed for ``streams`` on ``ws_url``.

    On a routed host: book streams on ``/public`` and trade streams on ``/market`` (an
    unrouted connection would never receive the trades); elsewhere a single URL.
    """
    if not is_routed_host(ws_url):
        return [stream_url(ws_url, streams)]
    book = [s for s in streams if not is_trade_stream(s)]
    trades = [s for s in streams if is_trade_stream(s)]
    urls = [stream_url(ws_url, book, route="public")] if book else []
    if trades:
        urls.append(stream_url(ws_url, trades, route="market"))
    return urls


def market_streams(symbol: str, depth_speed: str = "0ms", trades: str = "trade") -> list[str]:
    """The market-data streams the feed subscribes for one symbol.

    ``depth_speed`` is ``"0ms"`` or ``"100ms"`` (``"250ms"`` is the default stream and is
    named without a suffix); ``trades`` is ``"trade"`` or ``"aggTrade"`` (subscribe to one:
    both report the same fills).
    """
    s = symbol.lower()
    depth = f"{s}@depth" if depth_speed == "250ms" else f"{s}@depth@{depth_speed}"
    if trades not in ("trade", "aggTrade"):
        raise ValueError(f"trades must be 'trade' or 'aggTrade', not {trades!r}")
    return [f"{s}@bookTicker", depth, f"{s}@{trades}"]


#: Published specs of common symbols, used only when neither `exchangeInfo` nor the config
#: gives one (e.g. replaying a capture offline). Values as Binance lists them:
#: (tickSize, stepSize, minQty, maxQty (LOT_SIZE), minNotional, quote asset).
REFERENCE_SPECS: dict[str, tuple[str, str, str, str, str, str]] = {
    "BTCUSDT": ("0.10", "0.001", "0.001", "1000", "100", "USDT"),
    "ETHUSDT": ("0.01", "0.001", "0.001", "10000", "20", "USDT"),
}
#: Default USD-M VIP0 fees in ppm (0.02% maker, 0.05% taker); the config overrides them.
DEFAULT_MAKER_FEE_PPM = 200
DEFAULT_TAKER_FEE_PPM = 500
