"""The venue request budget: weight and order counts, refused locally before a 429.

Binance counts per fixed window (the minute, the 10 seconds) and reports the count in
the window in every response (``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S``,
``X-MBX-ORDER-COUNT-1M``; the WebSocket API returns the same in ``rateLimits``). We keep
one bucket per limit: capacity from exchangeInfo ``rateLimits``, refilled at each window
boundary, debited *before* a request is sent and corrected upwards from the headers
(other processes and other tools using the same key/IP also consume it). A request that
would take a bucket past ``limit * (1 - margin)`` is refused locally: it is never sent.
After a 429 nothing is allowed until ``Retry-After``; a 418 (ban) blocks the same way,
and because we stop at the first 429 it should never be reached.

The whole state is one numpy record (:data:`RATE_STATE`) so a later step can place it
in a shared-memory segment used by every process that talks to the venue. Its updates
are then made under that segment's lock; here a process owns its own record.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

N_BUCKETS = 4
B_WEIGHT_1M, B_ORDERS_10S, B_ORDERS_1M, B_ORDERS_1D = range(N_BUCKETS)
BUCKET_NAMES = ("weight_1m", "orders_10s", "orders_1m", "orders_1d")
#: response header -> bucket (Binance sends the names lower-case over HTTP/2; match case-insensitively)
HEADER_BUCKETS = {
    "x-mbx-used-weight-1m": B_WEIGHT_1M,
    "x-mbx-order-count-10s": B_ORDERS_10S,
    "x-mbx-order-count-1m": B_ORDERS_1M,
    "x-mbx-order-count-1d": B_ORDERS_1D,
}
_UNIT_NS = {"SECOND": 1_000_000_000, "MINUTE": 60_000_000_000, "HOUR": 3_600_000_000_000,
            "DAY": 86_400_000_000_000}

#: Binance USD-M documented defaults (exchangeInfo rateLimits), used until it is fetched.
DEFAULT_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]

RATE_STATE = np.dtype([
    ("version", "<u8"),                       # bumped on every change (seqlock-ready)
    ("interval_ns", "<i8", (N_BUCKETS,)),     # 0 = bucket not configured
    ("limit", "<i8", (N_BUCKETS,)),
    ("used", "<i8", (N_BUCKETS,)),
    ("window", "<i8", (N_BUCKETS,)),          # window index (realtime ns // interval)
    ("blocked_until_ns", "<i8"),              # realtime ns: no request before (429/418)
    ("refused", "<i8"),
    ("n_429", "<i8"),
    ("n_418", "<i8"),
    ("margin_ppm", "<i8"),
    ("_pad", "u1", (16,)),
])
assert RATE_STATE.itemsize == 192


@dataclass(frozen=True, slots=True)
class Cost:
    """What one request costs: IP weight and order-count units."""
    weight: int = 1
    orders: int = 0


#: Documented costs of the Binance USD-M endpoints we use (REST and WebSocket API).
COSTS: dict[str, Cost] = {
    "order.place": Cost(0, 1), "order.modify": Cost(1, 1), "order.cancel": Cost(1, 0),
    "order.status": Cost(1, 0),
    "POST /fapi/v1/order": Cost(0, 1), "PUT /fapi/v1/order": Cost(1, 1),
    "DELETE /fapi/v1/order": Cost(1, 0), "GET /fapi/v1/order": Cost(1, 0),
    "POST /fapi/v1/batchOrders": Cost(5, 5), "PUT /fapi/v1/batchOrders": Cost(5, 5),
    "DELETE /fapi/v1/batchOrders": Cost(1, 0), "DELETE /fapi/v1/allOpenOrders": Cost(1, 0),
    "GET /fapi/v1/openOrders": Cost(1, 0), "GET /fapi/v1/openOrders:all": Cost(40, 0),
    "GET /fapi/v2/positionRisk": Cost(5, 0), "GET /fapi/v2/account": Cost(5, 0),
    "GET /fapi/v1/userTrades": Cost(5, 0), "POST /fapi/v1/countdownCancelAll": Cost(10, 0),
    "POST /fapi/v1/listenKey": Cost(1, 0), "PUT /fapi/v1/listenKey": Cost(1, 0),
    "DELETE /fapi/v1/listenKey": Cost(1, 0), "GET /fapi/v1/time": Cost(1, 0),
    "GET /fapi/v1/exchangeInfo": Cost(1, 0),
}


def cost_of(key: str) -> Cost:
    return COSTS.get(key, Cost(1, 0))


class RateLimited(Exception):
    """Refused locally: sending would break (or is blocked by) the venue's rate limit."""

    def __init__(self, msg: str, retry_after_ns: int = 0) -> None:
        super().__init__(msg)
        self.retry_after_ns = retry_after_ns


