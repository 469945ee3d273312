"""The executor PROCESS (procs/executor.py) against the simulated venue process.

The test plays feed (instruments), quoter (targets), risk (control) and the orders ring's
required readers (tests/e2e/executor_harness.py). Real sockets, real processes.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from executor_harness import wait_for  # noqa: E402

from mmshm.records import Mode, OrderEventKind as K  # noqa: E402


@pytest.mark.timeout(60)
def test_starts_quotes_and_cancels_all_on_sigterm(rig):
    rig.start_executor()
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))], asks=[(rig.ticks("50020.0"), rig.lots("0.020"))])
    wait_for(lambda: len(rig.open_orders()) == 2, 10, "two resting orders", [rig.executor])
    c = wait_for(lambda: (c := rig.counters())["acks"] == 2 and c, 10, "acks counted", [rig.executor])
    assert c["orders_sent"] == 2 and c["ring_full"] == 0 and c["rejects"] == 0
    rig.executor.send_signal(signal.SIGTERM)
    assert rig.executor.wait(timeout=15) == 0
    assert rig.open_orders() == []
    kinds = [int(e["kind"]) for e in rig.ring_events()]
    assert kinds.count(K.NEW_SENT) == 2 and kinds.count(K.CANCELED) == 2


@pytest.mark.timeout(60)
def test_no_control_means_no_orders_then_halt_cancels(rig):
    rig.set_control(Mode.NORMAL, beat=False)        # risk stops refreshing: control goes stale
    rig.start_executor()
    wait_for(lambda: rig.counters().get("mode") == Mode.HALT, 10, "HALT on stale control", [rig.executor])
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))])
    import time
    time.sleep(0.3)
    assert rig.open_orders() == [] and rig.counters()["orders_sent"] == 0
    rig.set_control(Mode.NORMAL, beat=True)
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "order once control is fresh", [rig.executor])
    rig.set_control(Mode.HALT)
    wait_for(lambda: rig.open_orders() == [], 10, "cancel-all on HALT", [rig.executor])
    assert rig.counters()["cancel_all"] >= 2           # start-up + HALT


@pytest.mark.timeout(60)
def test_watchdog_halt_and_sigusr1_cancel_all(rig):
    import numpy as np
    from mmshm.agent.proctable import VerdictTable
    from mmshm.records import VERDICT_ROW

    rig.start_executor()
    verdicts = VerdictTable.open_writer(rig.instance, rows=4)
    try:
        rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))])
        wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
        head = np.zeros(1, VERDICT_ROW)[0]
        head["halt"], head["reason"] = 1, b"quoter hung"
        verdicts.write(0, head)
        wait_for(lambda: rig.open_orders() == [] and rig.counters()["mode"] == Mode.HALT, 10,
                 "watchdog HALT cancels all", [rig.executor])
        head["halt"] = 0
        verdicts.write(0, head)
        wait_for(lambda: len(rig.open_orders()) == 1, 10, "quoting again once the HALT is cleared", [rig.executor])
        rig.executor.send_signal(signal.SIGUSR1)
        wait_for(lambda: rig.open_orders() == [] and rig.counters()["mode"] == Mode.HALT, 10,
                 "SIGUSR1 halt cancels all", [rig.executor])
        rig.target(bids=[(rig.ticks("49991.0"), rig.lots("0.010"))])
        import time
        time.sleep(0.5)
        assert rig.open_orders() == []                      # latched: nothing new
        from mmshm.records import CommandKind
        from mmshm.supervisor.commands import send_command
        send_command(rig.instance, CommandKind.RESUME, "test")   # `mmshm resume` lifts the latch
        wait_for(lambda: [float(o["price"]) for o in rig.open_orders()] == [49991.0], 10,
                 "quoting after RESUME", [rig.executor])
        rig.executor.send_signal(signal.SIGTERM)
        assert rig.executor.wait(timeout=15) == 0
    finally:
        verdicts.close()


@pytest.mark.timeout(60)
def test_full_orders_ring_defers_requests_nothing_unrecorded(rig):
    """Readers stop: the executor sends nothing once the ring cannot take the events."""
    import time
    rig.start_executor("--set", "segments.orders_capacity=64")   # 16 free slots are required per batch
    rig.target(bids=[(rig.ticks("49990.0"), rig.lots("0.010"))])
    wait_for(lambda: len(rig.open_orders()) == 1, 10, "bid resting", [rig.executor])
    rig.readers_paused.set()
    time.sleep(0.1)
    for k in range(60):                                 # each change: AMEND_SENT + AMENDED
        rig.target(bids=[(rig.ticks(f"{49990.0 - (k % 2) - 1:.1f}"), rig.lots("0.010"))])
        time.sleep(0.03)
    sent = rig.counters()["amends"]
    assert 0 < sent <= 26                               # (64 - 16 - 2 start-up events) / 2 events each
    time.sleep(0.3)
    assert rig.counters()["amends"] == sent and rig.counters()["ring_full"] == 0
    rig.readers_paused.clear()                          # readers catch up: the latest target goes out
    wait_for(lambda: [float(o["price"]) for o in rig.open_orders()] == [49988.0], 10, "latest target after drain",
             [rig.executor])
    rig.executor.send_signal(signal.SIGTERM)
    assert rig.executor.wait(timeout=15) == 0
    s = [l for l in rig.executor_log().splitlines() if '"executor summary"' in l]
    assert '"deferred":0,' not in s[-1], (sent, s[-1])


@pytest.mark.timeout(60)
def test_shadow_mode_sends_nothing_to_the_venue(rig):
    """mode=shadow: orders live in the local ShadowVenue fed from the book table."""
    import numpy as np
    from mmshm.records import BOOK_ROW
    from mmshm.shm import SeqlockTable

    book = SeqlockTable.create(rig.instance, "book", BOOK_ROW, 1)
    try:
        b = np.zeros(1, BOOK_ROW)
        b[0]["n_bids"] = b[0]["n_asks"] = 1
        b[0]["bid_px"][0], b[0]["ask_px"][0] = rig.ticks("50000.0"), rig.ticks("50010.0")
        b[0]["bid_qty"][0] = b[0]["ask_qty"][0] = rig.lots("1.000")
        book.write(0, b)
        rig.start_executor("--set", "mode=shadow")
        rig.target(bids=[(rig.ticks("50005.0"), rig.lots("0.010"))])
        wait_for(lambda: rig.counters().get("acks") == 1, 10, "shadow ack", [rig.executor])
        assert rig.open_orders() == [] and rig.stats()["exchange"].get("orders", 0) == 0
        rig.executor.send_signal(signal.SIGTERM)
        assert rig.executor.wait(timeout=15) == 0
        assert [int(e["kind"]) for e in rig.ring_events()].count(K.CANCELED) == 1
    finally:
        book.close()


@pytest.mark.timeout(60)
def test_shadow_mode_fills_our_queue_from_public_trades(rig):
    """mode=shadow: a public trade on the md ring at our price (after the displayed size
    ahead of us) fills our shadow order; the venue still sees nothing."""
    import numpy as np
    from mmshm.records import BOOK_ROW, MARKET_EVENT, MdKind, Side
    from mmshm.shm import BroadcastWriter, SeqlockTable

    book = SeqlockTable.create(rig.instance, "book", BOOK_ROW, 1)
    md = BroadcastWriter.create(rig.instance, "md", MARKET_EVENT, capacity=1 << 10)
    try:
        b = np.zeros(1, BOOK_ROW)
        b[0]["n_bids"] = b[0]["n_asks"] = 1
        b[0]["bid_px"][0], b[0]["ask_px"][0] = rig.ticks("50000.0"), rig.ticks("50010.0")
        b[0]["bid_qty"][0], b[0]["ask_qty"][0] = rig.lots("0.004"), rig.lots("1.000")
        book.write(0, b)
        rig.start_executor("--set", "mode=shadow")
        rig.target(bids=[(rig.ticks("50000.0"), rig.lots("0.010"))])    # joins behind 0.004 displayed
        wait_for(lambda: rig.counters().get("acks") == 1, 10, "shadow ack", [rig.executor])

        def trade(qty: str) -> None:
            t = np.zeros(1, MARKET_EVENT)
            t[0]["kind"], t[0]["side"], t[0]["instrument"] = MdKind.TRADE, Side.SELL, 0
            t[0]["trade_px"], t[0]["trade_qty"] = rig.ticks("50000.0"), rig.lots(qty)
            md.publish(t[0])

        trade("0.004")                      # only the queue ahead of us
        trade("0.006")                      # 0.006 of our 0.010
        wait_for(lambda: len(rig.ring_events(K.FILL)) == 1, 10, "a partial shadow fill", [rig.executor])
        (fill,) = rig.ring_events(K.FILL)
        assert int(fill["fill_qty"]) == rig.lots("0.006") and int(fill["side"]) == Side.BUY
        assert rig.open_orders() == [] and rig.stats()["exchange"].get("orders", 0) == 0
        rig.executor.send_signal(signal.SIGTERM)
        assert rig.executor.wait(timeout=15) == 0
    finally:
        md.unlink()
        md.close()
        book.close()
