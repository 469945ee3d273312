from __future__ import annotations

import numpy as np
import pytest

from mmshm.execution.ratelimit import (B_ORDERS_10S, B_WEIGHT_1M, RATE_STATE, Cost, RateBudget, RateLimited,
                                       cost_of)

LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 20},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 50},
]


class Clock:
    def __init__(self, t=60_000_000_000 * 1000):
        self.t = t

    def __call__(self):
        return self.t


def test_seeded_from_exchange_info_and_refuses_before_limit():
    c = Clock()
    b = RateBudget(margin=0.1, clock=c, rate_limits=LIMITS)
    for _ in range(18):                       # 20 * 0.9 = 18 orders per 10 s
        b.acquire(Cost(0, 1))
    with pytest.raises(RateLimited) as ei:
        b.acquire(Cost(0, 1))
    assert 0 < ei.value.retry_after_ns <= 10_000_000_000
    assert b.snapshot()["refused"] == 1
    c.t += 10_000_000_000                     # next 10 s window
    b.acquire(Cost(0, 1))


def test_weight_bucket():
    c = Clock()
    b = RateBudget(margin=0.0, clock=c, rate_limits=LIMITS)
    assert b.try_acquire(Cost(100, 0))
    assert not b.try_acquire(Cost(1, 0))
    assert b.try_acquire(Cost(0, 1))          # orders do not use weight here


def test_header_correction_only_upwards():
    c = Clock()
    b = RateBudget(margin=0.0, clock=c, rate_limits=LIMITS)
    b.acquire(Cost(5, 1))
    b.update_from_headers({"X-MBX-USED-WEIGHT-1M": "90", "X-MBX-ORDER-COUNT-10S": "19", "Other": "x"})
    assert b.headroom(B_WEIGHT_1M) == 10 and b.headroom(B_ORDERS_10S) == 1
    b.update_from_headers({"x-mbx-used-weight-1m": "3"})   # lower: keep our count
    assert b.headroom(B_WEIGHT_1M) == 10
    b.update_from_headers({"x-mbx-used-weight-1m": "bogus"})


def test_ws_rate_limits_array():
    c = Clock()
    b = RateBudget(margin=0.0, clock=c, rate_limits=LIMITS)
    b.update_from_ws([{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                       "limit": 100, "count": 40},
                      {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 20,
                       "count": 7}])
    assert b.headroom(B_WEIGHT_1M) == 60 and b.headroom(B_ORDERS_10S) == 13


def test_429_blocks_until_retry_after():
    c = Clock()
    b = RateBudget(clock=c, rate_limits=LIMITS)
    b.on_429(2.5)
    assert b.check(Cost(1, 0)) == 2_500_000_000
    assert not b.try_acquire(Cost(0, 0))
    c.t += 2_500_000_000
    assert b.try_acquire(Cost(1, 0))
    b.on_429(None)                              # no header: until the minute rolls
    assert 0 < b.blocked_for_ns() <= 60_000_000_000


def test_state_is_a_shareable_record():
    state = np.zeros(1, RATE_STATE)
    c = Clock()
    a = RateBudget(state, clock=c, rate_limits=LIMITS)
    b = RateBudget(state, clock=c)              # a second user of the same record
    a.acquire(Cost(10, 0))
    b.acquire(Cost(10, 0))
    assert a.headroom(B_WEIGHT_1M) == b.headroom(B_WEIGHT_1M) == 90 - 20
    assert int(state[0]["version"]) % 2 == 0


def test_costs_table():
    assert cost_of("POST /fapi/v1/order") == Cost(0, 1)
    assert cost_of("POST /fapi/v1/batchOrders") == Cost(5, 5)
    assert cost_of("GET /unknown") == Cost(1, 0)


def test_shared_budget_in_shm(instance):
    from mmshm.execution.ratelimit import SharedRateBudget
    c = Clock()
    a = SharedRateBudget(instance, margin=0.0, clock=c, rate_limits=LIMITS)
    b = SharedRateBudget(instance, margin=0.0, clock=c)          # attaches, keeps the seeding
    try:
        for _ in range(10):
            a.acquire(Cost(0, 1))
            b.acquire(Cost(0, 1))
        assert not a.try_acquire(Cost(0, 1)) and not b.try_acquire(Cost(0, 1))   # 20 per 10 s, shared
        b.on_429(5)
        assert a.blocked_for_ns() == 5_000_000_000
    finally:
        a.close()
        b.close()


def test_shared_debit_reads_the_clock_while_holding_the_lock(instance):
    """A time read before waiting for the flock could be older than another process's
    debit and roll its window back (resetting what it had spent): the native debit reads
    the clock only once it holds the lock."""
    import fcntl
    import os

    from mmshm.execution.ratelimit import SharedRateBudget
    c = Clock()
    b = SharedRateBudget(instance, margin=0.0, clock=c, rate_limits=LIMITS)
    held: list[bool] = []

    def clock() -> int:
        # another open file description of the same file: its flock conflicts with ours
        fd = os.open(f"/proc/self/fd/{b._lock.fd}", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        return c()

    b._clock = clock
    try:
        b.acquire(Cost(0, 1))
        assert held == [True]
    finally:
        b.close()