class RateBudget:
    """Token buckets over a :data:`RATE_STATE` record (own or in shared memory)."""

    def __init__(self, state: np.ndarray | None = None, *, margin: float = 0.1,
                 clock: Callable[[], int] = time.time_ns,
                 rate_limits: Iterable[Mapping] | None = None) -> None:
        if state is None:
            state = np.zeros((), RATE_STATE)
        if state.dtype != RATE_STATE or state.size != 1:
            raise TypeError("state must be a single RATE_STATE record")
        self.s = state.reshape(())
        self._clock = clock
        if not hasattr(self, "_lock"):
            self._lock = contextlib.nullcontext
        if not 0 <= margin < 1:
            raise ValueError("margin must be in [0, 1)")
        self.s["margin_ppm"] = int(margin * 1_000_000)
        if rate_limits is not None or int(self.s["interval_ns"].max()) == 0:
            self.configure(DEFAULT_RATE_LIMITS if rate_limits is None else rate_limits)

    def configure(self, rate_limits: Iterable[Mapping]) -> None:
        """Seed the buckets from exchangeInfo ``rateLimits`` (unknown kinds ignored)."""
        with self._lock():
            for rl in rate_limits:
                kind, unit = rl.get("rateLimitType"), rl.get("interval")
                if unit not in _UNIT_NS:
                    continue
                ival = _UNIT_NS[unit] * int(rl.get("intervalNum", 1))
                if kind == "REQUEST_WEIGHT" and ival == 60_000_000_000:
                    b = B_WEIGHT_1M
                elif kind == "ORDERS" and ival == 10_000_000_000:
                    b = B_ORDERS_10S
                elif kind == "ORDERS" and ival == 60_000_000_000:
                    b = B_ORDERS_1M
                elif kind == "ORDERS" and ival == 86_400_000_000_000:
                    b = B_ORDERS_1D
                else:
                    continue
                self.s["interval_ns"][b] = ival
                self.s["limit"][b] = int(rl["limit"])
            self._bump()

    def _bump(self) -> None:
        self.s["version"] += 2

    def _roll(self, now: int) -> None:
        s = self.s
        for b in range(N_BUCKETS):
            ival = int(s["interval_ns"][b])
            if ival:
                w = now // ival
                if w != int(s["window"][b]):
                    s["window"][b] = w
                    s["used"][b] = 0

    def headroom(self, b: int) -> int:
        """Units left in bucket ``b`` before the safety margin (after rolling windows)."""
        with self._lock():
            self._roll(self._clock())
            lim = int(self.s["limit"][b])
            cap = lim - lim * int(self.s["margin_ppm"]) // 1_000_000
            return cap - int(self.s["used"][b])

    def check(self, cost: Cost) -> int:
        """0 if ``cost`` fits now, else ns to wait (until unblocked or the window rolls)."""
        with self._lock():
            now = self._clock()
            s = self.s
            if now < int(s["blocked_until_ns"]):
                return int(s["blocked_until_ns"]) - now
            self._roll(now)
            margin = int(s["margin_ppm"])
            for b in range(N_BUCKETS):
                ival = int(s["interval_ns"][b])
                if not ival:
                    continue
                need = cost.weight if b == B_WEIGHT_1M else cost.orders
                if need <= 0:
                    continue
                lim = int(s["limit"][b])
                cap = lim - lim * margin // 1_000_000
                if int(s["used"][b]) + need > cap:
                    return (int(s["window"][b]) + 1) * ival - now
            return 0

    def acquire(self, cost: Cost) -> None:
        """Debit ``cost`` or raise :class:`RateLimited` (then nothing may be sent)."""
        with self._lock():
            wait = self.check(cost)
            if wait:
                self.s["refused"] += 1
                self._bump()
                raise RateLimited(f"rate budget refuses weight={cost.weight} orders={cost.orders}", wait)
            s = self.s
            for b in range(N_BUCKETS):
                if int(s["interval_ns"][b]):
                    s["used"][b] += cost.weight if b == B_WEIGHT_1M else cost.orders
            self._bump()

    def try_acquire(self, cost: Cost) -> bool:
        try:
            self.acquire(cost)
            return True
        except RateLimited:
            return False

    def update_from_headers(self, headers: Mapping[str, str]) -> None:
        """Correct the buckets from the venue's counts (they include other users of the key)."""
        with self._lock():
            now = self._clock()
            self._roll(now)
            for name, value in headers.items():
                b = HEADER_BUCKETS.get(name.lower())
                if b is None:
                    continue
                try:
                    used = int(value)
                except (TypeError, ValueError):
                    continue
                if used > int(self.s["used"][b]):
                    self.s["used"][b] = used
            self._bump()

    def update_from_ws(self, rate_limits: Iterable[Mapping]) -> None:
        """The WebSocket API's ``rateLimits`` array (``count`` per limit) as headers."""
        hdr: dict[str, str] = {}
        for rl in rate_limits:
            kind, unit, n = rl.get("rateLimitType"), rl.get("interval"), int(rl.get("intervalNum", 1))
            suffix = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}.get(unit or "", "")
            if kind == "REQUEST_WEIGHT":
                hdr[f"x-mbx-used-weight-{n}{suffix}"] = str(rl.get("count", 0))
            elif kind == "ORDERS":
                hdr[f"x-mbx-order-count-{n}{suffix}"] = str(rl.get("count", 0))
        self.update_from_headers(hdr)

    def on_429(self, retry_after_s: float | None) -> None:
        """Stop everything until Retry-After (default: the end of the current minute)."""
        with self._lock():
            self._block(retry_after_s)
            self.s["n_429"] += 1
            self._bump()

    def on_418(self, retry_after_s: float | None) -> None:
        with self._lock():
            self._block(retry_after_s)
            self.s["n_418"] += 1
            self._bump()

    def _block(self, retry_after_s: float | None) -> None:
        now = self._clock()
        if retry_after_s is None or retry_after_s <= 0:
            until = (now // 60_000_000_000 + 1) * 60_000_000_000
        else:
            until = now + int(retry_after_s * 1e9)
        if until > int(self.s["blocked_until_ns"]):
            self.s["blocked_until_ns"] = until

    def blocked_for_ns(self) -> int:
        return max(0, int(self.s["blocked_until_ns"]) - self._clock())

    def snapshot(self) -> dict[str, object]:
        """Counters for status/metrics."""
        with self._lock():
            self._roll(self._clock())
            s = self.s
            return {
                **{f"{BUCKET_NAMES[b]}_used": int(s["used"][b]) for b in range(N_BUCKETS) if s["interval_ns"][b]},
                **{f"{BUCKET_NAMES[b]}_limit": int(s["limit"][b]) for b in range(N_BUCKETS) if s["interval_ns"][b]},
                "refused": int(s["refused"]), "n_429": int(s["n_429"]), "n_418": int(s["n_418"]),
                "blocked_for_ns": self.blocked_for_ns(),
            }


class _FlockGuard:
    """Re-entrant exclusive ``flock`` on a file: the kernel drops it if the holder dies,
    so a killed process can never leave the shared budget locked."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.depth = 0

    def __call__(self) -> "_FlockGuard":
        return self

    def __enter__(self) -> None:
        if self.depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


#: Segment name of the shared budget: ``/mmshm-<instance>-ratelimit``.
SEGMENT = "ratelimit"


class SharedRateBudget(RateBudget):
    """The rate budget of every process of an instance that talks to the venue.

    The :data:`RATE_STATE` record lives in the shared-memory segment
    ``/mmshm-<instance>-ratelimit`` (created by whoever comes first, validated by the
    others); every read-modify-write holds an exclusive ``flock`` on the segment's file,
    so two processes can never both spend the last unit. Seeding from exchangeInfo by
    one process is seen by all.
    """

    def __init__(self, instance: str, *, margin: float = 0.1, clock: Callable[[], int] = time.time_ns,
                 rate_limits: Iterable[Mapping] | None = None) -> None:
        from mmshm.shm import segment as sg
        self._seg = sg.create_or_attach(instance, SEGMENT, sg.Kind.SEQLOCK, RATE_STATE, 1)
        self._fd = os.open(os.path.join(sg.SHM_DIR, self._seg.name), os.O_RDWR)
        self._lock = _FlockGuard(self._fd)
        state = self._seg.data(RATE_STATE)[0:1]
        with self._lock():
            super().__init__(state, margin=margin, clock=clock, rate_limits=rate_limits)

    def close(self) -> None:
        self.s = None  # type: ignore[assignment]
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._seg.close()
