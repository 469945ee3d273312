"""ExecutorService's per-instrument apply tasks, end to end inside one process.

The real service loop (mmshm/execution/process.py) runs on real segments (instruments,
targets, control, the orders gated ring with its two required readers drained here) and a
real ExecutionSession; only the venue is local: :class:`GatedVenue`, the ShadowVenue
matching core whose order requests are logged when they are "written" and whose answers
the test holds and releases. That makes "in flight" exact and observable:

- a target for another instrument goes out while one instrument's answer is pending;
- a target for the same instrument waits, only the newest is kept, and it goes out right
  after the answer (as an amend of the order the answer acknowledged);
- HALT while a request is in flight: the answer is awaited, then the cancel-all runs,
  and nothing is sent after it; if the answer never comes, the apply is cancelled at the
  deadline, the order stays pending, the cancel-all runs anyway and is repeated until
  the pending-timeout query has settled the order.
"""
from __future__ import annotations

import asyncio
import signal
import time
from types import SimpleNamespace

import numpy as np
import pytest

from mmshm.config import load_config
from mmshm.execution.breaker import CircuitBreaker
from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.process import ExecutorService, ServiceOptions
from mmshm.execution.session import ExecutionSession, SessionConfig
from mmshm.execution.shadow import ShadowVenue
from mmshm.instruments import InstrumentSpec, InstrumentTable
from mmshm.records import CONTROL_ROW, ORDER_EVENT, TARGET_ROW, Mode, OrderEventKind as K, OrderStatus as S
from mmshm.shm import GatedReader, SegmentNotFound, SeqlockTable, ShmError
from mmshm.venues.binance_usdm.trading import ExchangeEnv, OrderRequest, Side

SYMBOLS = ("BTCUSDT", "ETHUSDT")


class GatedVenue(ShadowVenue):
    """ShadowVenue whose place/modify/cancel answers wait while ``hold`` names their kind.

    ``apply_first``: the venue executes the request at once and only the answer is held
    (a frame that was written and processed, its answer late). ``deliver_late_s``: the
    venue executes it that long after it was written, whatever the caller does meanwhile
    (a frame still on its way when the caller gave up), and the answer never comes.
    Otherwise the request is held before the venue sees it. ``log`` records
    ("send"|"answer", kind, symbol, price, t_mono), ("late", kind, symbol, price, t_mono)
    and ("cancel_all_open", symbol, t_mono). ``rest.recv_window_ms`` sets the session's
    in-flight grace (recvWindow + 1 s).
    """

    def __init__(self, instruments) -> None:
        super().__init__(instruments)
        self.ws = SimpleNamespace(connected=True, connects=1, reconnect_ns=[])
        self.breaker = CircuitBreaker()
        self.log: list[tuple] = []
        self.hold: set[str] = set()
        self.apply_first = False
        self.deliver_late_s = 0.0
        self.rest = SimpleNamespace(recv_window_ms=5000)
        self._gate = asyncio.Event()
        self._gate.set()

    def close_gate(self, *kinds: str) -> None:
        self.hold = set(kinds)
        self._gate.clear()

    def open_gate(self) -> None:
        self.hold = set()
        self._gate.set()

    async def _held(self, kind: str, symbol: str, price: int, call):
        self.log.append(("send", kind, symbol, price, time.monotonic_ns()))
        if kind in self.hold and self.deliver_late_s:
            async def deliver():
                await asyncio.sleep(self.deliver_late_s)
                self.log.append(("late", kind, symbol, price, time.monotonic_ns()))
                await call()
            self._late = asyncio.ensure_future(deliver())
            await asyncio.Event().wait()                # the answer is lost
        if kind in self.hold and self.apply_first:
            res = await call()
            await self._gate.wait()
        else:
            if kind in self.hold:
                await self._gate.wait()
            res = await call()
        self.log.append(("answer", kind, symbol, price, time.monotonic_ns()))
        return res

    async def place(self, req: OrderRequest):
        return await self._held("place", req.symbol, req.price, lambda: ShadowVenue.place(self, req))

    async def modify(self, symbol: str, client_id: str, side: Side, price: int, qty: int):
        return await self._held("modify", symbol, price,
                                lambda: ShadowVenue.modify(self, symbol, client_id, side, price, qty))

    async def cancel(self, symbol: str, client_id: str | None = None, venue_order_id: int | None = None):
        return await self._held("cancel", symbol, 0,
                                lambda: ShadowVenue.cancel(self, symbol, client_id, venue_order_id))

    async def cancel_all_open(self, symbol: str) -> None:
        self.log.append(("cancel_all_open", symbol, time.monotonic_ns()))
        await super().cancel_all_open(symbol)

    def sends(self, symbol: str | None = None) -> list[tuple[str, str, int]]:
        return [(e[1], e[2], e[3]) for e in self.log if e[0] == "send" and (symbol is None or e[2] == symbol)]

    def index_of(self, pred, start: int = 0) -> int:
        return next(k for k, e in enumerate(self.log) if k >= start and pred(e))

    def halt_cancel_alls(self, after: int) -> list[int]:
        """Indexes of cancel_all_open calls after log index ``after`` (start-up's excluded)."""
        return [k for k, e in enumerate(self.log) if k > after and e[0] == "cancel_all_open"]


