"""Binance USD-M request signing and API credentials.

Binance signs SIGNED requests with HMAC-SHA256 over the *exact* bytes it receives as
``totalParams`` (the query string, concatenated with the form body when there is one),
hex-encoded, and the API key travels in the ``X-MBX-APIKEY`` header (REST) or as the
``apiKey`` parameter (WebSocket API, where the signed payload is every parameter but
``signature`` sorted by name and joined as ``k=v&...``). Signing the string we then send
verbatim is what keeps us from "Signature for this request is not valid." (-1022).

Credentials never appear in logs, reprs or exceptions: ``mask`` shows ``abcd...wxyz``.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Mapping
from urllib.parse import quote

from mmshm.config import load_credentials
from mmshm.log import mask, register_secret

#: Binance's default recvWindow is 5000 ms; documented maximum 60000.
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000


class Signer:
    """Holds an API key and secret and signs with them; never shows either.

    Built from the config's ``mmshm.config.Credentials`` (``Signer.from_credentials``) or
    from plain strings (tests, tools). ``repr`` is masked like the config's.
    """

    __slots__ = ("_api_key", "_secret", "_inner", "_outer")

    def __init__(self, api_key: str, secret: str) -> None:
        if not api_key or not secret:
            raise ValueError("API key and secret must both be non-empty")
        self._api_key = api_key
        self._secret = secret.encode()
        # HMAC-SHA256 (RFC 2104) with the keyed inner and outer hash states computed once:
        # a request then costs two state copies and two short updates (every order request
        # is signed; hmac.digest re-keys each time, twice as slow). Checked against hmac.
        key = self._secret if len(self._secret) <= 64 else hashlib.sha256(self._secret).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        register_secret(api_key)
        register_secret(secret)

    @classmethod
    def from_credentials(cls, creds: object) -> "Signer":
        """From ``mmshm.config.Credentials`` (``api_key``/``api_secret``); raises if absent."""
        key, sec = getattr(creds, "api_key", None), getattr(creds, "api_secret", None)
        if not key or not sec:
            raise ValueError(f"credentials incomplete: {creds!r}")
        return cls(key, sec)

    @property
    def api_key(self) -> str:
        return self._api_key

    def __repr__(self) -> str:
        return f"Signer(api_key={mask(self._api_key)!r}, secret={mask(self._secret.decode())!r})"

    __str__ = __repr__

    def __reduce__(self):  # never pickle a secret into another process by accident
        raise TypeError("Signer cannot be pickled")

    def hmac_pads(self) -> tuple[bytes, bytes]:
        """The HMAC key blocks (the key XOR ipad, XOR opad: 64 bytes each, as secret as the
        key), for the native frame encoder (``mmshm._native.wsorder``), which keys its own
        SHA-256 states with them once and signs every order request from copies."""
        key = self._secret if len(self._secret) <= 64 else hashlib.sha256(self._secret).digest()
        key = key.ljust(64, b"\0")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256 of ``payload`` with the secret."""
        inner = self._inner.copy()
        inner.update(payload.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def sign(secret: str, payload: str) -> str:
    """Hex HMAC-SHA256 of ``payload`` keyed by ``secret`` (Binance's SIGNED rule)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode_params(params: Mapping[str, object] | Iterable[tuple[str, object]]) -> str:
    """URL-encode parameters in the given order (the order is part of what is signed).

    ``None`` values are omitted. Values are percent-encoded with the RFC 3986 unreserved
    set kept, which is what Binance decodes (and what the JSON of batchOrders needs).
    """
    items = params.items() if isinstance(params, Mapping) else params
    return "&".join(
        f"{k}={quote(_fmt(v), safe='-_.~')}" for k, v in items if v is not None
    )


def signed_query(creds: Signer, params: Mapping[str, object] | Iterable[tuple[str, object]],
                 timestamp_ms: int, recv_window_ms: int = DEFAULT_RECV_WINDOW_MS) -> str:
    """The full query string of a SIGNED REST request, ``...&timestamp=..&signature=..``."""
    if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
        raise ValueError(f"recvWindow {recv_window_ms} outside (0, {MAX_RECV_WINDOW_MS}]")
    qs = encode_params(params)
    tail = f"recvWindow={recv_window_ms}&timestamp={timestamp_ms}"
    qs = f"{qs}&{tail}" if qs else tail
    return f"{qs}&signature={creds.sign(qs)}"


def ws_signed_params(creds: Signer, params: Mapping[str, object], timestamp_ms: int,
                     recv_window_ms: int | None = None) -> dict[str, object]:
    """WebSocket API params with ``apiKey``, ``timestamp`` and the HMAC ``signature``.

    The WebSocket API signs every parameter except ``signature``, sorted by name, as
    ``k=v`` joined by ``&`` (values not URL-encoded).
    """
    out = {k: v for k, v in params.items() if v is not None}
    out["apiKey"] = creds.api_key
    out["timestamp"] = timestamp_ms
    if recv_window_ms is not None:
        out["recvWindow"] = recv_window_ms
    # (a list, not a generator, and bools inline: this runs for every order request)
    payload = "&".join([f"{k}={'true' if v is True else 'false' if v is False else v}"
                        for k, v in sorted(out.items())])
    out["signature"] = creds.sign(payload)
    return out


def load_signer(env: Mapping[str, str] | None = None) -> Signer | None:
    """A Signer from the config's credential loader (systemd credentials or env); None if unset."""
    creds = load_credentials(env)
    return Signer.from_credentials(creds) if creds.present else None
