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

from mmshm._native.ratebudget import acquire as _native_acquire

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


# int64 word offsets inside RATE_STATE (the hot path reads/writes words, not numpy fields)
_W_VERSION = 0
_W_INTERVAL = RATE_STATE.fields["interval_ns"][1] // 8
_W_LIMIT = RATE_STATE.fields["limit"][1] // 8
_W_USED = RATE_STATE.fields["used"][1] // 8
_W_WINDOW = RATE_STATE.fields["window"][1] // 8
_W_BLOCKED = RATE_STATE.fields["blocked_until_ns"][1] // 8
_W_REFUSED = RATE_STATE.fields["refused"][1] // 8
_W_429 = RATE_STATE.fields["n_429"][1] // 8
_W_418 = RATE_STATE.fields["n_418"][1] // 8
_W_MARGIN = RATE_STATE.fields["margin_ppm"][1] // 8
_WORD_OFFSETS = (_W_VERSION, _W_INTERVAL, _W_LIMIT, _W_USED, _W_WINDOW, _W_BLOCKED, _W_REFUSED, _W_MARGIN)


class RateBudget:
    """Token buckets over a :data:`RATE_STATE` record (own or in shared memory).

    The record is accessed as int64 words through a memoryview (about 20x cheaper than
    numpy field access, which matters: every order request goes through here).
    """

    def __init__(self, state: np.ndarray | None = None, *, margin: float = 0.1,
                 clock: Callable[[], int] = time.time_ns,
                 rate_limits: Iterable[Mapping] | None = None) -> None:
        if state is None:
            state = np.zeros((), RATE_STATE)
        if state.dtype != RATE_STATE or state.size != 1:
            raise TypeError("state must be a single RATE_STATE record")
        self.s = state.reshape(())
        self.w = memoryview(state.reshape(1).view(np.uint8)).cast("q")
        self.words = state.reshape(1).view(np.int64)        # the same words, for the native debit
        self._clock = clock
        if not hasattr(self, "_lock"):
            self._lock = contextlib.nullcontext
        if not 0 <= margin < 1:
            raise ValueError("margin must be in [0, 1)")
        with self._lock():
            self.w[_W_MARGIN] = int(margin * 1_000_000)
            configured = any(self.w[_W_INTERVAL + b] for b in range(N_BUCKETS))
        if rate_limits is not None or not configured:
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
                self.w[_W_INTERVAL + b] = ival
                self.w[_W_LIMIT + b] = int(rl["limit"])
            self._bump()

    def _bump(self) -> None:
        self.w[_W_VERSION] += 2

    def _roll(self, now: int) -> None:
        w = self.w
        for b in range(N_BUCKETS):
            ival = w[_W_INTERVAL + b]
            if ival:
                win = now // ival
                if win != w[_W_WINDOW + b]:
                    w[_W_WINDOW + b] = win
                    w[_W_USED + b] = 0

    def _cap(self, b: int) -> int:
        lim = self.w[_W_LIMIT + b]
        return lim - lim * self.w[_W_MARGIN] // 1_000_000

    def headroom(self, b: int) -> int:
        """Units left in bucket ``b`` before the safety margin (after rolling windows)."""
        with self._lock():
            self._roll(self._clock())
            return self._cap(b) - self.w[_W_USED + b]

    def _wait(self, cost: Cost, now: int) -> int:
        w = self.w
        if now < w[_W_BLOCKED]:
            return w[_W_BLOCKED] - now
        self._roll(now)
        for b in range(N_BUCKETS):
            ival = w[_W_INTERVAL + b]
            if not ival:
                continue
            need = cost.weight if b == B_WEIGHT_1M else cost.orders
            if need > 0 and w[_W_USED + b] + need > self._cap(b):
                return (w[_W_WINDOW + b] + 1) * ival - now
        return 0

    def check(self, cost: Cost) -> int:
        """0 if ``cost`` fits now, else ns to wait (until unblocked or the window rolls)."""
        with self._lock():
            return self._wait(cost, self._clock())

    def acquire(self, cost: Cost) -> None:
        """Debit ``cost`` or raise :class:`RateLimited` (then nothing may be sent).

        Runs in C (``mmshm._native.ratebudget``; every order request passes here);
        :meth:`_acquire_py` is the same in Python, the reference the tests compare with.
        """
        lock = self._lock
        if isinstance(lock, _FlockGuard) and lock.depth == 0:   # the debit takes the flock itself
            wait = _native_acquire(self.words, cost.weight, cost.orders, 0, *_WORD_OFFSETS, lock.fd, self._clock)
        else:
            with lock():
                wait = _native_acquire(self.words, cost.weight, cost.orders, self._clock(), *_WORD_OFFSETS)
        if wait:
            raise RateLimited(f"rate budget refuses weight={cost.weight} orders={cost.orders}", wait)

    def _acquire_py(self, cost: Cost) -> None:
        """:meth:`acquire` in Python (the reference for the native debit)."""
        with self._lock():
            w = self.w
            wait = self._wait(cost, self._clock())
            if wait:
                w[_W_REFUSED] += 1
                self._bump()
                raise RateLimited(f"rate budget refuses weight={cost.weight} orders={cost.orders}", wait)
            for b in range(N_BUCKETS):
                if w[_W_INTERVAL + b]:
                    w[_W_USED + b] += cost.weight if b == B_WEIGHT_1M else cost.orders
            self._bump()

    def try_acquire(self, cost: Cost) -> bool:
        try:
            self.acquire(cost)
            return True
        except RateLimited:
            return False

    def update_from_headers(self, headers: Mapping[str, str]) -> None:
        """Correct the buckets from the venue's counts (they include other users of the key).

        Only upwards: a lower venue count means requests of ours still in flight.
        """
        with self._lock():
            self._roll(self._clock())
            for name, value in headers.items():
                b = HEADER_BUCKETS.get(name.lower())
                if b is None:
                    continue
                try:
                    used = int(value)
                except (TypeError, ValueError):
                    continue
                if used > self.w[_W_USED + b]:
                    self.w[_W_USED + b] = used
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
            self.w[_W_429] += 1
            self._bump()

    def on_418(self, retry_after_s: float | None) -> None:
        with self._lock():
            self._block(retry_after_s)
            self.w[_W_418] += 1
            self._bump()

    def _block(self, retry_after_s: float | None) -> None:
        now = self._clock()
        if retry_after_s is None or retry_after_s <= 0:
            until = (now // 60_000_000_000 + 1) * 60_000_000_000
        else:
            until = now + int(retry_after_s * 1e9)
        if until > self.w[_W_BLOCKED]:
            self.w[_W_BLOCKED] = until

    def blocked_for_ns(self) -> int:
        return max(0, self.w[_W_BLOCKED] - self._clock())

    def snapshot(self) -> dict[str, object]:
        """Counters for status/metrics."""
        with self._lock():
            self._roll(self._clock())
            w = self.w
            out: dict[str, object] = {}
            for b in range(N_BUCKETS):
                if w[_W_INTERVAL + b]:
                    out[f"{BUCKET_NAMES[b]}_used"] = w[_W_USED + b]
                    out[f"{BUCKET_NAMES[b]}_limit"] = w[_W_LIMIT + b]
            out.update(refused=w[_W_REFUSED], n_429=w[_W_429], n_418=w[_W_418],
                       blocked_for_ns=self.blocked_for_ns())
            return out


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
        self.w.release()
        self.s = self.words = None  # type: ignore[assignment]
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._seg.close()