class Rig:
    """Segments + service + venue for one test (see the module docstring)."""

    def __init__(self, instance: str, **opts) -> None:
        self.instance = instance
        table = InstrumentTable()
        for sym in SYMBOLS:
            table.add(InstrumentSpec.from_decimals(sym, "binance-usdm", "0.1", "0.001"))
        self.instruments = table.write_segment(instance)
        self.targets = SeqlockTable.create(instance, "targets", TARGET_ROW, len(SYMBOLS))
        self.control = SeqlockTable.create(instance, "control", CONTROL_ROW, len(SYMBOLS) + 1)
        self.mode = Mode.NORMAL
        self.write_control()
        cfg = load_config(cli_overrides=[f"instance={instance}", "executor.control_stale_ms=60000",
                                         "executor.tick_interval_ms=20", "idle.hot_max_park_ns=50000"], env={})
        self.venue: GatedVenue | None = None
        self.svc = ExecutorService(cfg, options=ServiceOptions(segment_retry_s=0.01, **opts),
                                   session_factory=self._session)
        self.version = 0

    def _session(self, index, publish) -> ExecutionSession:
        self.venue = GatedVenue(index)
        scfg = SessionConfig(deadman=False, pending_timeout_ns=300_000_000, cancel_all_deadline_s=5.0)
        return ExecutionSession(self.venue, index, ClientIdGenerator("ta"), publish, mode=ExchangeEnv.PAPER,
                                config=scfg)

    def write_control(self, mode: Mode | None = None) -> None:
        if mode is not None:
            self.mode = mode
        for r in range(self.control.rows):
            row = np.zeros(1, CONTROL_ROW)[0]
            row["mode"] = int(self.mode)
            row["heartbeat_mono"] = time.monotonic_ns()
            row["limit_scale_bp"] = 10_000
            if r:
                row["max_position"], row["max_order_qty"] = 1000, 100
            self.control.write(r, row)

    def target(self, inst: int, bid_px: int, qty: int = 10) -> None:
        self.version += 1
        r = np.zeros(1, TARGET_ROW)[0]
        r["instrument"] = inst
        r["md_seq"] = self.version
        r["quote_mono"] = r["md_publish_mono"] = time.monotonic_ns()
        r["n_bids"] = 1
        r["bid_px"][0], r["bid_qty"][0] = bid_px, qty
        self.targets.write(inst, r)

    async def drain_orders_ring(self) -> None:
        """The orders ring's required readers (risk, recorder), as the harness threads do."""
        readers = None
        buf = np.zeros(256, ORDER_EVENT)
        while True:
            if readers is None:
                try:
                    readers = [GatedReader.attach(self.instance, "orders", ORDER_EVENT, reader=n, start="earliest")
                               for n in ("risk", "recorder")]
                except (SegmentNotFound, ShmError):
                    await asyncio.sleep(0.005)
                    continue
            try:
                for rd in readers:
                    rd.poll_batch(buf)
                await asyncio.sleep(0.002)
            except asyncio.CancelledError:
                for rd in readers:
                    rd.close()
                raise

    async def run(self, scenario) -> None:
        svc = self.svc
        ring = asyncio.ensure_future(self.drain_orders_ring())
        main = asyncio.ensure_future(svc.run())
        try:
            await until(lambda: svc.ready, 10, "executor ready")
            await scenario(self)
        finally:
            svc.flags.stop = True
            svc._poke()
            await asyncio.wait_for(main, 20)
            ring.cancel()
            await asyncio.gather(ring, return_exceptions=True)

    def close(self) -> None:
        for seg in (self.targets, self.control, self.instruments):
            seg.close()


