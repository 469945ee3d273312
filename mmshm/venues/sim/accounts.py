"""Accounts of the simulated venue: balances, one-way positions, fees and realized PnL,
all exact (Fractions internally, FEE_SCALE integers at the edges)."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from mmshm.records import FEE_SCALE


def round_half_up(x: Fraction) -> int:
    """Nearest integer, halves away from zero (how commissions are rounded to 1e-8 here)."""
    n = abs(x)
    r = int(n + Fraction(1, 2))
    return r if x >= 0 else -r


def fmt_money(units: int | Fraction, decimals: int = 8) -> str:
    """FEE_SCALE units as a decimal string."""
    if isinstance(units, Fraction):
        units = round_half_up(units)
    return f"{Decimal(units) / FEE_SCALE:.{decimals}f}"


@dataclass
class Position:
    """One-way position: signed lots, average entry in ticks (exact), realized PnL."""
    qty: int = 0
    entry: Fraction = Fraction(0)
    realized: int = 0          # FEE_SCALE units, cumulative
    update_ms: int = 0

    def apply(self, signed_qty: int, px: int, money_per_tick_lot: Fraction) -> int:
        """Apply a fill of signed_qty lots at px ticks; returns realized PnL of this fill (FEE_SCALE)."""
        realized = Fraction(0)
        q = signed_qty
        if self.qty != 0 and (self.qty > 0) != (q > 0):
            closing = min(abs(q), abs(self.qty))
            direction = 1 if self.qty > 0 else -1
            realized = (px - self.entry) * closing * direction
            self.qty += closing * (1 if q > 0 else -1)
            q -= closing * (1 if q > 0 else -1)
            if self.qty == 0:
                self.entry = Fraction(0)
        if q != 0:
            new_qty = self.qty + q
            self.entry = (self.entry * abs(self.qty) + Fraction(px) * abs(q)) / abs(new_qty)
            self.qty = new_qty
        r = round_half_up(realized * money_per_tick_lot)
        self.realized += r
        return r


@dataclass
class Trade:
    """One own fill, as GET /fapi/v1/userTrades reports it."""
    id: int
    order_id: int
    symbol: str
    side: str
    price: int
    qty: int
    quote: Fraction           # FEE_SCALE units
    commission: int           # FEE_SCALE units
    realized: int             # FEE_SCALE units
    maker: bool
    time_ms: int


@dataclass
class Account:
    """One API key's account: wallet balances (FEE_SCALE units) and positions per symbol."""
    name: str
    api_key: str
    secret: str
    maker_fee_ppm: int = 200
    taker_fee_ppm: int = 500
    balances: dict[str, int] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    leverage: dict[str, int] = field(default_factory=dict)

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def fee(self, px: int, lots: int, maker: bool, money_per_tick_lot: Fraction) -> int:
        """Commission in FEE_SCALE units: notional x rate, rounded half up (negative = rebate)."""
        ppm = self.maker_fee_ppm if maker else self.taker_fee_ppm
        return round_half_up(Fraction(px * lots) * money_per_tick_lot * ppm / 1_000_000)

    def settle(self, asset: str, realized: int, fee: int) -> None:
        self.balances[asset] = self.balances.get(asset, 0) + realized - fee
