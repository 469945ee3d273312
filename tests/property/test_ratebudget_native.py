"""The native rate-budget debit (mmshm._native.ratebudget) against the Python one.

Any sequence of requests (weights, order counts, clock jumps across window boundaries,
429 blocks, tight limits and margins) must leave two budgets in identical state and give
identical answers (debited, or refused with the same wait).
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mmshm.execution.ratelimit import Cost, RateBudget, RateLimited

pytestmark = pytest.mark.timeout(120)

LIMITS = st.lists(st.tuples(st.sampled_from([("REQUEST_WEIGHT", "MINUTE", 1), ("ORDERS", "SECOND", 10),
                                              ("ORDERS", "MINUTE", 1), ("ORDERS", "DAY", 1)]),
                            st.integers(1, 40)), min_size=1, max_size=4)
STEPS = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3), st.integers(0, 25_000_000_000),
                           st.sampled_from([None, None, None, 0.0, 1.5])), max_size=60)


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def outcome(budget: RateBudget, fn, cost: Cost):
    try:
        fn(cost)
        return 0
    except RateLimited as exc:
        return exc.retry_after_ns


@settings(max_examples=400, deadline=None)
@given(limits=LIMITS, steps=STEPS, margin=st.sampled_from([0.0, 0.1, 0.5]),
       start=st.integers(1_600_000_000_000_000_000, 1_800_000_000_000_000_000))
def test_native_acquire_equals_python_acquire(limits, steps, margin, start):
    rl = [{"rateLimitType": k, "interval": u, "intervalNum": n, "limit": lim} for (k, u, n), lim in limits]
    ca, cb = Clock(start), Clock(start)
    a = RateBudget(margin=margin, clock=ca, rate_limits=rl)
    b = RateBudget(margin=margin, clock=cb, rate_limits=rl)
    for weight, orders, dt, retry_after in steps:
        ca.t += dt
        cb.t += dt
        if retry_after is not None:             # a 429 now and then
            a.on_429(retry_after)
            b.on_429(retry_after)
        cost = Cost(weight, orders)
        assert outcome(a, a.acquire, cost) == outcome(b, b._acquire_py, cost)
        assert a.w.tolist() == b.w.tolist()