async def until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def rig(instance):
    r = Rig(instance)
    yield r
    r.close()


@pytest.mark.timeout(60)
def test_other_instrument_is_sent_while_one_waits_and_the_latest_row_follows_the_answer(rig):
    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        v.close_gate("place", "modify")
        r.target(0, 500_000)
        await until(lambda: v.sends("BTCUSDT"), 5, "BTCUSDT place written")
        # a different instrument: goes out without waiting for BTCUSDT's answer
        r.target(1, 30_000)
        await until(lambda: v.sends("ETHUSDT"), 5, "ETHUSDT place written while BTCUSDT's answer is held")
        assert not [e for e in v.log if e[0] == "answer"]
        # the same instrument, twice: waits; only the newest is kept
        r.target(0, 500_010)
        await until(lambda: svc._target_version[0] == r.targets.version(0), 5, "second BTC row read")
        r.target(0, 500_020)
        await until(lambda: (w := svc.dispatch.waiting(0)) is not None and int(w[0]["bid_px"][0]) == 500_020,
                    5, "newest BTC row waiting")
        await asyncio.sleep(0.05)
        assert v.sends("BTCUSDT") == [("place", "BTCUSDT", 500_000)]
        v.open_gate()
        await until(lambda: len(v.sends("BTCUSDT")) == 2, 5, "newest BTC row applied after the answer")
        assert v.sends("BTCUSDT")[1] == ("modify", "BTCUSDT", 500_020)        # 500_010 never sent
        ans = v.index_of(lambda e: e[:3] == ("answer", "place", "BTCUSDT"))
        amend = v.index_of(lambda e: e[:3] == ("send", "modify", "BTCUSDT"))
        assert ans < amend
        await until(lambda: not svc.dispatch.in_flight(), 5, "applies done")
        live = {o.instrument: o for o in svc.session.working.live_orders()}
        assert live[0].price == 500_020 and live[0].status == S.NEW and live[1].price == 30_000
        c = svc.dispatch.counters
        assert c["coalesced"] == 2 and c["replaced"] == 1 and c["errors"] == 0
        assert svc._lat_quote is not None and svc._lat_quote.count >= 3   # every request measured

    asyncio.run(rig.run(scenario))


@pytest.mark.timeout(60)
def test_halt_waits_for_the_in_flight_answer_then_cancels_all_and_sends_nothing_more(rig):
    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        r.target(0, 500_000)
        r.target(1, 30_000)
        await until(lambda: len(svc.session.working.live_orders()) == 2
                    and all(o.status == S.NEW for o in svc.session.working.live_orders()), 5, "two resting")
        v.close_gate("modify")
        r.target(0, 500_010)
        await until(lambda: ("modify", "BTCUSDT", 500_010) in v.sends(), 5, "amend in flight")
        r.write_control(Mode.HALT)
        await until(lambda: svc.dispatch.blocked(0) and svc.dispatch.blocked(1), 5, "applies blocked")
        r.target(0, 500_030)                            # written during the HALT: never sent
        r.target(1, 30_010)
        await asyncio.sleep(0.1)
        sent = v.index_of(lambda e: e[:4] == ("send", "modify", "BTCUSDT", 500_010))
        assert not v.halt_cancel_alls(sent)             # the drain waits for the answer
        v.open_gate()
        await until(lambda: v.halt_cancel_alls(sent), 5, "halt cancel-all")
        await until(lambda: not svc._halt_cancel_pending and svc.session.counters["cancel_alls"] >= 2, 5,
                    "cancel-all done")
        sent = v.index_of(lambda e: e[:4] == ("send", "modify", "BTCUSDT", 500_010))
        first_ca = v.halt_cancel_alls(sent)[0]
        assert v.index_of(lambda e: e[:3] == ("answer", "modify", "BTCUSDT")) < first_ca
        await asyncio.sleep(0.2)
        after = [e for e in v.log[first_ca:] if e[0] == "send" and e[1] != "cancel"]
        assert after == []                              # nothing but cancels after the HALT
        assert svc.session.working.live_orders() == [] and await v.open_orders() == []
        assert svc.apply_cancelled == 0
        # HALT lifted: the latest rows go out again
        r.write_control(Mode.NORMAL)
        await until(lambda: {(o.instrument, o.price) for o in svc.session.working.live_orders()}
                    == {(0, 500_030), (1, 30_010)}, 5, "quoting again after the HALT")

    asyncio.run(rig.run(scenario))


