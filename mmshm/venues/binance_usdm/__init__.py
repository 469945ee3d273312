"""Binance USD-M futures adapter: constants, frame parsing, and the market-data book sync."""
