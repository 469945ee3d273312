"""Executor scenarios: the executor PROCESS against the simulated venue over real sockets.

Each test runs ``mmshm venue --market none`` and ``python -m mmshm.procs.executor`` as
child processes; the test plays feed, quoter, risk and the orders ring's readers
(executor_harness.Rig) and drives the venue's market through its control API. Positions
and fees are compared between the venue's ``/_control/state`` and the FILL events in the
orders ring. BTCUSDT on the sim: tick 0.1, lot 0.001, min notional 100 USDT, maker fee
200 ppm.
"""
from __future__ import annotations

import json
import signal
import time

import pytest

from executor_harness import Rig, wait_for
from mmshm.execution.breaker import BreakerState
from mmshm.records import Mode, OrderEventKind as K, OrderStatus as S, Side

BID = "50005.0"     # inside the displayed 50000.0 / 50010.0: nobody ahead of us in the queue


@pytest.fixture
def rig(spawn, instance, tmp_path):
    r = Rig(spawn, instance, tmp_path)
    r.depth()
    yield r
    r.close()


def stop(rig: Rig) -> str:
    rig.executor.send_signal(signal.SIGTERM)
    assert rig.executor.wait(timeout=20) == 0
    return rig.executor_log()


def summary(log: str) -> dict:
    for line in reversed(log.splitlines()):
        if '"executor summary"' in line:
            return json.loads(line)
    raise AssertionError("no executor summary in the log")


def quote_bid(rig: Rig, qty: str = "0.010", price: str = BID) -> None:
    rig.target(bids=[(rig.ticks(price), rig.lots(qty))])


@pytest.mark.timeout(60)
def test_place_fill_position_matches_venue_and_ring(rig):
    rig.start_executor()
    quote_bid(rig)
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
    rig.trade(BID, "0.010", "SELL")
    wait_for(lambda: rig.counters().get("fills") == 1, 10, "fill seen", [rig.executor])
    # the ring is read by the harness's own thread: it may still be behind the counters
    wait_for(lambda: rig.ring_events(K.FILL), 5, "FILL in the ring")
    assert rig.venue_position() == 10 == rig.ring_position()
    assert rig.counters()["position_lots"] == 10
    # maker fee 0.01 * 50005 * 0.0002 = 0.10001 USDT
    assert rig.ring_fees() == 10_001_000 == rig.counters()["fees"]
    stop(rig)
    assert rig.open_orders() == []
    # A restarted executor reports the venue's position to risk (RECONCILE, client_id 0):
    # long 10 lots entered at the bid.
    rig.start_executor()
    reports = wait_for(lambda: [e for e in rig.ring_events(K.RECONCILE) if int(e["client_id"]) == 0
                                and int(e["qty"]) == 10], 10, "position report", [rig.executor])
    assert int(reports[-1]["side"]) == Side.BUY and int(reports[-1]["price"]) == rig.ticks(BID)
    stop(rig)


@pytest.mark.timeout(60)
def test_place_cancel_no_phantom_position(rig):
    rig.start_executor()
    quote_bid(rig)
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
    rig.target(pull=True)
    wait_for(lambda: rig.open_orders() == [], 10, "bid cancelled", [rig.executor])
    wait_for(lambda: rig.ring_events(K.CANCELED), 5, "CANCELED in the ring")
    rig.trade(BID, "0.010", "SELL")           # would have filled us: nothing may happen now
    time.sleep(0.3)
    assert rig.venue_position() == 0 == rig.ring_position() and rig.counters()["position_lots"] == 0
    stop(rig)


@pytest.mark.timeout(60)
def test_partial_fill_then_cancel_rest_position_and_fees_exact(rig):
    rig.start_executor()
    quote_bid(rig, "0.020")
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
    rig.trade(BID, "0.008", "SELL")
    wait_for(lambda: rig.counters().get("fills") == 1, 10, "partial fill", [rig.executor])
    rig.target(pull=True)
    wait_for(lambda: rig.open_orders() == [], 10, "rest cancelled", [rig.executor])
    wait_for(lambda: rig.ring_events(K.CANCELED), 5, "CANCELED in the ring")
    assert rig.venue_position() == 8 == rig.ring_position()
    # 0.008 * 50005 * 0.0002 = 0.080008 USDT
    assert rig.ring_fees() == 8_000_800
    cancel = rig.ring_events(K.CANCELED)[-1]
    assert int(cancel["filled_qty"]) == 8 and int(cancel["status"]) == S.CANCELED
    stop(rig)