@pytest.mark.timeout(60)
def test_an_answer_that_never_comes_is_cancelled_at_the_deadline_and_settled_by_the_cancel_all(instance):
    """The frame was processed, its answer is lost: the drain cancels the apply (the order
    stays PENDING_NEW), the cancel-all cancels it at the venue and its reconciliation
    settles it locally."""
    r = Rig(instance, halt_drain_s=0.2)

    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        v.apply_first = True
        v.close_gate("place")
        r.target(0, 500_000)
        await until(lambda: v.orders, 5, "order resting at the venue, answer held")
        o = svc.session.working.live_orders(0)[0]
        assert o.status == S.PENDING_NEW
        r.write_control(Mode.HALT)
        await until(lambda: svc.apply_cancelled == 1, 5, "apply cancelled at the drain deadline")
        await until(lambda: v.halt_cancel_alls(0)[1:], 5, "halt cancel-all")   # [0] is start-up's
        await until(lambda: svc.session.working.get(o.client_id).status == S.CANCELED, 5, "order settled")
        assert await v.open_orders() == []
        await until(lambda: not svc._halt_cancel_pending and not svc._cut, 5, "nothing left to retry")
        assert [e[:4] for e in v.log if e[0] == "send" and e[1] != "cancel"] == [("send", "place", "BTCUSDT", 500_000)]
        assert svc.dispatch.counters["cancelled"] == 1 and svc.dispatch.counters["errors"] == 0
        v.open_gate()

    try:
        asyncio.run(r.run(scenario))
    finally:
        r.close()


@pytest.mark.timeout(60)
def test_a_cancelled_request_that_lands_after_the_halt_cancel_all_is_cancelled_by_the_retry(instance):
    """The worst case of cancelling: the frame reaches the venue only after the halt's
    cancel-all. The cut order is remembered and the cancel-all repeated (every 1 s) until it
    is settled, so it cannot rest at the venue while the executor is halted."""
    r = Rig(instance, halt_drain_s=0.1)

    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        v.rest.recv_window_ms = 1000                    # in-flight grace 2 s
        v.deliver_late_s = 0.8
        v.close_gate("place")
        r.target(0, 500_000)
        await until(lambda: v.sends("BTCUSDT"), 5, "place written")
        cid = svc.session.working.live_orders(0)[0].client_id
        r.write_control(Mode.HALT)
        await until(lambda: svc.apply_cancelled == 1, 5, "apply cancelled at the drain deadline")
        await until(lambda: 0 in svc._halt_cancel_pending, 5, "first halt cancel-all done, retry due")
        first = v.halt_cancel_alls(0)[1]
        assert svc._cut.get(0) == {cid}                 # still unsettled (unknown to the venue yet)
        await until(lambda: [e for e in v.log if e[0] == "late"], 5, "late delivery")
        late = v.index_of(lambda e: e[0] == "late")
        assert late > first                             # resting at the venue after the cancel-all...
        await until(lambda: v.halt_cancel_alls(late), 5, "retried halt cancel-all")
        await until(lambda: svc.session.working.get(cid).status == S.CANCELED, 5, "...then cancelled, settled")
        assert await v.open_orders() == []
        await until(lambda: not svc._halt_cancel_pending and not svc._cut, 5, "retries ended")

    try:
        asyncio.run(r.run(scenario))
    finally:
        r.close()


@pytest.mark.timeout(60)
def test_stop_waits_for_the_in_flight_apply_before_the_final_cancel_all(rig):
    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        v.close_gate("place")
        r.target(0, 500_000)
        await until(lambda: v.sends("BTCUSDT"), 5, "place in flight")
        asyncio.get_running_loop().call_later(0.1, v.open_gate)
        # the stop below (Rig.run's finally) drains first: the answer, then the cancel-all

    asyncio.run(rig.run(scenario))
    v = rig.venue
    ans = v.index_of(lambda e: e[:3] == ("answer", "place", "BTCUSDT"))
    ca = v.halt_cancel_alls(v.index_of(lambda e: e[0] == "send"))[0]
    assert ans < ca and v.orders and all(o.status == S.CANCELED for o in v.orders.values())


