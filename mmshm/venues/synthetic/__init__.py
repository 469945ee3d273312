"""Synthetic market: a seeded, deterministic market speaking Binance USD-M's wire format.

The built-in default market data source (no network): see :mod:`.market` for the model.
"""
from mmshm.venues.synthetic.config import CALM, VOLATILE, Regime, SyntheticConfig
from mmshm.venues.synthetic.market import ASK, BID, SyntheticBook, SyntheticMarket, exchange_info

__all__ = ["SyntheticMarket", "SyntheticBook", "SyntheticConfig", "Regime", "CALM", "VOLATILE",
           "exchange_info", "BID", "ASK"]
