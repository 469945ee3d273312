"""The native WebSocket API order frames (mmshm._native.wsorder) against the Python encoder.

For any key, secret, instrument grid, client id, side, price, quantity, flags, timestamp
and recvWindow, the C frame must be a valid RFC 6455 masked text frame (parsed by
``websockets``' own frame parser) whose JSON has exactly the parameters the Python path
sends (``order_params``/``modify_params``/``_id_params`` + ``ws_signed_params``), the
signature included, so the venue verifies both alike.
"""
from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from websockets.frames import OP_TEXT, Frame
from websockets.streams import StreamReader

from mmshm._native.wsorder import WsOrderEncoder
from mmshm.instruments import InstrumentSpec
from mmshm.records import Side
from mmshm.venues.binance_usdm.auth import Signer, ws_signed_params
from mmshm.venues.binance_usdm.trading import OrderRequest, _id_params, modify_params, order_params

pytestmark = pytest.mark.timeout(120)

SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"
TEXT = st.text(SAFE, min_size=1, max_size=36)


def parse_frame(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    gen = Frame.parse(reader.read_exact, mask=True)
    try:
        next(gen)
    except StopIteration as done:
        assert reader.at_eof(), "bytes left after the frame"
        return done.value
    raise AssertionError("incomplete frame")


@settings(max_examples=600, deadline=None)
@given(key=st.text(SAFE, min_size=1, max_size=64), secret=st.text(min_size=1, max_size=100),
       symbol=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=16), cid=TEXT,
       tick=st.tuples(st.integers(1, 50), st.integers(-8, 2)), lot=st.tuples(st.integers(1, 50), st.integers(-8, 2)),
       price=st.integers(0, 10**9), qty=st.integers(0, 10**9), side=st.sampled_from([Side.BUY, Side.SELL]),
       post_only=st.booleans(), reduce_only=st.booleans(), ts=st.integers(0, 2**41),
       recv=st.sampled_from([None, 1, 5000, 60000]), rid=st.integers(1, 2**40),
       method=st.sampled_from(["place", "modify", "cancel"]))
def test_native_frame_is_the_python_request(key, secret, symbol, cid, tick, lot, price, qty, side, post_only,
                                            reduce_only, ts, recv, rid, method):
    spec = InstrumentSpec(symbol=symbol, venue="binance-usdm", tick_mantissa=tick[0], price_exp=tick[1],
                          lot_mantissa=lot[0], qty_exp=lot[1])
    signer = Signer(key, secret)
    enc = WsOrderEncoder(key, *signer.hmac_pads(), recv)
    enc.add_instrument(3, symbol, spec.tick_mantissa, spec.price_exp, spec.lot_mantissa, spec.qty_exp)
    if method == "place":
        req = OrderRequest(symbol, side, price, qty, cid, post_only=post_only, reduce_only=reduce_only)
        frame = enc.place(rid, 3, cid, int(side), price, qty, post_only, reduce_only, ts)
        params, name = order_params(req, spec), "order.place"
    elif method == "modify":
        frame = enc.modify(rid, 3, cid, int(side), price, qty, ts)
        params, name = modify_params(symbol, cid, side, price, qty, spec), "order.modify"
    else:
        frame = enc.cancel(rid, 3, cid, ts)
        params, name = _id_params(symbol, cid, None), "order.cancel"
    f = parse_frame(frame)
    assert f.opcode == OP_TEXT and f.fin
    got = orjson.loads(f.data)
    assert got == {"id": str(rid), "method": name, "params": ws_signed_params(signer, params, ts, recv)}


def test_long_requests_use_the_16_bit_length_and_masks_differ():
    signer = Signer("k" * 64, "s")
    enc = WsOrderEncoder(signer.api_key, *signer.hmac_pads(), 5000)
    enc.add_instrument(0, "BTCUSDT", 1, -1, 1, -3)
    frames = [enc.place(i, 0, "c" * 36, 1, 10**9, 10**9, True, True, 2**41) for i in range(1, 2000)]
    assert all(f[1] & 0x7F == 126 for f in frames)           # > 125 bytes of JSON
    assert parse_frame(frames[0]).data.startswith(b'{"id":"1"')
    assert len({f[4:8] for f in frames}) > 1900                 # fresh mask keys (pool refilled)


@pytest.mark.parametrize("bad", ["a b", "x&y=1", 'q"', "é", "", "c" * 65])
def test_text_outside_the_alphabet_is_refused(bad):
    signer = Signer("key", "sec")
    enc = WsOrderEncoder("key", *signer.hmac_pads())
    enc.add_instrument(0, "BTCUSDT", 1, -1, 1, -3)
    with pytest.raises(ValueError):
        enc.modify(1, 0, bad, 1, 100, 1, 0)
    if len(bad) <= 64:
        with pytest.raises(ValueError):
            WsOrderEncoder(bad or " ", *signer.hmac_pads())


def test_bad_numbers_and_unregistered_instruments_are_refused():
    signer = Signer("key", "sec")
    enc = WsOrderEncoder("key", *signer.hmac_pads())
    enc.add_instrument(0, "BTCUSDT", 1, -1, 1, -3)
    with pytest.raises(ValueError, match="not registered"):
        enc.cancel(1, 1, "c1", 0)
    with pytest.raises(ValueError, match="price"):
        enc.modify(1, 0, "c1", 1, -1, 1, 0)
    enc.add_instrument(2, "ETHUSDT", 1, -2, 50, -3)
    with pytest.raises(ValueError, match="overflows"):
        enc.modify(1, 2, "c1", 1, 100, 2**62, 0)
    with pytest.raises(ValueError, match="side"):
        enc.modify(1, 0, "c1", 0, 100, 1, 0)
    with pytest.raises(ValueError):
        enc.add_instrument(0, "BTCUSDT", 0, -1, 1, -3)
