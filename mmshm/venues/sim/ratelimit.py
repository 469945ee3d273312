"""Binance's rate limits: request weight per IP and order counts per account, in fixed
windows aligned to the clock, with 429 + Retry-After when exceeded and a 418 ban for a
client that keeps sending while limited."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from mmshm.venues.sim import errors as E

#: Request weight of each REST endpoint (Binance's documented values). Callables take the
#: request params (depth and openOrders depend on them).
def _depth_weight(p: dict) -> int:
    limit = int(p.get("limit") or 500)
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


REST_WEIGHTS = {
    ("GET", "/fapi/v1/ping"): 1, ("GET", "/fapi/v1/time"): 1, ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/depth"): _depth_weight,
    ("POST", "/fapi/v1/order"): 0, ("PUT", "/fapi/v1/order"): 0, ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/order"): 1, ("POST", "/fapi/v1/batchOrders"): 5, ("PUT", "/fapi/v1/batchOrders"): 5,
    ("DELETE", "/fapi/v1/batchOrders"): 1, ("DELETE", "/fapi/v1/allOpenOrders"): 1,
    ("GET", "/fapi/v1/openOrders"): lambda p: 1 if p.get("symbol") else 40,
    ("GET", "/fapi/v1/openOrder"): 1,
    ("GET", "/fapi/v2/positionRisk"): 5, ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v2/account"): 5, ("GET", "/fapi/v3/account"): 5,
    ("GET", "/fapi/v2/balance"): 5, ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v1/userTrades"): 5, ("GET", "/fapi/v1/commissionRate"): 20,
    ("POST", "/fapi/v1/countdownCancelAll"): 10,
    ("POST", "/fapi/v1/listenKey"): 1, ("PUT", "/fapi/v1/listenKey"): 1, ("DELETE", "/fapi/v1/listenKey"): 1,
    ("POST", "/fapi/v1/leverage"): 1,
}
#: Order-count cost of each endpoint (new/modify orders; batch counts each order).
REST_ORDER_COST = {("POST", "/fapi/v1/order"): 1, ("PUT", "/fapi/v1/order"): 1,
                   ("POST", "/fapi/v1/batchOrders"): 5, ("PUT", "/fapi/v1/batchOrders"): 5}


def interval_suffix(seconds: int) -> tuple[str, int, str]:
    """(header suffix like '1M'/'10S', intervalNum, interval name) of a window length."""
    if seconds % 86400 == 0:
        return f"{seconds // 86400}D", seconds // 86400, "DAY"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}H", seconds // 3600, "HOUR"
    if seconds % 60 == 0:
        return f"{seconds // 60}M", seconds // 60, "MINUTE"
    return f"{seconds}S", seconds, "SECOND"


@dataclass
class RateLimitConfig:
    """Limits as Binance publishes them in exchangeInfo (defaults: Binance USD-M's)."""
    weight_limit: int = 2400
    weight_window_s: int = 60
    orders_10s_limit: int = 300
    orders_10s_window_s: int = 10
    orders_1m_limit: int = 1200
    orders_1m_window_s: int = 60
    #: requests sent while limited (after a 429, before Retry-After) that trigger a 418 ban
    ban_after: int = 10
    ban_seconds: int = 120
    enabled: bool = True

    def exchange_info(self) -> list[dict]:
        out = []
        for kind, limit, window in (("REQUEST_WEIGHT", self.weight_limit, self.weight_window_s),
                                    ("ORDERS", self.orders_1m_limit, self.orders_1m_window_s),
                                    ("ORDERS", self.orders_10s_limit, self.orders_10s_window_s)):
            _, num, name = interval_suffix(window)
            out.append({"rateLimitType": kind, "interval": name, "intervalNum": num, "limit": limit})
        return out


@dataclass
class _Window:
    window_s: int
    start: int = -1
    count: int = 0

    def add(self, now: float, n: int) -> int:
        start = int(now // self.window_s) * self.window_s
        if start != self.start:
            self.start, self.count = start, 0
        self.count += n
        return self.count

    def current(self, now: float) -> int:
        return self.count if int(now // self.window_s) * self.window_s == self.start else 0

    def retry_after(self, now: float) -> int:
        return max(1, int(self.start + self.window_s - now + 0.999))


@dataclass
class _IpState:
    weight: _Window
    limited_until: float = 0.0
    violations: int = 0
    banned_until: float = 0.0


@dataclass
class RateLimiter:
    """Counts weight per IP and orders per account; decides 200 / 429 / 418."""
    config: RateLimitConfig = field(default_factory=RateLimitConfig)
    clock: callable = time.time
    _ips: dict = field(default_factory=dict)
    _orders: dict = field(default_factory=dict)
    counters: dict = field(default_factory=lambda: {"429": 0, "418": 0})

    def _ip(self, ip: str) -> _IpState:
        st = self._ips.get(ip)
        if st is None:
            st = self._ips[ip] = _IpState(_Window(self.config.weight_window_s))
        return st

    def _order_windows(self, account: str) -> tuple[_Window, _Window]:
        w = self._orders.get(account)
        if w is None:
            w = self._orders[account] = (_Window(self.config.orders_10s_window_s), _Window(self.config.orders_1m_window_s))
        return w

    def reset(self) -> None:
        self._ips.clear()
        self._orders.clear()

    def charge(self, ip: str, weight: int) -> dict[str, str]:
        """Count a request's weight for ip; raises VenueError 429/418; returns the headers."""
        now = self.clock()
        st = self._ip(ip)
        cfg = self.config
        if st.banned_until > now:
            self.counters["418"] += 1
            until_ms = int(st.banned_until * 1000)
            raise E.VenueError(E.TOO_MANY_REQUESTS, f"Way too many requests; IP({ip}) banned until {until_ms}. "
                               "Please use the websocket for live updates to avoid bans.", 418,
                               retry_after=max(1, int(st.banned_until - now + 0.999)))
        if not cfg.enabled:
            return self.headers(ip)
        if st.limited_until > now:
            st.violations += 1
            if st.violations >= cfg.ban_after:
                st.banned_until = now + cfg.ban_seconds
                st.violations = 0
                return self.charge(ip, weight)
        count = st.weight.add(now, weight)
        if count > cfg.weight_limit:
            st.limited_until = st.weight.start + st.weight.window_s
            self.counters["429"] += 1
            suffix, num, name = interval_suffix(cfg.weight_window_s)
            raise E.VenueError(E.TOO_MANY_REQUESTS, f"Too many requests; current limit of IP({ip}) is "
                               f"{cfg.weight_limit} requests per {num} {name.lower()}. Please use the websocket "
                               "for live updates to avoid polling the API.", 429,
                               retry_after=st.weight.retry_after(now))
        if st.limited_until <= now:
            st.violations = 0
        return self.headers(ip)

    def charge_orders(self, account: str, n: int) -> dict[str, str]:
        """Count n new/modified orders for account; raises -1015 with 429 when over."""
        if n <= 0 or not self.config.enabled:
            return self.order_headers(account)
        now = self.clock()
        w10, w1m = self._order_windows(account)
        for w, limit in ((w10, self.config.orders_10s_limit), (w1m, self.config.orders_1m_limit)):
            if w.current(now) + n > limit:
                self.counters["429"] += 1
                _, num, name = interval_suffix(w.window_s)
                raise E.VenueError(E.TOO_MANY_ORDERS, f"Too many new orders; current limit is {limit} orders "
                                   f"per {num} {name.lower()}.", 429, retry_after=w.retry_after(now))
        w10.add(now, n)
        w1m.add(now, n)
        return self.order_headers(account)

    def headers(self, ip: str) -> dict[str, str]:
        suffix, _, _ = interval_suffix(self.config.weight_window_s)
        return {f"X-MBX-USED-WEIGHT-{suffix}": str(self._ip(ip).weight.current(self.clock()))}

    def order_headers(self, account: str) -> dict[str, str]:
        now = self.clock()
        out = {}
        for w in self._order_windows(account):
            suffix, _, _ = interval_suffix(w.window_s)
            out[f"X-MBX-ORDER-COUNT-{suffix}"] = str(w.current(now))
        return out

    def ws_rate_limits(self, ip: str, account: str | None) -> list[dict]:
        """The `rateLimits` array of a WebSocket API response."""
        now = self.clock()
        cfg = self.config
        _, num, name = interval_suffix(cfg.weight_window_s)
        out = [{"rateLimitType": "REQUEST_WEIGHT", "interval": name, "intervalNum": num, "limit": cfg.weight_limit,
                "count": self._ip(ip).weight.current(now)}]
        if account is not None:
            for w, limit in zip(self._order_windows(account), (cfg.orders_10s_limit, cfg.orders_1m_limit)):
                _, num, name = interval_suffix(w.window_s)
                out.append({"rateLimitType": "ORDERS", "interval": name, "intervalNum": num, "limit": limit,
                            "count": w.current(now)})
        return out
