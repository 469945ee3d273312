"""Instrument specs and the instrument table (DESIGN section 3).

Prices are int64 ticks and quantities int64 lots. A tick (and a lot) is stored as an
integer mantissa and a power-of-ten exponent (tick 0.1 = 1e-1, tick 0.5 = 5e-1), so every
conversion between a venue's decimal string and our integers is exact integer arithmetic:
no float and no rounding. A value that is not a whole number of ticks/lots is rejected
(``OffGridError``): the venue sent something we do not understand, and guessing would
mis-price orders.

The same table lives in the ``instruments`` seqlock segment (``INSTRUMENT_ROW``), one row
per instrument index, so every process agrees on index -> symbol -> grid.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from mmshm.records import FEE_SCALE, INSTRUMENT_ROW
from mmshm.venues import venue_id, venue_name

INT64_MAX = (1 << 63) - 1
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)", re.ASCII)


class InstrumentError(ValueError):
    """A spec or a value that cannot be represented exactly."""


class OffGridError(InstrumentError):
    """A price or quantity that is not a whole number of ticks/lots."""


def parse_decimal(text: str) -> tuple[int, int]:
    """Exact ``(mantissa, exponent)`` of a plain decimal string: ``"61800.20" -> (618002, -1)``.

    Trailing zeros are removed (normalised), so equal values give equal pairs. Accepts an
    optional sign, digits and at most one ``.``; rejects exponents, NaN, inf and blanks,
    which no venue sends for a price and which would otherwise slip through ``Decimal``.
    """
    s = text.strip() if isinstance(text, str) else str(text)
    if not _DECIMAL.fullmatch(s):
        raise InstrumentError(f"not a plain decimal: {text!r}")
    neg = s[0] == "-"
    int_part, _, frac = s.lstrip("+-").partition(".")
    frac = frac.rstrip("0")
    mantissa = int((int_part or "0") + frac)
    exp = -len(frac)
    if mantissa == 0:
        return 0, 0
    while mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    return (-mantissa if neg else mantissa), exp


def _scale(mantissa: int, exp: int, unit_mantissa: int, unit_exp: int, what: str, text: str) -> int:
    """``mantissa*10**exp / (unit_mantissa*10**unit_exp)`` as an exact int, else OffGridError."""
    k = exp - unit_exp
    num = mantissa * 10 ** k if k >= 0 else mantissa
    den = unit_mantissa * (10 ** -k if k < 0 else 1)
    q, r = divmod(num, den)
    if r:
        raise OffGridError(f"{what} {text!r} is not on the grid of {unit_mantissa}e{unit_exp}")
    if abs(q) > INT64_MAX:
        raise InstrumentError(f"{what} {text!r} overflows int64")
    return q


def _format(units: int, unit_mantissa: int, unit_exp: int) -> str:
    """The exact decimal string of ``units * unit_mantissa * 10**unit_exp``."""
    v = units * unit_mantissa
    if unit_exp >= 0:
        return str(v * 10 ** unit_exp)
    neg = v < 0
    digits = str(abs(v)).rjust(-unit_exp + 1, "0")
    out = f"{digits[:unit_exp]}.{digits[unit_exp:]}"
    return "-" + out if neg else out


@dataclass(frozen=True)
class InstrumentSpec:
    """One tradeable instrument: its grid, limits and fees, all as exact integers.

    ``tick = tick_mantissa * 10**price_exp`` (quote asset per unit), ``lot = lot_mantissa *
    10**qty_exp`` (base asset); ``min_qty``/``max_qty`` in lots; ``min_notional`` in
    ``FEE_SCALE`` units of the quote asset; fees in parts per million (negative = rebate).
    """
    symbol: str
    venue: str
    tick_mantissa: int
    price_exp: int
    lot_mantissa: int
    qty_exp: int
    min_qty: int = 1
    max_qty: int = INT64_MAX
    min_notional: int = 0
    maker_fee_ppm: int = 0
    taker_fee_ppm: int = 0
    quote_asset: str = "USDT"

    def __post_init__(self) -> None:
        venue_id(self.venue)  # raises on an unknown venue
        if self.tick_mantissa <= 0 or self.lot_mantissa <= 0:
            raise InstrumentError(f"{self.symbol}: tick and lot must be positive")
        if not (-18 <= self.price_exp <= 18 and -18 <= self.qty_exp <= 18):
            raise InstrumentError(f"{self.symbol}: exponents must fit in [-18, 18]")
        if not (0 < self.min_qty <= self.max_qty):
            raise InstrumentError(f"{self.symbol}: need 0 < min_qty <= max_qty")
        if self.min_notional < 0:
            raise InstrumentError(f"{self.symbol}: negative min_notional")
        if len(self.symbol.encode()) > 16 or len(self.quote_asset.encode()) > 8:
            raise InstrumentError(f"{self.symbol}: symbol > 16 bytes or quote asset > 8 bytes")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_decimals(cls, symbol: str, venue: str, tick: str, lot: str, *, min_qty: str | None = None,
                      max_qty: str | None = None, min_notional: str = "0", maker_fee_ppm: int = 0,
                      taker_fee_ppm: int = 0, quote_asset: str = "USDT") -> "InstrumentSpec":
        """A spec from decimal strings as venues and config files write them (``tick="0.10"``)."""
        tm, te = parse_decimal(tick)
        lm, le = parse_decimal(lot)
        if tm <= 0 or lm <= 0:
            raise InstrumentError(f"{symbol}: tick {tick!r} and lot {lot!r} must be positive")
        mn_m, mn_e = parse_decimal(min_notional)
        spec = cls(symbol=symbol, venue=venue, tick_mantissa=tm, price_exp=te, lot_mantissa=lm, qty_exp=le,
                   maker_fee_ppm=maker_fee_ppm, taker_fee_ppm=taker_fee_ppm, quote_asset=quote_asset,
                   min_notional=_scale(mn_m, mn_e, 1, -8, "min_notional", min_notional))
        changes: dict[str, int] = {}
        if min_qty is not None:
            changes["min_qty"] = spec.qty_to_lots(min_qty)
        if max_qty is not None:
            changes["max_qty"] = spec.qty_to_lots(max_qty)
        return _replace(spec, **changes) if changes else spec

    @classmethod
    def from_binance(cls, symbol_info: Mapping[str, Any], *, maker_fee_ppm: int = 0,
                     taker_fee_ppm: int = 0, venue: str = "binance-usdm") -> "InstrumentSpec":
        """A spec from one entry of Binance ``exchangeInfo["symbols"]``.

        Uses PRICE_FILTER.tickSize, LOT_SIZE.stepSize/minQty/maxQty and
        MIN_NOTIONAL.notional; a missing filter is an error (never a guessed default).
        """
        sym = symbol_info.get("symbol")
        filters = {f.get("filterType"): f for f in symbol_info.get("filters", [])}
        try:
            price = filters["PRICE_FILTER"]
            lot = filters["LOT_SIZE"]
        except KeyError as e:
            raise InstrumentError(f"{sym}: exchangeInfo lacks filter {e.args[0]}") from None
        notional = filters.get("MIN_NOTIONAL", {})
        min_notional = notional.get("notional", notional.get("minNotional"))
        if min_notional is None:
            raise InstrumentError(f"{sym}: exchangeInfo lacks MIN_NOTIONAL.notional")
        return cls.from_decimals(sym, venue, price["tickSize"], lot["stepSize"], min_qty=lot["minQty"],
                                 max_qty=lot["maxQty"], min_notional=str(min_notional),
                                 maker_fee_ppm=maker_fee_ppm, taker_fee_ppm=taker_fee_ppm,
                                 quote_asset=symbol_info.get("quoteAsset", "USDT"))

    # ---------------------------------------------------------------- conversions
    @property
    def tick(self) -> str:
        return _format(1, self.tick_mantissa, self.price_exp)

    @property
    def lot(self) -> str:
        return _format(1, self.lot_mantissa, self.qty_exp)

    def price_to_ticks(self, text: str) -> int:
        """``"61800.20" -> 618002`` for tick 0.1; OffGridError if not a whole tick."""
        m, e = parse_decimal(text)
        return _scale(m, e, self.tick_mantissa, self.price_exp, "price", text)

    def qty_to_lots(self, text: str) -> int:
        """``"2.507" -> 2507`` for lot 0.001; OffGridError if not a whole lot."""
        m, e = parse_decimal(text)
        return _scale(m, e, self.lot_mantissa, self.qty_exp, "quantity", text)

    def ticks_to_str(self, ticks: int) -> str:
        """The exact decimal price of ``ticks`` (``618002 -> "61800.2"``)."""
        return _format(int(ticks), self.tick_mantissa, self.price_exp)

    def lots_to_str(self, lots: int) -> str:
        """The exact decimal quantity of ``lots`` (``2507 -> "2.507"``)."""
        return _format(int(lots), self.lot_mantissa, self.qty_exp)

    def notional(self, ticks: int, lots: int) -> int:
        """``price * qty`` in ``FEE_SCALE`` units of the quote asset, exact (floor for sub-1e-8)."""
        m = ticks * lots * self.tick_mantissa * self.lot_mantissa
        e = self.price_exp + self.qty_exp + 8
        return m * 10 ** e if e >= 0 else m // 10 ** -e

    # ---------------------------------------------------------------- shared-memory row
    def to_row(self, index: int) -> np.ndarray:
        """This spec as a 1-element ``INSTRUMENT_ROW`` array for row ``index``."""
        row = np.zeros(1, INSTRUMENT_ROW)
        r = row[0]
        r["instrument"] = index
        r["venue"] = venue_id(self.venue)
        r["price_exp"] = self.price_exp
        r["qty_exp"] = self.qty_exp
        r["tick_mantissa"] = self.tick_mantissa
        r["lot_mantissa"] = self.lot_mantissa
        r["min_qty"] = self.min_qty
        r["max_qty"] = self.max_qty
        r["min_notional"] = self.min_notional
        r["maker_fee_ppm"] = self.maker_fee_ppm
        r["taker_fee_ppm"] = self.taker_fee_ppm
        r["symbol"] = self.symbol.encode()
        r["quote_asset"] = self.quote_asset.encode()
        return row

    @classmethod
    def from_row(cls, row: np.void | np.ndarray) -> "InstrumentSpec":
        """The spec stored in one ``INSTRUMENT_ROW``."""
        r = row[0] if isinstance(row, np.ndarray) and row.ndim == 1 else row
        return cls(symbol=bytes(r["symbol"]).decode(), venue=venue_name(int(r["venue"])),
                   tick_mantissa=int(r["tick_mantissa"]), price_exp=int(r["price_exp"]),
                   lot_mantissa=int(r["lot_mantissa"]), qty_exp=int(r["qty_exp"]),
                   min_qty=int(r["min_qty"]), max_qty=int(r["max_qty"]),
                   min_notional=int(r["min_notional"]), maker_fee_ppm=int(r["maker_fee_ppm"]),
                   taker_fee_ppm=int(r["taker_fee_ppm"]), quote_asset=bytes(r["quote_asset"]).decode())


def _replace(spec: InstrumentSpec, **changes: int) -> InstrumentSpec:
    from dataclasses import replace
    return replace(spec, **changes)


@dataclass
class InstrumentTable:
    """Instruments by index (the ``instrument`` field of every record) and by (venue, symbol)."""
    specs: list[InstrumentSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_key: dict[tuple[str, str], int] = {}
        specs, self.specs = self.specs, []
        for s in specs:
            self.add(s)

    def add(self, spec: InstrumentSpec) -> int:
        """Append ``spec``; returns its index. A (venue, symbol) may appear once."""
        key = (spec.venue, spec.symbol)
        if key in self._by_key:
            raise InstrumentError(f"{spec.venue}:{spec.symbol} is already instrument {self._by_key[key]}")
        if len(self.specs) >= 0xFFFF:
            raise InstrumentError("instrument table full (uint16 index)")
        self.specs.append(spec)
        self._by_key[key] = len(self.specs) - 1
        return len(self.specs) - 1

    def index(self, venue: str, symbol: str) -> int:
        """The index of ``symbol`` on ``venue``; KeyError if absent."""
        try:
            return self._by_key[(venue, symbol)]
        except KeyError:
            raise KeyError(f"no instrument {venue}:{symbol}") from None

    def __getitem__(self, i: int) -> InstrumentSpec:
        return self.specs[i]

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self) -> Iterator[InstrumentSpec]:
        return iter(self.specs)

    @classmethod
    def from_binance_exchange_info(cls, info: Mapping[str, Any] | bytes | str, symbols: Iterable[str], *,
                                   maker_fee_ppm: int = 0, taker_fee_ppm: int = 0) -> "InstrumentTable":
        """A table of ``symbols`` (in that order) from a Binance ``exchangeInfo`` response."""
        if isinstance(info, (bytes, str)):
            info = json.loads(info)
        by_sym = {s.get("symbol"): s for s in info.get("symbols", [])}
        table = cls()
        for sym in symbols:
            if sym not in by_sym:
                raise InstrumentError(f"{sym} not in exchangeInfo")
            table.add(InstrumentSpec.from_binance(by_sym[sym], maker_fee_ppm=maker_fee_ppm,
                                                  taker_fee_ppm=taker_fee_ppm))
        return table

    def to_rows(self) -> np.ndarray:
        """All specs as an ``INSTRUMENT_ROW`` array (row i = instrument i)."""
        rows = np.zeros(len(self.specs), INSTRUMENT_ROW)
        for i, s in enumerate(self.specs):
            rows[i] = s.to_row(i)[0]
        return rows

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> "InstrumentTable":
        """The table stored in ``rows``; rows must be in index order and contiguous."""
        table = cls()
        for i, r in enumerate(rows):
            if int(r["instrument"]) != i:
                raise InstrumentError(f"row {i} carries instrument index {int(r['instrument'])}")
            table.add(InstrumentSpec.from_row(r))
        return table

    # ---------------------------------------------------------------- shared memory
    def write_segment(self, instance: str, name: str = "instruments"):
        """Create the ``instruments`` seqlock table of ``instance`` and write every row.

        Returns the ``SeqlockTable`` (its creator keeps it open for the life of the
        instance and unlinks it at shutdown).
        """
        from mmshm.shm import SeqlockTable

        table = SeqlockTable.create(instance, name, INSTRUMENT_ROW, rows=max(1, len(self.specs)))
        try:
            for i, row in enumerate(self.to_rows()):
                table.write(i, row)
        except BaseException:
            table.unlink()
            table.close()
            raise
        return table

    @classmethod
    def read_segment(cls, instance: str, name: str = "instruments") -> "InstrumentTable":
        """The table published by :meth:`write_segment` (rows up to the first never-written one)."""
        from mmshm.shm import SeqlockTable

        seg = SeqlockTable.attach(instance, name, INSTRUMENT_ROW)
        try:
            rows = []
            for i in range(seg.rows):
                r = seg.read(i)
                if int(r["version"]) == 0:
                    break
                rows.append(r)
        finally:
            seg.close()
        return cls.from_rows(np.array(rows, INSTRUMENT_ROW)) if rows else cls()


__all__ = ["FEE_SCALE", "InstrumentError", "InstrumentSpec", "InstrumentTable", "OffGridError", "parse_decimal"]
