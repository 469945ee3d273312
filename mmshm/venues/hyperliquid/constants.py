"""Hyperliquid: endpoints, subscription names and the instrument grid we use for its coins.

Price grid (our choice, documented because Hyperliquid has no fixed tick): Hyperliquid
accepts prices with at most 5 significant figures and at most ``MAX_DECIMALS_PERP -
szDecimals`` decimal places, and integer prices always. The grid is therefore
price-dependent; we fix one tick per instrument at start-up from a reference price:

- reference price >= 10,000: every valid price is an integer (5 significant figures reach
  at most the units digit, and integers are always allowed), so the tick is 1
  (``price_exp = 0``). BTC at ~105,000: "105055.0" -> 105055 ticks.
- below that: ``10**(floor(log10(price)) - 4)``, but never finer than ``10**-(6 - szDecimals)``.

A price that falls off this grid later (the coin moved across a power of ten) is counted
as ``offgrid`` and dropped, never rounded; restart with a new reference to re-grid.
Sizes: the lot is ``10**-szDecimals`` (BTC: szDecimals 5 -> lot 0.00001).
"""
from __future__ import annotations

import math

from mmshm.instruments import InstrumentSpec

VENUE = "hyperliquid"

#: Production endpoints.
WS_URL = "wss://api.hyperliquid.xyz/ws"
INFO_URL = "https://api.hyperliquid.xyz/info"

#: Application-level keepalive: the server closes connections silent for 60 s; it answers
#: this message with ``{"channel":"pong"}``.
PING_MESSAGE = '{"method":"ping"}'
PING_INTERVAL_S = 50.0

#: Perpetuals allow at most this many decimals minus szDecimals in a price.
MAX_DECIMALS_PERP = 6
#: Significant figures allowed in a (non-integer) price.
MAX_SIG_FIGS = 5

#: szDecimals of common perps (from the ``meta`` info request), for offline use.
SZ_DECIMALS: dict[str, int] = {"BTC": 5, "ETH": 4, "SOL": 2}
#: Reference prices used to fix the grid when no live price is given.
REFERENCE_PRICES: dict[str, int] = {"BTC": 100_000, "ETH": 3_000, "SOL": 200}
#: Minimum order value in USD and the base-tier fees (ppm): maker 0.015 %, taker 0.045 %.
MIN_NOTIONAL_USD = "10"
DEFAULT_MAKER_FEE_PPM = 150
DEFAULT_TAKER_FEE_PPM = 450


def price_exp_for(sz_decimals: int, reference_price: float) -> int:
    """The power-of-ten tick exponent for a coin trading near ``reference_price`` (see module doc)."""
    if reference_price <= 0:
        raise ValueError("reference price must be positive")
    if reference_price >= 10 ** (MAX_SIG_FIGS - 1):
        return 0
    exp = math.floor(math.log10(reference_price)) - (MAX_SIG_FIGS - 1)
    return max(exp, -(MAX_DECIMALS_PERP - sz_decimals))


def instrument_spec(coin: str = "BTC", *, sz_decimals: int | None = None,
                    reference_price: float | None = None, maker_fee_ppm: int = DEFAULT_MAKER_FEE_PPM,
                    taker_fee_ppm: int = DEFAULT_TAKER_FEE_PPM) -> InstrumentSpec:
    """The :class:`InstrumentSpec` of a Hyperliquid perp (BTC: tick 1, lot 0.00001)."""
    if sz_decimals is None:
        try:
            sz_decimals = SZ_DECIMALS[coin]
        except KeyError:
            raise KeyError(f"szDecimals of {coin!r} unknown: pass sz_decimals (from the meta info request)") from None
    ref = reference_price if reference_price is not None else REFERENCE_PRICES.get(coin)
    if ref is None:
        raise KeyError(f"no reference price for {coin!r}: pass reference_price")
    pexp = price_exp_for(sz_decimals, ref)
    spec = InstrumentSpec.from_decimals(
        coin, VENUE, tick=_pow10(pexp), lot=_pow10(-sz_decimals),
        min_notional=MIN_NOTIONAL_USD, maker_fee_ppm=maker_fee_ppm, taker_fee_ppm=taker_fee_ppm,
        quote_asset="USD")
    return spec


def _pow10(exp: int) -> str:
    """``10**exp`` as a plain decimal string (``-2 -> "0.01"``, ``1 -> "10"``)."""
    return "1" + "0" * exp if exp >= 0 else "0." + "0" * (-exp - 1) + "1"
