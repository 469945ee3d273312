"""A tiny synchronous Binance-style client for tests of the simulated venue (signed REST,
WebSocket API, streams, control API). The production client is mmshm.execution's."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlencode

from websockets.sync.client import connect

from mmshm.venues.sim import auth


class SimClient:
    def __init__(self, rest_url: str, api_key: str = auth.DEFAULT_API_KEY, secret: str = auth.DEFAULT_API_SECRET,
                 time_offset_ms: int = 0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.api_key = api_key
        self.secret = secret
        self.time_offset_ms = time_offset_ms
        self.last_headers: dict[str, str] = {}
        self.last_status = 0

    def request(self, method: str, path: str, params: dict | None = None, *, signed: bool = False,
                key: bool = False, body: bool = True, bad_signature: bool = False) -> tuple[int, object]:
        """(HTTP status, parsed JSON). Signed params go in the body for POST/PUT/DELETE."""
        params = dict(params or {})
        headers = {}
        if signed or key:
            headers["X-MBX-APIKEY"] = self.api_key
        if signed:
            params.setdefault("timestamp", int(time.time() * 1000) + self.time_offset_ms)
            qs = urlencode(params)
            sig = auth.sign(self.secret + ("x" if bad_signature else ""), qs)
            qs += "&signature=" + sig
        else:
            qs = urlencode(params)
        url = self.rest_url + path
        data = None
        if method in ("POST", "PUT", "DELETE") and body:
            data = qs.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif qs:
            url += "?" + qs
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.last_status, self.last_headers = resp.status, dict(resp.headers)
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            self.last_status, self.last_headers = err.code, dict(err.headers)
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def control(self, method: str, path: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.rest_url + "/_control" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    # conveniences
    def depth(self, symbol: str, bids: list, asks: list) -> None:
        self.control("POST", "/market/depth", {"symbol": symbol, "bids": bids, "asks": asks})

    def trade(self, symbol: str, price: str, qty: str, side: str) -> None:
        self.control("POST", "/market/trade", {"symbol": symbol, "price": price, "qty": qty, "side": side})

    def place(self, **params) -> tuple[int, dict]:
        return self.request("POST", "/fapi/v1/order", params, signed=True)

    def listen_key(self) -> str:
        status, body = self.request("POST", "/fapi/v1/listenKey", key=True)
        assert status == 200, body
        return body["listenKey"]


class WsApiClient:
    """Per-request HMAC signing as Binance documents for the WebSocket API."""

    def __init__(self, url: str, api_key: str = auth.DEFAULT_API_KEY, secret: str = auth.DEFAULT_API_SECRET):
        self.ws = connect(url, open_timeout=10, close_timeout=1)
        self.api_key, self.secret = api_key, secret
        self._id = 0

    def call(self, method: str, params: dict | None = None, *, signed: bool = True, timeout: float = 10) -> dict:
        self._id += 1
        p = dict(params or {})
        p["apiKey"] = self.api_key
        if signed:
            p.setdefault("timestamp", int(time.time() * 1000))
            p["signature"] = auth.sign(self.secret, auth.ws_payload(p))
        rid = f"r{self._id}"
        self.ws.send(json.dumps({"id": rid, "method": method, "params": p}))
        while True:
            msg = json.loads(self.ws.recv(timeout=timeout))
            if msg.get("id") == rid:
                return msg

    def close(self) -> None:
        self.ws.close()


class StreamClient:
    """A user-data or market stream reader."""

    def __init__(self, url: str) -> None:
        self.ws = connect(url, open_timeout=10, close_timeout=1)

    def next(self, timeout: float = 5.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def until(self, pred, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching message")
            msg = self.next(left)
            if pred(msg):
                return msg

    def close(self) -> None:
        self.ws.close()