@pytest.mark.timeout(60)
def test_reject_changes_nothing(rig):
    rig.start_executor()
    rig.faults({"reject": {"count": 1, "code": -2010, "msg": "Order would immediately trigger."}})
    quote_bid(rig)
    wait_for(lambda: rig.counters().get("rejects") == 1, 10, "reject counted", [rig.executor])
    rej = rig.ring_events(K.REJECT)
    assert len(rej) == 1 and int(rej[0]["reason"]) == -2010 and int(rej[0]["status"]) == S.REJECTED
    assert rig.open_orders() == [] and rig.venue_position() == 0 == rig.ring_position()
    stop(rig)


@pytest.mark.timeout(90)
def test_targets_flipping_ten_times_a_second_no_429(rig):
    """10 target changes a second for 15 s (the issue says a minute; shortened for CI)."""
    rig.start_executor()
    t_end = time.monotonic() + 15.0
    k = 0
    while time.monotonic() < t_end:
        px = "50005.0" if k % 2 == 0 else "50004.0"
        rig.target(bids=[(rig.ticks(px), rig.lots("0.010"))], asks=[(rig.ticks("50009.0"), rig.lots("0.010"))],
                   pull=(k % 10 == 9))          # every 10th: pull everything (cancels, then new orders)
        k += 1
        time.sleep(0.1)
    rig.target(bids=[(rig.ticks(BID), rig.lots("0.010"))])
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "final bid", [rig.executor])
    st = rig.stats()
    assert st["ratelimit"]["429"] == 0 and st["ratelimit"]["418"] == 0
    c = rig.counters()
    assert c["rejects"] == 0 and c["not_sent"] == 0 and c["amends"] > 50
    log = stop(rig)
    assert rig.open_orders() == []
    assert summary(log)["session"]["places"] >= 2


@pytest.mark.timeout(90)
def test_connections_drop_ten_times_state_resumes_no_orphans(rig):
    """Order-entry and user-data sessions dropped after N messages, ten times each.

    N = 30 instead of the issue's 100, so ten drops of both channels fit in ~20 s of
    target changes under the venue's order-rate limits (the mechanism is the same)."""
    rig.faults({"drop": [{"channel": "wsapi", "after": 30, "times": 10},
                         {"channel": "user", "after": 30, "times": 10}]})
    rig.start_executor("--set", "executor.pending_timeout_ms=1000")
    k = 0
    t_end = time.monotonic() + 40
    while time.monotonic() < t_end:
        px = 50005.0 - (k % 5)
        rig.target(bids=[(rig.ticks(f"{px:.1f}"), rig.lots("0.010"))], asks=[(rig.ticks("50009.0"), rig.lots("0.010"))])
        k += 1
        time.sleep(0.05)
        drops = rig.get("/_control/faults")["drops"]
        if not drops:
            break
    assert not rig.get("/_control/faults")["drops"], "the venue did not drop ten times each"
    rig.target(bids=[(rig.ticks(BID), rig.lots("0.010"))])
    # state resumes: exactly the one target order rests at the venue, no orphan
    wait_for(lambda: len(rig.open_orders()) == 1 and rig.open_orders()[0]["price"].startswith("50005"), 15,
             "one resting bid after the drops", [rig.executor])
    assert rig.counters()["reconnects"] >= 10
    log = stop(rig)
    s = summary(log)
    assert s["ws_connects"] + s["user_connects"] >= 20
    assert s["ws_reconnect_max_ms"] < 5000 and s["user_reconnect_max_ms"] < 5000
    assert rig.open_orders() == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("storm", ["reject", "storm429"])
