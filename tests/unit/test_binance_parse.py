"""The Cython Binance frame parser: kinds, exact ticks/lots, and every drop reason."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmshm._native import binance_parse as bp
from mmshm._native.binance_parse import BinanceParser

TICKER = b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256314}}'
TRADE = b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256321,"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}'
AGG = b'{"e":"aggTrade","E":1723161256322,"a":26129,"s":"BTCUSDT","p":"61800.30","q":"0.100","f":100,"l":105,"T":1723161256321,"m":true}'
DEPTH = (b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256299,"T":1723161256298,'
         b'"s":"BTCUSDT","U":5123107832006,"u":5123107837557,"pu":5123107831937,'
         b'"b":[["58710.20","0.014"],["61510.90","0.000"]],"a":[["61800.30","1.500"]]}}')
SNAPSHOT = b'{"lastUpdateId":5123107852948,"E":1723161256501,"T":1723161256493,"bids":[["61800.20","2.909"],["61800.10","0.696"]],"asks":[["61800.30","1.135"]]}'


@pytest.fixture
def p() -> BinanceParser:
    return BinanceParser(-1, 1, -3, 1, symbol="BTCUSDT", max_levels=8)


def test_book_ticker(p):
    assert p.parse(TICKER) == bp.K_BOOK_TICKER
    assert (p.update_id, p.bid_px, p.bid_qty, p.ask_px, p.ask_qty) == (5123107839020, 618002, 2507, 618003, 2510)
    assert (p.event_time, p.transaction_time) == (1723161256314, 1723161256313)


def test_trade_and_agg_trade(p):
    assert p.parse(TRADE) == bp.K_TRADE
    assert (p.trade_px, p.trade_qty, p.trade_id, p.buyer_maker, p.transaction_time) == (618003, 6, 5266583935, False, 1723161256321)
    assert p.parse(AGG) == bp.K_AGG_TRADE
    assert (p.trade_px, p.trade_qty, p.trade_id, p.buyer_maker) == (618003, 100, 26129, True)


def test_depth_diff(p):
    assert p.parse(DEPTH) == bp.K_DEPTH
    assert (p.first_update_id, p.update_id, p.prev_update_id) == (5123107832006, 5123107837557, 5123107831937)
    assert p.n_bids == 2 and p.n_asks == 1
    assert list(p.bids_px[:2]) == [587102, 615109] and list(p.bids_qty[:2]) == [14, 0]
    assert list(p.asks_px[:1]) == [618003] and list(p.asks_qty[:1]) == [1500]


def test_snapshot_and_control(p):
    assert p.parse(SNAPSHOT) == bp.K_SNAPSHOT
    assert p.last_update_id == 5123107852948 and p.n_bids == 2 and p.n_asks == 1
    assert list(p.bids_px[:2]) == [618002, 618001]
    assert p.parse(b'{"result":null,"id":1}') == bp.K_CONTROL
    assert p.parse(b'{"error":{"code":2,"msg":"Invalid request"},"id":3}') == bp.K_CONTROL


def test_field_order_whitespace_and_unknown_keys(p):
    d = json.loads(TICKER)["data"]
    shuffled = {k: d[k] for k in reversed(list(d))}
    shuffled["zz"] = {"nested": [1, 2, {"x": None}], "s": "ETHUSDT"}   # nested keys are not ours
    frame = json.dumps({"data": shuffled, "stream": "btcusdt@bookTicker"}, indent=2).encode()
    assert p.parse(frame) == bp.K_BOOK_TICKER
    assert (p.bid_px, p.ask_qty) == (618002, 2510)
    assert p.parse(json.dumps(d)) == bp.K_BOOK_TICKER               # str and bare event
    assert p.parse(memoryview(bytearray(TICKER))) == bp.K_BOOK_TICKER


def test_real_capture_parses_without_drops(binance_capture):
    from mmshm.venues.capture import load_capture

    _, frames = load_capture(binance_capture)
    p = BinanceParser(-1, 1, -3, 1, symbol="BTCUSDT")
    kinds = [p.parse(f) for f in frames]
    c = p.counters()
    assert c["drops"] == {}
    assert c["messages"] == {"depth": 6551, "bookTicker": 66089, "trade": 21313, "snapshot": 1}
    assert kinds.count(0) == 0


def _trade(**over) -> bytes:
    d = {"e": "trade", "E": 1, "T": 1, "s": "BTCUSDT", "t": 7, "p": "61800.30", "q": "0.006", "m": True}
    d.update(over)
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


HOSTILE = [
    (b"", bp.D_MALFORMED),
    (b"{", bp.D_MALFORMED),
    (b"[]", bp.D_MALFORMED),
    (TRADE[:-1], bp.D_MALFORMED),
    (TRADE + b"x", bp.D_MALFORMED),
    (b'{"e":"trade",}', bp.D_MALFORMED),
    (b'{"a":' + b"[" * 100 + b"]" * 100 + b"}", bp.D_MALFORMED),       # nested too deep
    (b'{"e":"trade","p":"1\x01"}', bp.D_MALFORMED),                    # control char in string
    (b'{"e":"markPriceUpdate","p":"61800.12345678"}', bp.D_UNKNOWN_STREAM),
    (b'{"hello":"world"}', bp.D_UNKNOWN_STREAM),
    (_trade(t=...), bp.D_MISSING_FIELD),
    (_trade(m=...), bp.D_MISSING_FIELD),
    (_trade(p="NaN"), bp.D_BAD_NUMBER),
    (_trade(p="Infinity"), bp.D_BAD_NUMBER),
    (_trade(p="1e5"), bp.D_BAD_NUMBER),
    (_trade(p=""), bp.D_BAD_NUMBER),
    (_trade(p="."), bp.D_BAD_NUMBER),
    (_trade(p="1.2.3"), bp.D_BAD_NUMBER),
    (_trade(p="6\\u0031"), bp.D_BAD_NUMBER),
    (_trade(p=[1]), bp.D_BAD_NUMBER),
    (_trade(t="7"), bp.D_BAD_NUMBER),
    (_trade(t=7.5), bp.D_BAD_NUMBER),
    (_trade(m="yes"), bp.D_BAD_NUMBER),
    (_trade(q="0.000"), bp.D_BAD_NUMBER),                                # a trade of nothing
    (_trade(p="-61800.30"), bp.D_NEGATIVE),
    (_trade(t=-1), bp.D_NEGATIVE),
    (_trade(p="99999999999999999999.0"), bp.D_OVERFLOW),
    (_trade(t=99999999999999999999), bp.D_OVERFLOW),
    (_trade(T=9223372036855), bp.D_OVERFLOW),                            # ms -> ns overflows
    (_trade(p="922337203685477580.8"), bp.D_OVERFLOW),
    (_trade(p="61800.35"), bp.D_OFF_TICK),
    (_trade(p="61800.30000001"), bp.D_OFF_TICK),
    (_trade(q="0.0061"), bp.D_OFF_LOT),
    (_trade(s="ETHUSDT"), bp.D_WRONG_SYMBOL),
    (_trade(s=5), bp.D_WRONG_SYMBOL),
    (_trade(p="0.00"), bp.D_ZERO_PRICE),
]


@pytest.mark.parametrize("frame,reason", HOSTILE)
def test_hostile_frames_are_counted_drops(p, frame, reason):
    before = p.drops.copy()
    assert p.parse(frame) == 0
    assert p.drop_reason == reason, bp.DROP_NAMES[p.drop_reason]
    delta = p.drops - before
    assert delta[reason] == 1 and delta.sum() == 1
    assert p.parse(TRADE) == bp.K_TRADE          # and the parser is fine afterwards


def test_too_many_levels(p):
    levels = [[f"61800.{i}0", "1.000"] for i in range(9)]   # parser holds 8 a side
    frame = json.dumps({"e": "depthUpdate", "E": 1, "U": 1, "u": 2, "pu": 0, "b": levels, "a": []}).encode()
    assert p.parse(frame) == 0 and p.drop_reason == bp.D_TOO_MANY_LEVELS
    assert p.parse(json.dumps({"e": "depthUpdate", "E": 1, "U": 1, "u": 2, "pu": 0, "b": levels[:8], "a": []})) == bp.K_DEPTH


def test_depth_level_errors(p):
    base = {"e": "depthUpdate", "E": 1, "U": 1, "u": 2, "pu": 0, "b": [], "a": []}
    for levels, reason in [([["61800.25", "1"]], bp.D_OFF_TICK), ([["61800.2", "-1"]], bp.D_NEGATIVE),
                           ([["61800.2", "1", "extra"]], None), (["61800.2"], bp.D_BAD_NUMBER),
                           ([["61800.2"]], bp.D_MALFORMED)]:
        frame = json.dumps(dict(base, a=levels)).encode()
        k = p.parse(frame)
        if reason is None:
            assert k == bp.K_DEPTH and p.n_asks == 1
        else:
            assert k == 0 and p.drop_reason == reason, (levels, bp.DROP_NAMES[p.drop_reason])
    assert p.parse(json.dumps(dict(base, pu=...) if False else {k: v for k, v in base.items() if k != "pu"})) == 0
    assert p.drop_reason == bp.D_MISSING_FIELD


def test_every_truncation_is_a_drop(p):
    for frame in (DEPTH, TICKER, SNAPSHOT):
        for i in range(len(frame)):
            assert p.parse(frame[:i]) == 0
        assert p.parse(frame) > 0


def test_emit_trade_event(p):
    from mmshm.records import MARKET_EVENT, MdKind, Side

    ev = np.zeros(2, MARKET_EVENT)
    p.bind_events(ev)
    assert p.parse(TRADE) == bp.K_TRADE
    p.emit_trade(1, 42, 3, 1, 2, 123456789)
    e = ev[1]
    assert (e["md_seq"], e["kind"], e["side"], e["instrument"], e["venue"], e["status"]) == (42, MdKind.TRADE, Side.BUY, 3, 1, 2)
    assert (e["trade_px"], e["trade_qty"], e["trade_id"]) == (618003, 6, 5266583935)
    assert e["venue_ts"] == 1723161256321 * 1_000_000 and e["local_ts"] == 123456789 and e["publish_mono"] > 0
    assert ev[0]["md_seq"] == 0
    with pytest.raises(IndexError):
        p.emit_trade(2, 1, 0, 0, 0, 0)
    with pytest.raises(TypeError):
        p.bind_events(np.zeros(2, np.int64))


def test_constructor_validation():
    with pytest.raises(ValueError):
        BinanceParser(-1, 0, -3, 1)
    with pytest.raises(ValueError):
        BinanceParser(-30, 1, -3, 1)
    assert BinanceParser(-1, 1, -3, 1).symbol is None


def test_python_face_enums_and_snapshot():
    from mmshm.instruments import InstrumentSpec
    from mmshm.venues.binance_usdm.parsing import (
        DropReason, Kind, SnapshotError, parse_snapshot, parser_for,
    )

    assert [k.name.lower() for k in Kind][1:] == ["depth", "book_ticker", "trade", "agg_trade", "snapshot", "control"]
    assert [r.name.lower() for r in DropReason] == list(bp.DROP_NAMES)
    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")
    assert parser_for(spec).symbol == "BTCUSDT"
    lid, bids, asks = parse_snapshot(SNAPSHOT, spec)
    assert lid == 5123107852948 and bids == [(618002, 2909), (618001, 696)] and asks == [(618003, 1135)]
    with pytest.raises(SnapshotError, match="OFF_TICK"):
        parse_snapshot(SNAPSHOT.replace(b"61800.20", b"61800.25"), spec)
    with pytest.raises(SnapshotError):
        parse_snapshot(TICKER, spec)


def test_book_row_helpers():
    from mmshm.book import L2Book, row_levels, row_to_dict
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import BOOK_ROW

    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")
    book = L2Book(10)
    book.load_snapshot([618002, 618001], [2909, 696], [618003], [1135])
    row = np.zeros(1, BOOK_ROW)
    book.bind_row(row)
    book.write_row(0, 2, 5, 6, 7, 8)
    assert row_levels(row[0]) == ([(618002, 2909), (618001, 696)], [(618003, 1135)])
    d = row_to_dict(row[0], spec)
    assert d["status"] == "LIVE" and d["bids"][0] == ["61800.2", "2.909"] and d["asks"] == [["61800.3", "1.135"]]
