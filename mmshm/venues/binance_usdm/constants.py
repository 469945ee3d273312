"""Binance USD-M futures: endpoints, stream names and reference instrument specs."""
from __future__ import annotations

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
