"""ApplyDispatcher (mmshm/execution/dispatch.py): one apply per instrument, latest row wins,
instruments concurrent, halt drain (await, then cancel), errors counted."""
from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from mmshm.execution.dispatch import ApplyDispatcher

pytestmark = pytest.mark.timeout(20)


class SlowVenue:
    """``apply`` that 'sends' at once and waits for the test to release each answer."""

    def __init__(self) -> None:
        self.log: list[tuple] = []            # ("send"|"answer", inst, item, follow_up)
        self.gates: dict[tuple[int, object], asyncio.Future] = {}
        self.active: dict[int, int] = {}
        self.max_active_per_inst = 0

    async def apply(self, inst: int, item: object, follow_up: bool) -> None:
        self.active[inst] = self.active.get(inst, 0) + 1
        self.max_active_per_inst = max(self.max_active_per_inst, self.active[inst])
        try:
            self.log.append(("send", inst, item, follow_up))
            fut = asyncio.get_running_loop().create_future()
            self.gates[(inst, item)] = fut
            await fut
            self.log.append(("answer", inst, item, follow_up))
        finally:
            self.active[inst] -= 1

    def release(self, inst: int, item: object) -> None:
        self.gates[(inst, item)].set_result(None)

    def sends(self, inst: int | None = None) -> list:
        return [e[2] for e in self.log if e[0] == "send" and (inst is None or e[1] == inst)]


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_other_instrument_goes_out_while_one_waits_and_latest_row_follows_the_answer():
    async def main():
        v = SlowVenue()
        d = ApplyDispatcher(3, v.apply)
        assert d.submit(0, "a1") is True
        await turns()
        assert v.sends() == ["a1"] and d.busy(0)
        # instrument 1: sent without waiting for instrument 0's answer
        assert d.submit(1, "b1") is True
        await turns()
        assert v.sends() == ["a1", "b1"]
        # instrument 0 again, twice, while a1 is in flight: only the latest waits
        assert d.submit(0, "a2") is False and d.submit(0, "a3") is False
        assert d.waiting(0) == "a3"
        await turns()
        assert v.sends(0) == ["a1"]
        v.release(0, "a1")
        await turns()
        assert v.sends(0) == ["a1", "a3"]                 # right after the answer; a2 never
        assert ("send", 0, "a3", True) in v.log
        log = v.log
        assert log.index(("answer", 0, "a1", False)) < log.index(("send", 0, "a3", True))
        v.release(0, "a3")
        v.release(1, "b1")
        await turns()
        assert not d.in_flight() and v.max_active_per_inst == 1
        assert d.counters["started"] == 2 and d.counters["applied"] == 3
        assert d.counters["coalesced"] == 2 and d.counters["replaced"] == 1
        # idle instrument: the next row starts a task again
        assert d.submit(0, "a4") is True
        await turns()
        v.release(0, "a4")
        await turns()
        assert not d.busy(0)

    asyncio.run(main())


def test_block_drops_waiting_rows_and_refuses_new_ones_until_unblocked():
    async def main():
        v = SlowVenue()
        d = ApplyDispatcher(2, v.apply)
        d.submit(0, "a1")
        await turns()
        d.submit(0, "a2")
        assert d.block([0]) == 1 and d.waiting(0) is None
        assert d.submit(0, "a3") is False and d.waiting(0) is None
        v.release(0, "a1")
        await turns()
        assert v.sends(0) == ["a1"] and not d.busy(0)   # nothing followed the answer
        d.unblock(0)
        assert d.submit(0, "a4") is True
        await turns()
        assert v.sends(0) == ["a1", "a4"]
        assert d.counters["dropped"] == 2
        v.release(0, "a4")
        await turns()

    asyncio.run(main())


def test_drain_awaits_the_in_flight_apply_before_returning():
    async def main():
        v = SlowVenue()
        d = ApplyDispatcher(2, v.apply)
        d.submit(0, "a1")
        d.submit(1, "b1")
        await turns()
        d.submit(0, "a2")
        drain = asyncio.ensure_future(d.drain([0], timeout_s=10))
        await turns()
        assert not drain.done() and d.blocked(0) and not d.blocked(1)
        asyncio.get_running_loop().call_later(0.05, v.release, 0, "a1")
        rep = await drain
        assert rep.finished == [0] and rep.cancelled == [] and rep.dropped == 1 and rep.clean
        assert v.log[-1] == ("answer", 0, "a1", False)  # the answer came in before drain returned
        assert v.sends(0) == ["a1"] and d.busy(1)        # instrument 1 untouched
        v.release(1, "b1")
        await turns()

    asyncio.run(main())


