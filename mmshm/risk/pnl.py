"""Positions and PnL from fills: exact, in lots, ticks and FEE_SCALE money.

Average entry is kept as an exact fraction of ticks (cost of the open position / its
size), so realized PnL on hand-computed examples is exact to the unit; money amounts are
reported as int FEE_SCALE units (rounded half-even only at the reporting edge). Fills
are deduplicated by (client_id, trade_id): the venue may report a fill on both the
user-data stream and a REST reconcile.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from fractions import Fraction

from mmshm.records import Side


@dataclass(frozen=True)
class Fill:
    instrument: int
    side: int            # Side.BUY / Side.SELL
    px: int              # ticks
    qty: int             # lots
    fee: int             # FEE_SCALE (negative = rebate)
    client_id: int
    trade_id: int
    ts: int              # realtime ns
    realized: int = 0    # FEE_SCALE, gross PnL this fill realized
    closing: bool = False  # it reduced an open position

    def as_dict(self) -> dict:
        return {"instrument": self.instrument, "side": Side(self.side).name, "px": self.px, "qty": self.qty,
                "fee": self.fee, "client_id": self.client_id, "trade_id": self.trade_id, "ts": self.ts,
                "realized": self.realized, "closing": self.closing}


def money(x: Fraction) -> int:
    """An exact amount rounded to whole FEE_SCALE units (half-even)."""
    return round(x)


class InstrumentPosition:
    """Signed position (lots), exact cost basis of the open position, realized PnL and fees."""

    __slots__ = ("index", "value", "position", "cost", "realized", "fees", "volume", "fills", "mark")

    def __init__(self, index: int, quote_per_tick_lot: Fraction) -> None:
        self.index = index
        self.value = Fraction(quote_per_tick_lot)
        self.position = 0
        self.cost = Fraction(0)        # ticks·lots of the open position (always >= 0)
        self.realized = Fraction(0)    # gross, FEE_SCALE
        self.fees = 0                  # FEE_SCALE
        self.volume = 0                # lots traded
        self.fills = 0
        self.mark: Fraction | None = None   # mid, ticks

    @property
    def avg_entry(self) -> Fraction | None:
        """Average entry price of the open position in ticks (None when flat)."""
        return self.cost / abs(self.position) if self.position else None

    def apply(self, side: int, px: int, qty: int, fee: int) -> Fraction:
        """Apply one fill; returns the gross PnL it realized (FEE_SCALE, exact)."""
        if qty <= 0 or px <= 0 or side not in (Side.BUY, Side.SELL):
            raise ValueError(f"invalid fill side={side} px={px} qty={qty}")
        sign = 1 if side == Side.BUY else -1
        realized = Fraction(0)
        remaining = qty
        if self.position and (self.position > 0) != (sign > 0):
            close = min(qty, abs(self.position))
            avg = self.cost / abs(self.position)
            pos_sign = 1 if self.position > 0 else -1
            realized = (px - avg) * close * pos_sign * self.value
            self.cost -= avg * close
            self.position += sign * close
            remaining -= close
            if self.position == 0:
                self.cost = Fraction(0)
        if remaining:
            self.cost += px * remaining
            self.position += sign * remaining
        self.realized += realized
        self.fees += fee
        self.volume += qty
        self.fills += 1
        return realized

    def unrealized(self) -> Fraction:
        """Mark-to-mid PnL of the open position (0 without a mark)."""
        if not self.position or self.mark is None:
            return Fraction(0)
        sign = 1 if self.position > 0 else -1
        return (self.mark * abs(self.position) - self.cost) * sign * self.value

    def notional(self) -> Fraction:
        """|position| at the mark in FEE_SCALE units (at average entry without a mark)."""
        if not self.position:
            return Fraction(0)
        px = self.mark if self.mark is not None else self.avg_entry
        return abs(self.position) * px * self.value

    def net_realized(self) -> Fraction:
        return self.realized - self.fees


class Positions:
    """Every instrument's position, with fill de-duplication and the last fills."""

    def __init__(self, values: dict[int, Fraction], dedup_capacity: int = 1 << 20, last_fills: int = 10) -> None:
        self.by_instrument = {i: InstrumentPosition(i, v) for i, v in values.items()}
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._capacity = dedup_capacity
        self.last = deque(maxlen=max(1, last_fills))
        self.duplicates = 0
        self.unknown_instrument = 0

    def __getitem__(self, instrument: int) -> InstrumentPosition:
        return self.by_instrument[instrument]

    def fill(self, instrument: int, side: int, px: int, qty: int, fee: int, client_id: int,
             trade_id: int, ts: int) -> Fill | None:
        """Apply a fill once; returns the Fill, or None if it was a duplicate or unknown."""
        key = (client_id, trade_id)
        if key in self._seen:
            self.duplicates += 1
            return None
        pos = self.by_instrument.get(instrument)
        if pos is None:
            self.unknown_instrument += 1
            return None
        before = pos.position
        realized = pos.apply(side, px, qty, fee)
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        closing = before != 0 and (before > 0) != (side == Side.BUY)
        f = Fill(instrument, side, px, qty, fee, client_id, trade_id, ts, money(realized), closing)
        self.last.append(f)
        return f

    def realized_net(self) -> Fraction:
        return sum((p.net_realized() for p in self.by_instrument.values()), Fraction(0))

    def unrealized(self) -> Fraction:
        return sum((p.unrealized() for p in self.by_instrument.values()), Fraction(0))
