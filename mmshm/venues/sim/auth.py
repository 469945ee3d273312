"""Request authentication as Binance does it: API key header, HMAC-SHA256 signature over the
exact parameter string, and the timestamp/recvWindow check."""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from mmshm.venues.sim import errors as E

#: Test credentials accepted when none are configured (documented in the CLI help).
DEFAULT_API_KEY = "mmshm-sim-key"
DEFAULT_API_SECRET = "mmshm-sim-secret"
MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000

_SIG_RE = re.compile(r"(^|&)signature=([^&]*)")


def sign(secret: str, payload: str) -> str:
    """Hex HMAC-SHA256 of payload (what a client puts in `signature`)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def split_signature(total_params: str) -> tuple[str, str | None]:
    """(the signed payload, the signature) from a query string + body as received."""
    m = _SIG_RE.search(total_params)
    if m is None:
        return total_params, None
    payload = total_params[: m.start()] + total_params[m.end():]
    if m.group(1) == "" and payload.startswith("&"):
        payload = payload[1:]
    return payload, m.group(2)


def verify_signature(secret: str, payload: str, signature: str | None) -> None:
    if not signature:
        raise E.mandatory("signature")
    if not hmac.compare_digest(sign(secret, payload), signature.lower()):
        raise E.VenueError(E.INVALID_SIGNATURE, "Signature for this request is not valid.")


def check_timestamp(params: dict, server_ms: int) -> None:
    """Binance's rule: timestamp < server + 1000 and server - timestamp <= recvWindow."""
    ts = params.get("timestamp")
    if ts is None or ts == "":
        raise E.mandatory("timestamp")
    try:
        ts_i = int(ts)
    except (TypeError, ValueError):
        raise E.illegal("timestamp") from None
    rw = params.get("recvWindow")
    try:
        rw_i = DEFAULT_RECV_WINDOW_MS if rw in (None, "") else int(rw)
    except (TypeError, ValueError):
        raise E.illegal("recvWindow") from None
    if rw_i <= 0 or rw_i > MAX_RECV_WINDOW_MS:
        raise E.VenueError(E.INVALID_PARAMETER, "Invalid data sent for a parameter.")
    if not (ts_i < server_ms + 1000 and server_ms - ts_i <= rw_i):
        raise E.VenueError(E.TIMESTAMP_OUTSIDE_RECV_WINDOW, "Timestamp for this request is outside of the recvWindow.")


def ws_payload(params: dict) -> str:
    """The WebSocket API signature payload: every param but `signature`, sorted by name."""
    parts = []
    for k in sorted(params):
        if k == "signature":
            continue
        v = params[k]
        if isinstance(v, bool):
            v = "true" if v else "false"
        parts.append(f"{k}={v}")
    return "&".join(parts)


@dataclass(frozen=True)
class Credential:
    api_key: str
    secret: str


def mask(key: str) -> str:
    """abcd...wxyz: how keys appear in logs."""
    return key if len(key) <= 8 else f"{key[:4]}...{key[-4:]}"