def test_storm_opens_breaker_backs_off_recovers_no_418(rig, storm):
    rig.start_executor("--set", "executor.breaker_backoff_base_s=0.2", "--set", "executor.breaker_backoff_max_s=1.0",
                       "--set", "executor.breaker_rejects=5", "--set", "executor.breaker_reject_window_s=2.0")
    quote_bid(rig)
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
    if storm == "reject":
        rig.faults({"reject": {"count": 20, "code": -2010, "msg": "storm"}})
    else:
        rig.faults({"storm429": {"count": 6, "retry_after": 1}})
    k = 0
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end:
        k += 1
        # alternate a pull and a new quote: cancels and new orders, not only amends
        rig.target(bids=[(rig.ticks(f"{50005.0 - k % 3:.1f}"), rig.lots("0.010"))], pull=(k % 2 == 0))
        time.sleep(0.05)
        f = rig.get("/_control/faults")
        if f["reject_left"] == 0 and f["storm429_left"] == 0:
            break
    rig.target(bids=[(rig.ticks(BID), rig.lots("0.010"))])
    wait_for(lambda: rig.counters().get("breaker_state") == BreakerState.CLOSED
             and [float(o["price"]) for o in rig.open_orders()] == [50005.0], 20, "recovered: one bid at 50005",
             [rig.executor])
    assert rig.stats()["ratelimit"]["418"] == 0
    log = stop(rig)
    assert summary(log)["breaker"]["opened"] >= 1, "the breaker never opened"
    assert rig.open_orders() == []


@pytest.mark.timeout(60)
def test_sigkill_dead_man_cancels_and_restart_reconciles_clean(rig):
    rig.start_executor("--set", "executor.deadman_countdown_ms=1000", "--set", "executor.deadman_refresh_ms=200")
    rig.target(bids=[(rig.ticks(BID), rig.lots("0.010"))], asks=[(rig.ticks("50009.0"), rig.lots("0.010"))])
    wait_for(lambda: len(rig.open_orders()) == 2, 10, "two resting orders", [rig.executor])
    wait_for(lambda: rig.venue_state()["countdowns"], 5, "dead-man switch armed")
    rig.executor.send_signal(signal.SIGKILL)
    rig.executor.wait(timeout=10)
    t0 = time.monotonic()
    wait_for(lambda: rig.open_orders() == [], 10, "the venue's countdown cancels everything")
    assert time.monotonic() - t0 < 5
    first = len(rig.executor_logs)
    rig.start_executor("--set", "executor.deadman_countdown_ms=1000", "--set", "executor.deadman_refresh_ms=200")
    log = rig.executor_logs[first].read_text()
    rec = next(json.loads(line) for line in log.splitlines() if '"start-up reconciliation"' in line)
    assert rec["unknown_canceled"] == [] and rec["ok"]
    # and it trades again (the orders ring was taken over from the killed writer)
    wait_for(lambda: len(rig.open_orders()) == 2, 10, "quotes again after restart", [rig.executor])
    stop(rig)
    assert rig.open_orders() == []


@pytest.mark.timeout(60)
def test_halt_and_flatten_from_control(rig):
    rig.start_executor()
    quote_bid(rig, "0.030")
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
    rig.trade(BID, "0.025", "SELL")                 # long 25 lots, 5 still resting
    wait_for(lambda: rig.counters().get("position_lots") == 25, 10, "long 25 lots", [rig.executor])
    rig.target(bids=[(rig.ticks(BID), rig.lots("0.030"))], asks=[(rig.ticks("50009.0"), rig.lots("0.010"))])
    wait_for(lambda: len(rig.open_orders()) == 2, 10, "bid and ask resting", [rig.executor])
    rig.set_control(Mode.HALT)
    wait_for(lambda: rig.open_orders() == [], 10, "HALT: cancel-all at the venue", [rig.executor])
    assert rig.venue_position() == 25                # HALT does not trade
    # FLATTEN: reduce-only market sells of at most max_order_qty (10 lots) until flat
    rig.set_control(Mode.FLATTEN, max_order_qty=10)
    rig.depth(bid="50000.0", ask="50010.0", qty="1")
    wait_for(lambda: rig.venue_position() == 0, 15, "flat", [rig.executor])
    wait_for(lambda: rig.ring_position() == 0 and rig.counters().get("position_lots") == 0, 5, "ring flat")
    sells = [e for e in rig.ring_events(K.NEW_SENT) if int(e["flags"]) & 2]
    assert [int(e["qty"]) for e in sells] == [10, 10, 5]
    assert rig.open_orders() == []
    stop(rig)