def test_drain_cancels_what_is_still_running_at_the_deadline():
    async def main():
        v = SlowVenue()
        d = ApplyDispatcher(1, v.apply)
        d.submit(0, "a1")
        await turns()
        rep = await d.drain([0], timeout_s=0.05)
        assert rep.cancelled == [0] and rep.finished == [] and not rep.clean
        await turns()
        assert not d.busy(0) and d.counters["cancelled"] == 1
        assert v.gates[(0, "a1")].cancelled()            # CancelledError landed at the await
        assert ("answer", 0, "a1", False) not in v.log and v.active[0] == 0
        # and nothing starts while blocked; unblocked it works again
        assert d.submit(0, "a2") is False
        d.unblock(0)
        d.submit(0, "a3")
        await turns()
        assert v.sends() == ["a1", "a3"]
        v.release(0, "a3")
        await turns()

    asyncio.run(main())


def test_a_task_cancelled_before_it_ran_frees_the_slot():
    async def main():
        v = SlowVenue()
        d = ApplyDispatcher(1, v.apply)
        d.submit(0, "a1")                               # task created, not yet run
        d._tasks[0].cancel()
        await turns()
        assert not d.busy(0) and d.counters["cancelled"] == 1 and v.sends() == []
        assert d.submit(0, "a2") is True
        await turns()
        v.release(0, "a2")
        await turns()
        assert v.sends() == ["a2"]

    asyncio.run(main())


def test_an_exception_is_logged_and_counted_and_the_next_row_still_goes(caplog):
    async def main():
        v = SlowVenue()
        calls = []

        async def apply(inst, item, follow_up):
            calls.append(item)
            if item == "bad":
                await asyncio.sleep(0)
                raise RuntimeError("diff exploded")
            await v.apply(inst, item, follow_up)

        d = ApplyDispatcher(1, apply, name="executor apply")
        d.submit(0, "bad")
        d.submit(0, "good")                             # waits behind the bad one
        await turns(10)
        assert calls == ["bad", "good"] and d.counters["errors"] == 1
        v.release(0, "good")
        await turns()
        assert not d.busy(0)

    with caplog.at_level(logging.ERROR, logger="mmshm.execution.dispatch"):
        asyncio.run(main())
    rec = [r for r in caplog.records if "executor apply failed" in r.getMessage()]
    assert len(rec) == 1 and rec[0].instrument == 0 and rec[0].exc_info is not None


def test_send_latency_is_attributed_to_each_apply_tasks_own_row():
    """ExecutorService: the session's seen->send samples go to quote_to_send / tick_to_order
    (and quote_to_seen / seen_to_send) with the quote/md times of the row the *sending* task applies, even when two
    instruments' applies interleave; the staging deque stays bounded and never stops them."""
    from mmshm.config import load_config
    from mmshm.execution import process as P

    class Hist:
        def __init__(self):
            self.samples = []

        def record(self, ns):
            self.samples.append(ns)

    svc = P.ExecutorService(load_config(env={}))
    svc._lat_quote, svc._lat_tick, svc._lat_seen, svc._lat_send = Hist(), Hist(), Hist(), Hist()
    sink = P._SendLatency(4, svc._on_send_latency)

    async def apply(seen, qm, mm, first_ns, then_ns, gate):
        P._APPLYING.set((seen, qm, mm))
        sink.append(first_ns)                  # e.g. the cancel's answer
        await gate.wait()                      # the other instrument's apply runs meanwhile
        sink.append(then_ns)                   # e.g. the place's answer

    async def main():
        g1, g2 = asyncio.Event(), asyncio.Event()
        t1 = asyncio.ensure_future(apply(1_000, 900, 800, 5, 7, g1))
        t2 = asyncio.ensure_future(apply(2_000, 1_500, 1_000, 3, 4, g2))
        await turns()
        g2.set()
        await turns()
        g1.set()
        await asyncio.gather(t1, t2)
        sink.append(99)                        # outside any apply (e.g. FLATTEN): not attributed

    asyncio.run(main())
    # quote->send = seen - quote_mono + (send - seen)
    assert svc._lat_quote.samples == [100 + 5, 500 + 3, 500 + 4, 100 + 7]
    assert svc._lat_tick.samples == [200 + 5, 1000 + 3, 1000 + 4, 200 + 7]
    # ... split into the executor's wake-up (quote -> seen) and its own path (seen -> send)
    assert svc._lat_seen.samples == [100, 500, 500, 100]
    assert svc._lat_send.samples == [5, 3, 4, 7]
    assert list(sink) == [3, 4, 7, 99] and sink.maxlen == 4

    def fill():
        P._APPLYING.set((10, 5, 0))
        for k in range(20):
            sink.append(k)                     # a full deque: the hook still sees every sample

    contextvars.copy_context().run(fill)
    assert len(sink) == 4 and svc._lat_quote.samples[4:] == [5 + k for k in range(20)]
    assert len(svc._lat_tick.samples) == 4     # md_publish_mono 0: no tick->order sample
