"""Parameters of the synthetic market: instrument grid, depth profile, volatility regimes.

Defaults describe a BTCUSDT-like perpetual (tick 0.10, lot 0.001, prices printed with two
decimals and quantities with three, as Binance does). Every rate is per second of
*simulated* time, so a market stepped faster than real time stays statistically the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field


def decimal_to_units(text: str, decimals: int) -> int:
    """An exact non-negative decimal string as an integer count of ``10**-decimals``.

    Only used on configuration values (never on the hot path); raises ``ValueError`` when the
    value has more decimals than ``decimals`` or is not a plain non-negative decimal.
    """
    s = text.strip()
    if not s or s.startswith("-") or s.startswith("+"):
        raise ValueError(f"not a non-negative decimal: {text!r}")
    whole, _, frac = s.partition(".")
    if not (whole or frac) or (whole and not whole.isdigit()) or (frac and not frac.isdigit()):
        raise ValueError(f"not a decimal: {text!r}")
    frac_trim = frac.rstrip("0")
    if len(frac_trim) > decimals:
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    return int(whole or "0") * 10**decimals + int((frac_trim or "0").ljust(decimals, "0"))


def units_to_decimal(units: int, decimals: int) -> str:
    """The decimal string of ``units * 10**-decimals`` with exactly ``decimals`` places."""
    if units < 0:
        raise ValueError("negative value")
    if decimals == 0:
        return str(units)
    scale = 10**decimals
    return f"{units // scale}.{units % scale:0{decimals}d}"


@dataclass(frozen=True)
class Regime:
    """One volatility regime. The market switches between regimes as a Markov chain.

    Volatility is not a parameter of its own: it emerges from how fast trades eat the best
    level (``trade_rate`` x size) against how fast liquidity comes back (``improve_rate``,
    ``liquidity_rate``), and from ``flow_bias`` (directional pressure drawn on entry).
    """

    name: str
    trade_rate: float          # taker orders per second (Poisson)
    trade_size_median: float   # lots, lognormal median of a taker order
    trade_size_sigma: float    # lognormal sigma of the taker order size
    liquidity_rate: float      # resting-liquidity updates per second (adds / cancels)
    improve_rate: float        # orders per second placed inside a spread wider than 1 tick
    cancel_top_rate: float     # whole best-level withdrawals per second
    flow_bias: float           # max |P(buy) - 0.5| drawn uniformly on entering the regime
    mean_dwell_s: float        # expected time spent in the regime before switching
    fair_vol_mult: float = 1.0  # multiplies SyntheticConfig.fair_vol_bp while in this regime


CALM = Regime("calm", trade_rate=12.0, trade_size_median=15.0, trade_size_sigma=1.5,
              liquidity_rate=60.0, improve_rate=150.0, cancel_top_rate=0.3,
              flow_bias=0.05, mean_dwell_s=120.0, fair_vol_mult=0.7)
VOLATILE = Regime("volatile", trade_rate=45.0, trade_size_median=60.0, trade_size_sigma=1.8,
                  liquidity_rate=90.0, improve_rate=40.0, cancel_top_rate=2.0,
                  flow_bias=0.25, mean_dwell_s=30.0, fair_vol_mult=2.5)


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything a :class:`~mmshm.venues.synthetic.SyntheticMarket` needs besides its seed."""

    symbol: str = "BTCUSDT"
    base_asset: str = "BTC"
    quote_asset: str = "USDT"
    tick_size: str = "0.10"
    lot_size: str = "0.001"
    min_qty: str = "0.001"
    max_qty: str = "1000"
    min_notional: str = "100"
    price_decimals: int = 2          # decimals printed on the wire (Binance: pricePrecision)
    qty_decimals: int = 3            # decimals printed on the wire (quantityPrecision)
    start_price: str = "60000.00"
    depth_levels: int = 200          # price levels kept per side, in ticks from the best
    top_qty_lots: int = 400          # target resting quantity at the best level
    depth_growth: float = 0.12       # target(d) = top * (1 + growth * d): deeper is thicker
    regimes: tuple[Regime, ...] = field(default=(CALM, VOLATILE))
    start_ns: int = 1_700_000_000_000_000_000   # simulated clock origin (realtime ns)
    first_update_id: int = 1_000_000_000
    update_id_stride: int = 8        # ids advance by 1..stride per change (ids are venue-global)
    first_trade_id: int = 100_000_000
    # Latent fair value: a geometric random walk the book is repriced towards. Without it
    # the mid only moves when takers exhaust whole levels, which on a dense BTC-like book is
    # almost never (~0.01 bp/sqrt(s), four orders of magnitude calmer than BTCUSDT, so a
    # quote 2 bp away is never reached). 1 bp/sqrt(s) is ~2.9 %/day, i.e. BTC's usual
    # realised volatility; regimes scale it (calm 0.7x, volatile 2.5x: ~1.3 bp/sqrt(s) on
    # average with the default dwell times). 0 switches the fair value off (the book's own dynamics only).
    fair_vol_bp: float = 1.0         # sigma of the fair value, bp per sqrt(second)
    reprice_rate: float = 10.0       # reprices per second: makers pull stale levels, join at fair
    max_reprice_ticks: int = 100     # largest move of one reprice (keeps diffs bounded)

    def __post_init__(self) -> None:
        if not self.regimes:
            raise ValueError("at least one regime is required")
        if self.depth_levels < 5:
            raise ValueError("depth_levels must be at least 5")
        if self.fair_vol_bp < 0 or self.reprice_rate < 0:
            raise ValueError("fair_vol_bp and reprice_rate must be non-negative")
        if self.max_reprice_ticks < 1:
            raise ValueError("max_reprice_ticks must be positive")
        if self.top_qty_lots < 1:
            raise ValueError("top_qty_lots must be positive")
        if self.tick_units <= 0 or self.lot_units <= 0:
            raise ValueError("tick and lot sizes must be positive")
        if decimal_to_units(self.start_price, self.price_decimals) % self.tick_units:
            raise ValueError(f"start_price {self.start_price} is not on the tick grid {self.tick_size}")

    @property
    def tick_units(self) -> int:
        """Tick size in units of ``10**-price_decimals``."""
        return decimal_to_units(self.tick_size, self.price_decimals)

    @property
    def lot_units(self) -> int:
        """Lot size in units of ``10**-qty_decimals``."""
        return decimal_to_units(self.lot_size, self.qty_decimals)

    @property
    def start_price_ticks(self) -> int:
        return decimal_to_units(self.start_price, self.price_decimals) // self.tick_units

    def price_str(self, ticks: int) -> str:
        """Ticks as the wire decimal string (e.g. 600000 -> "60000.00")."""
        return units_to_decimal(ticks * self.tick_units, self.price_decimals)

    def qty_str(self, lots: int) -> str:
        """Lots as the wire decimal string (e.g. 2507 -> "2.507")."""
        return units_to_decimal(lots * self.lot_units, self.qty_decimals)
