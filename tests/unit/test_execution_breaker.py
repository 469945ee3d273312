from __future__ import annotations

import random

from mmshm.execution.breaker import BreakerState, CircuitBreaker, Failure


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def mk(**kw):
    c = Clock()
    return CircuitBreaker(clock=c, rng=random.Random(1), base_ns=1000, cap_ns=1_000_000, min_open_ns=10, **kw), c


def test_opens_after_consecutive_failures_and_recovers_via_probe():
    b, c = mk(failure_threshold=3)
    b.record_failure(Failure.SERVER)
    b.record_failure(Failure.TIMEOUT)
    assert b.state == BreakerState.CLOSED and b.allow()
    b.record_failure(Failure.SERVER)
    assert b.state == BreakerState.OPEN and not b.allow()
    c.t = b.open_until
    assert b.allow() and b.state == BreakerState.HALF_OPEN
    assert not b.allow()                 # one probe at a time
    b.record_success()
    assert b.state == BreakerState.CLOSED and b.allow()


def test_success_resets_consecutive():
    b, _ = mk(failure_threshold=2)
    b.record_failure(Failure.SERVER)
    b.record_success()
    b.record_failure(Failure.SERVER)
    assert b.state == BreakerState.CLOSED


def test_429_opens_immediately_for_at_least_retry_after():
    b, c = mk()
    b.record_failure(Failure.RATE_LIMIT, retry_after_ns=5_000_000)
    assert b.state == BreakerState.OPEN and b.open_until >= 5_000_000
    c.t = 4_999_999
    assert not b.allow()


def test_failed_probe_reopens_with_longer_backoff_ceiling():
    b, c = mk(failure_threshold=1)
    b.record_failure(Failure.SERVER)
    assert b.opens == 1
    c.t = b.open_until
    assert b.allow()
    b.record_failure(Failure.TIMEOUT)
    assert b.state == BreakerState.OPEN and b.opens == 2


def test_full_jitter_bounds():
    b, _ = mk()
    for n in range(12):
        b.opens = n
        for _ in range(20):
            v = b.backoff_ns()
            assert 10 <= v <= max(10, min(1_000_000, 1000 * 2 ** n))


def test_reject_storm_opens():
    b, c = mk(reject_threshold=5, reject_window_ns=100)
    for i in range(4):
        b.record_failure(Failure.REJECT)
    assert b.state == BreakerState.CLOSED
    c.t = 200                               # old rejects age out
    for i in range(4):
        b.record_failure(Failure.REJECT)
    assert b.state == BreakerState.CLOSED
    b.record_failure(Failure.REJECT)
    assert b.state == BreakerState.OPEN
    assert [s for _, s in b.transitions] == [BreakerState.OPEN]


def test_lost_probe_is_retried_after_probe_timeout():
    b, c = mk(failure_threshold=1)
    b.probe_timeout_ns = 500
    b.record_failure(Failure.SERVER)
    c.t = b.open_until
    assert b.allow()                      # the probe goes out and is never answered
    assert not b.allow()
    c.t += 500
    assert b.allow()
