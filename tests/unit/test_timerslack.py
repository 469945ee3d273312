"""Timer slack of the hot roles (prctl PR_SET_TIMERSLACK), per thread and inherited."""
from __future__ import annotations

import threading

import pytest

from mmshm.agent.timerslack import apply_timer_slack, set_timer_slack, timer_slack_ns

pytestmark = pytest.mark.timeout(30)


def in_thread(fn):
    """Run ``fn`` on a fresh thread (the test runner's own slack stays as it was)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            out["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_set_reads_back_and_a_new_thread_inherits_it():
    def body():
        before = timer_slack_ns()
        assert set_timer_slack(1_000) == before
        child = {}
        t = threading.Thread(target=lambda: child.setdefault("slack", timer_slack_ns()))
        t.start()
        t.join(5)
        return timer_slack_ns(), child["slack"]
    assert in_thread(body) == (1_000, 1_000)


def test_zero_or_negative_is_refused_and_apply_with_zero_leaves_the_kernels():
    with pytest.raises(ValueError):
        set_timer_slack(0)

    def body():
        before = timer_slack_ns()
        apply_timer_slack("quoter", 0)
        return before, timer_slack_ns()
    before, after = in_thread(body)
    assert before == after


def test_apply_sets_it_for_a_hot_role():
    assert in_thread(lambda: (apply_timer_slack("executor", 2_000), timer_slack_ns())[1]) == 2_000
