"""Symbol specifications and exact decimal <-> fixed-point conversion for the simulated venue."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from mmshm.records import FEE_SCALE
from mmshm.venues.sim import errors as E


def _exp(d: Decimal) -> int:
    """Number of decimals of a Decimal (0.001 -> 3)."""
    return max(0, -d.normalize().as_tuple().exponent)


@dataclass(frozen=True)
class SymbolSpec:
    """What exchangeInfo says about one symbol; prices in ticks, quantities in lots."""
    symbol: str
    base_asset: str
    quote_asset: str
    tick: Decimal
    lot: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    price_precision: int
    qty_precision: int
    market_lot: Decimal | None = None
    market_max_qty: Decimal | None = None

    @property
    def money_per_tick_lot(self) -> Fraction:
        """FEE_SCALE units of quote asset per (1 tick x 1 lot)."""
        return Fraction(self.tick) * Fraction(self.lot) * FEE_SCALE

    def _parse(self, name: str, value, step: Decimal, precision: int, err_step: int) -> int:
        if value is None or value == "":
            raise E.mandatory(name)
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            raise E.VenueError(E.ILLEGAL_CHARS, f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.") from None
        if not d.is_finite():
            raise E.mandatory(name)
        if _exp(d) > precision:
            raise E.VenueError(E.BAD_PRECISION, "Precision is over the maximum defined for this asset.")
        q, r = divmod(d, step)
        if r != 0:
            if err_step == E.PRICE_NOT_INCREASED_BY_TICK_SIZE:
                raise E.VenueError(err_step, "Price not increased by tick size.")
            raise E.VenueError(err_step, "Quantity not increased by step size.")
        return int(q)

    def price_ticks(self, value, name: str = "price") -> int:
        ticks = self._parse(name, value, self.tick, self.price_precision, E.PRICE_NOT_INCREASED_BY_TICK_SIZE)
        if ticks <= 0:
            raise E.VenueError(E.PRICE_LESS_THAN_ZERO, "Price less than or equal to zero.")
        return ticks

    def qty_lots(self, value, name: str = "quantity") -> int:
        lots = self._parse(name, value, self.lot, self.qty_precision, E.QTY_NOT_INCREASED_BY_STEP_SIZE)
        if lots <= 0:
            raise E.VenueError(E.QTY_LESS_THAN_ZERO, "Quantity less than or equal to zero.")
        if lots * self.lot < self.min_qty:
            raise E.VenueError(E.QTY_LESS_THAN_MIN_QTY, "Quantity less than or equal to min quantity.")
        if lots * self.lot > self.max_qty:
            raise E.VenueError(E.QTY_GREATER_THAN_MAX_QTY, "Quantity greater than max quantity.")
        return lots

    def fmt_px(self, ticks: int | Fraction) -> str:
        if isinstance(ticks, Fraction):
            v = Decimal(ticks.numerator) / Decimal(ticks.denominator) * self.tick
            return f"{v:.{self.price_precision}f}"
        return f"{ticks * self.tick:.{self.price_precision}f}"

    def fmt_avg(self, ticks: Fraction | int) -> str:
        """Average prices carry more decimals (Binance prints avgPrice with extra precision)."""
        f = Fraction(ticks) * Fraction(self.tick)
        return f"{Decimal(f.numerator) / Decimal(f.denominator):.{self.price_precision + 3}f}"

    def fmt_qty(self, lots: int) -> str:
        return f"{lots * self.lot:.{self.qty_precision}f}"

    def notional_ok(self, ticks: int, lots: int) -> bool:
        return Decimal(ticks) * self.tick * Decimal(lots) * self.lot >= self.min_notional

    def exchange_info_entry(self) -> dict:
        """This symbol as it appears in GET /fapi/v1/exchangeInfo."""
        mlot = self.market_lot or self.lot
        return {
            "symbol": self.symbol, "pair": self.symbol, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": self.base_asset, "quoteAsset": self.quote_asset, "marginAsset": self.quote_asset,
            "pricePrecision": self.price_precision, "quantityPrecision": self.qty_precision,
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": str(self.tick), "maxPrice": "4529764",
                 "tickSize": str(self.tick)},
                {"filterType": "LOT_SIZE", "minQty": str(self.min_qty), "maxQty": str(self.max_qty),
                 "stepSize": str(self.lot)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": str(self.min_qty),
                 "maxQty": str(self.market_max_qty or self.max_qty), "stepSize": str(mlot)},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": str(self.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }

    @classmethod
    def from_exchange_info(cls, entry: dict) -> "SymbolSpec":
        """Build from one `symbols[]` entry of a Binance exchangeInfo (e.g. the synthetic market's)."""
        f = {x["filterType"]: x for x in entry.get("filters", [])}
        tick = Decimal(f["PRICE_FILTER"]["tickSize"])
        lot = Decimal(f["LOT_SIZE"]["stepSize"])
        mlot = f.get("MARKET_LOT_SIZE", {})
        return cls(
            symbol=entry["symbol"], base_asset=entry.get("baseAsset", entry["symbol"][:-4]),
            quote_asset=entry.get("quoteAsset", "USDT"), tick=tick.normalize(), lot=lot.normalize(),
            min_qty=Decimal(f["LOT_SIZE"].get("minQty", str(lot))),
            max_qty=Decimal(f["LOT_SIZE"].get("maxQty", "1000000")),
            min_notional=Decimal(f.get("MIN_NOTIONAL", {}).get("notional", "0")),
            price_precision=int(entry.get("pricePrecision", _exp(tick))),
            qty_precision=int(entry.get("quantityPrecision", _exp(lot))),
            market_lot=Decimal(mlot["stepSize"]) if "stepSize" in mlot else None,
            market_max_qty=Decimal(mlot["maxQty"]) if "maxQty" in mlot else None,
        )


#: Built-in specs (Binance's values for these perpetuals) used when no market source
#: supplies an exchangeInfo.
DEFAULT_SPECS = {
    "BTCUSDT": SymbolSpec("BTCUSDT", "BTC", "USDT", Decimal("0.1"), Decimal("0.001"), Decimal("0.001"),
                          Decimal("1000"), Decimal("100"), 2, 3, Decimal("0.001"), Decimal("120")),
    "ETHUSDT": SymbolSpec("ETHUSDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"),
                          Decimal("10000"), Decimal("20"), 2, 3, Decimal("0.001"), Decimal("2000")),
}


def default_spec(symbol: str) -> SymbolSpec:
    """The built-in spec of a symbol; unknown USDT symbols get BTCUSDT-like filters."""
    if symbol in DEFAULT_SPECS:
        return DEFAULT_SPECS[symbol]
    base = symbol[:-4] if symbol.endswith("USDT") else symbol
    return SymbolSpec(symbol, base, "USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"),
                      Decimal("100000"), Decimal("5"), 2, 3)
