"""Instrument specs: exact decimal <-> ticks/lots, exchangeInfo parsing, table rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmshm.instruments import (
    InstrumentError, InstrumentSpec, InstrumentTable, OffGridError, parse_decimal,
)
from mmshm.records import FEE_SCALE, INSTRUMENT_ROW

EXCHANGE_INFO = {
    "symbols": [
        {"symbol": "BTCUSDT", "quoteAsset": "USDT", "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": "0.10", "minPrice": "556.80", "maxPrice": "4529764"},
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "120"},
            {"filterType": "MIN_NOTIONAL", "notional": "100"},
        ]},
        {"symbol": "DOGEUSDT", "quoteAsset": "USDT", "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": "0.000010"},
            {"filterType": "LOT_SIZE", "stepSize": "1", "minQty": "1", "maxQty": "50000000"},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
        ]},
    ]
}


@pytest.fixture
def btc() -> InstrumentSpec:
    return InstrumentSpec.from_binance(EXCHANGE_INFO["symbols"][0], maker_fee_ppm=200, taker_fee_ppm=500)


def test_btcusdt_grid(btc):
    assert (btc.tick_mantissa, btc.price_exp, btc.lot_mantissa, btc.qty_exp) == (1, -1, 1, -3)
    assert btc.tick == "0.1" and btc.lot == "0.001"
    assert btc.min_qty == 1 and btc.max_qty == 1_000_000
    assert btc.min_notional == 100 * FEE_SCALE
    assert btc.price_to_ticks("61800.20") == 618002
    assert btc.price_to_ticks("61800.2") == 618002
    assert btc.price_to_ticks("61800.200000000000000000000") == 618002
    assert btc.ticks_to_str(618002) == "61800.2"
    assert btc.qty_to_lots("2.507") == 2507
    assert btc.lots_to_str(2507) == "2.507"
    assert btc.lots_to_str(1) == "0.001"
    assert btc.notional(618002, 1000) == 61800_2 * FEE_SCALE // 10


@pytest.mark.parametrize("bad", ["61800.25", "0.05", "1.0001"])
def test_off_grid_price_rejected(btc, bad):
    with pytest.raises(OffGridError):
        btc.price_to_ticks(bad)


@pytest.mark.parametrize("bad", ["NaN", "inf", "1e5", "", "1.2.3", "0x10", "١٢"])
def test_not_a_plain_decimal(btc, bad):
    with pytest.raises(InstrumentError):
        btc.price_to_ticks(bad)


def test_off_grid_qty_and_overflow(btc):
    with pytest.raises(OffGridError):
        btc.qty_to_lots("0.0005")
    with pytest.raises(InstrumentError):
        btc.price_to_ticks("9" * 30)


def test_non_unit_mantissa():
    s = InstrumentSpec.from_decimals("X", "binance-usdm", "0.5", "10")
    assert (s.tick_mantissa, s.price_exp, s.lot_mantissa, s.qty_exp) == (5, -1, 1, 1)
    assert s.price_to_ticks("101.5") == 203
    with pytest.raises(OffGridError):
        s.price_to_ticks("101.2")
    assert s.ticks_to_str(203) == "101.5"
    assert s.qty_to_lots("120") == 12
    assert s.lots_to_str(12) == "120"


def test_parse_decimal_normalises():
    assert parse_decimal("0.00100") == (1, -3)
    assert parse_decimal("100") == (1, 2)
    assert parse_decimal("-.5") == (-5, -1)
    assert parse_decimal("0.000") == (0, 0)


def test_table_from_exchange_info_and_rows():
    table = InstrumentTable.from_binance_exchange_info(json.dumps(EXCHANGE_INFO), ["DOGEUSDT", "BTCUSDT"])
    assert table.index("binance-usdm", "BTCUSDT") == 1
    doge = table[0]
    assert (doge.tick_mantissa, doge.price_exp) == (1, -5)
    rows = table.to_rows()
    assert rows.dtype == INSTRUMENT_ROW and len(rows) == 2
    assert rows[1]["symbol"] == b"BTCUSDT" and rows[1]["price_exp"] == -1
    back = InstrumentTable.from_rows(rows)
    assert back.specs == table.specs


def test_table_rejects_duplicates_and_missing():
    table = InstrumentTable()
    s = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")
    table.add(s)
    with pytest.raises(InstrumentError):
        table.add(s)
    with pytest.raises(InstrumentError):
        InstrumentTable.from_binance_exchange_info(EXCHANGE_INFO, ["ETHUSDT"])
    with pytest.raises(InstrumentError):
        InstrumentSpec.from_binance({"symbol": "X", "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.1"}]})
    with pytest.raises(KeyError):
        InstrumentSpec.from_decimals("X", "nowhere", "0.1", "1")


def test_table_in_seqlock_segment(instance):
    from mmshm.shm import SeqlockTable

    table = InstrumentTable.from_binance_exchange_info(EXCHANGE_INFO, ["BTCUSDT", "DOGEUSDT"])
    seg = table.write_segment(instance)
    try:
        assert InstrumentTable.read_segment(instance).specs == table.specs
        assert isinstance(seg, SeqlockTable)
    finally:
        seg.unlink()
        seg.close()
    assert np.dtype(INSTRUMENT_ROW).itemsize == 128