@pytest.mark.timeout(60)
def test_an_apply_that_raises_is_counted_and_the_next_row_still_goes_out(rig, monkeypatch):
    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        real = svc.session.send_targets
        boom = {"n": 0}

        def flaky(row, mode=Mode.NORMAL, seen_mono=0, control=None):
            if int(row["bid_px"][0]) == 499_999:
                boom["n"] += 1
                raise RuntimeError("bug in the diff")
            return real(row, mode=mode, seen_mono=seen_mono, control=control)

        monkeypatch.setattr(svc.session, "send_targets", flaky)
        r.target(0, 499_999)
        await until(lambda: boom["n"] == 1 and svc.dispatch.counters["errors"] == 1, 5, "apply error counted")
        r.target(0, 500_000)
        await until(lambda: ("place", "BTCUSDT", 500_000) in v.sends(), 5, "next row applied")
        assert svc.apply_errors == 1 and not svc.flags.stop

    asyncio.run(rig.run(scenario))


@pytest.mark.timeout(60)
def test_executor_process_sends_the_newest_row_right_after_a_slow_answer(spawn, instance, tmp_path):
    """The real process against the real simulated venue (every answer delayed 300 ms): rows
    written while a request is unanswered are coalesced, the newest goes out as an amend
    right after the answer, the ones in between never; the loop meanwhile keeps reading."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
    from executor_harness import Rig as ProcRig, wait_for

    rig = ProcRig(spawn, instance, tmp_path)
    try:
        rig.depth()
        rig.start_executor()
        rig.faults({"latency_ms": 300})
        px = [rig.ticks(p) for p in ("49990.0", "49991.0", "49992.0", "49993.0")]
        rig.target(bids=[(px[0], rig.lots("0.010"))])
        wait_for(lambda: rig.ring_events(K.NEW_SENT), 10, "place sent", [rig.executor])
        for p in px[1:]:                                # all while the place is unanswered
            rig.target(bids=[(p, rig.lots("0.010"))])
            time.sleep(0.02)
        wait_for(lambda: [float(o["price"]) for o in rig.open_orders()] == [49993.0], 15,
                 "the newest row resting", [rig.executor])
        time.sleep(0.4)                                 # nothing else is on its way
        sent = [(int(e["kind"]), int(e["price"])) for e in rig.ring_events()
                if int(e["kind"]) in (K.NEW_SENT, K.AMEND_SENT)]
        assert sent == [(K.NEW_SENT, px[0]), (K.AMEND_SENT, px[3])]
        kinds = [int(e["kind"]) for e in rig.ring_events()]
        assert kinds.index(K.ACK) < kinds.index(K.AMEND_SENT)   # after the place's answer
        rig.clear_faults()
        rig.executor.send_signal(signal.SIGTERM)
        assert rig.executor.wait(timeout=15) == 0
        assert rig.open_orders() == []
        import json
        summary = [json.loads(line) for line in rig.executor_log().splitlines() if '"executor summary"' in line]
        applies = summary[-1]["applies"]
        # rows that waited minus rows overwritten while waiting = rows applied as follow-ups
        assert applies["coalesced"] >= 1 and applies["coalesced"] - applies["replaced"] == 1, applies
        assert applies["errors"] == 0 and applies["cancelled"] == 0, applies
    finally:
        rig.close()


@pytest.mark.timeout(60)
def test_an_unchanged_row_is_planned_again_when_its_order_was_refused(instance):
    """The venue refuses the place (a post-only that would cross, say); the quoter writes no
    new row. The executor plans the same row again (at most every replan_ns) and places
    again, instead of leaving the instrument without a quote until the next row."""
    from mmshm.venues.binance_usdm.trading import PostOnlyReject

    r = Rig(instance, replan_ns=50_000_000)

    async def scenario(r: Rig):
        v, svc = r.venue, r.svc
        real = v.place
        refused = {"n": 0}

        async def refuse_first(req):
            v.log.append(("send", "place", req.symbol, req.price, time.monotonic_ns()))
            if refused["n"] == 0:
                refused["n"] += 1
                raise PostOnlyReject(-5022, "Post Only order would be rejected", 400)
            return await real(req)

        v.place = refuse_first
        r.target(0, 500_000)
        await until(lambda: len([s for s in v.sends() if s[0] == "place"]) >= 2, 10, "the place sent again")
        assert [s for s in v.sends() if s[0] == "place"][:2] == [("place", "BTCUSDT", 500_000)] * 2
        await until(lambda: len(svc.session.working.live_orders(0)) == 1, 5, "one working bid")
        assert svc.replans >= 1 and r.version == 1          # no new row was written

    try:
        asyncio.run(r.run(scenario))
    finally:
        r.close()
