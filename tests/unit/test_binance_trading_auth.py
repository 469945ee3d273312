"""Signing against Binance's documented example, and credentials never shown."""
from __future__ import annotations

import hashlib
import hmac
import logging
import pickle

import pytest
from hypothesis import given, settings, strategies as st

from mmshm.venues.binance_usdm.auth import Signer, encode_params, load_signer, sign, signed_query, ws_signed_params

# Binance USD-M "SIGNED Endpoint Examples for POST /fapi/v1/order" (public documentation values)
DOC_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
DOC_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
DOC_QUERY = ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
             "&recvWindow=5000&timestamp=1591702613943")
DOC_SIG = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"


def test_documented_signature():
    assert sign(DOC_SECRET, DOC_QUERY) == DOC_SIG
    assert Signer(DOC_KEY, DOC_SECRET).sign(DOC_QUERY) == DOC_SIG


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=1, max_size=150), payload=st.text(max_size=400))
def test_signer_is_hmac_sha256_for_any_key_and_payload(secret, payload):
    """The pre-keyed signer equals the standard library's HMAC (keys longer than the
    64-byte block are hashed first, as RFC 2104 says)."""
    want = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    assert Signer("k", secret).sign(payload) == want == sign(secret, payload)


def test_signed_query_reproduces_documented_request():
    s = Signer(DOC_KEY, DOC_SECRET)
    params = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("quantity", "1"),
              ("price", "9000"), ("timeInForce", "GTC")]
    qs = signed_query(s, params, 1591702613943, 5000)
    assert qs == f"{DOC_QUERY}&signature={DOC_SIG}"


def test_encode_params_keeps_order_and_escapes_json():
    assert encode_params({"b": 1, "a": None, "c": True}) == "b=1&c=true"
    assert encode_params({"batchOrders": '[{"a":"1"}]'}) == "batchOrders=%5B%7B%22a%22%3A%221%22%7D%5D"


def test_ws_params_sorted_signature():
    s = Signer(DOC_KEY, DOC_SECRET)
    p = ws_signed_params(s, {"symbol": "BTCUSDT", "side": "BUY", "price": "9000"}, 1591702613943)
    payload = f"apiKey={DOC_KEY}&price=9000&side=BUY&symbol=BTCUSDT&timestamp=1591702613943"
    assert p["signature"] == sign(DOC_SECRET, payload)


def test_secrets_masked_everywhere(caplog):
    s = Signer(DOC_KEY, DOC_SECRET)
    assert DOC_SECRET not in repr(s) and DOC_KEY not in str(s)
    assert "dbef...cc83" in repr(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_load_signer_from_env_and_credentials_dir(tmp_path):
    assert load_signer({}) is None
    s = load_signer({"MMSHM_API_KEY": DOC_KEY, "MMSHM_API_SECRET": DOC_SECRET})
    assert s.sign(DOC_QUERY) == DOC_SIG
    (tmp_path / "api_key").write_text(DOC_KEY + "\n")
    (tmp_path / "api_secret").write_text(DOC_SECRET + "\n")
    s = load_signer({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert s.sign(DOC_QUERY) == DOC_SIG


def test_live_user_stream_uses_the_private_host() -> None:
    """Production serves user data only under /private; the plain host carries book data only."""
    from mmshm.venues.binance_usdm.trading import LIVE_ENDPOINTS

    assert LIVE_ENDPOINTS.ws_stream == "wss://fstream.binance.com/private"
