from __future__ import annotations

import numpy as np

from mmshm.execution.diff import MAX_BATCH, TARGET_FLAG_PULL, Amend, diff, request_count
from mmshm.execution.orders import Order
from mmshm.records import OrderStatus as S, Side
from rows import target_row


def row(bids=(), asks=(), flags=0, md_seq=9, inst=0):
    return target_row(bids, asks, flags=flags, md_seq=md_seq, instrument=inst)


def order(cid, side, px, qty, status=S.NEW, filled=0, inst=0):
    return Order(cid, 0, inst, side, px, qty, status=status, filled_qty=filled)


def test_nothing_to_do_within_tolerance():
    w = [order("b", Side.BUY, 99, 10), order("s", Side.SELL, 101, 10)]
    assert not diff(row([(100, 11)], [(101, 10)]), w, px_tol=1, qty_tol=1)


def test_amend_instead_of_cancel_new():
    w = [order("b", Side.BUY, 95, 10, status=S.PARTIALLY_FILLED, filled=4)]
    a = diff(row([(100, 5)]), w)
    assert a.amends == [Amend("b", 0, Side.BUY, 100, 9, 9)] and not a.places and not a.cancels
    b = diff(row([(100, 5)]), w, amend=False)
    assert len(b.places) == 1 and len(b.cancels) == 1
    assert request_count(a, batched=False) < request_count(b, batched=False)


def test_pending_orders_are_not_amended_and_pending_cancel_ignored():
    w = [order("p", Side.BUY, 95, 10, status=S.PENDING_NEW),
         order("c", Side.BUY, 100, 5, status=S.PENDING_CANCEL)]
    a = diff(row([(100, 5)]), w)
    assert [c.client_id for c in a.cancels] == ["p"] and len(a.places) == 1 and not a.amends


def test_pull_cancels_everything():
    w = [order("b", Side.BUY, 95, 10), order("s", Side.SELL, 105, 10), order("x", Side.SELL, 1, 1, inst=1)]
    a = diff(row([(100, 5)], [(101, 5)], flags=TARGET_FLAG_PULL), w)
    assert {c.client_id for c in a.cancels} == {"b", "s"} and not a.places


def test_batches_respect_venue_limits():
    a = diff(row([(100 - i, 1) for i in range(5)], [(200 + i, 1) for i in range(5)]), [])
    assert len(a.places) == 10
    batches = a.batches()
    assert [k for k, _ in batches] == ["place", "place"]
    assert all(len(items) <= MAX_BATCH for _, items in batches)


def test_session_from_config_modes(instance):
    """observe/shadow wire a session that can never send; paper points at the local venue."""
    import dataclasses

    from mmshm.config import default_config
    from mmshm.execution.session import ExecutionSession, session_from_config
    from mmshm.instruments import InstrumentSpec
    from mmshm.venues.binance_usdm.auth import Signer
    from mmshm.venues.binance_usdm.trading import InstrumentIndex

    idx = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")])
    cfg = default_config()
    from mmshm.execution.shadow import ShadowVenue
    s = session_from_config(dataclasses.replace(cfg, mode="observe"), idx, lambda r: True)
    assert s.trading is None and not s.mode.sends_orders
    s = session_from_config(dataclasses.replace(cfg, mode="shadow"), idx, lambda r: True)
    assert isinstance(s.trading, ShadowVenue) and not s.mode.sends_orders
    pcfg = dataclasses.replace(cfg, mode="paper", instance=instance,
                               venue=dataclasses.replace(cfg.venue, sim_port=12345))
    s = session_from_config(pcfg, idx, lambda r: True, signer=Signer("k" * 16, "s" * 16))
    assert s.trading.endpoints.rest == "http://127.0.0.1:12345"
    assert s.trading.endpoints.ws_api == "ws://127.0.0.1:12345/ws-fapi/v1"
    s.trading.budget.close()
    assert isinstance(s, ExecutionSession)


def test_observe_session_plans_but_never_sends_and_respects_risk_modes():
    import asyncio

    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import Mode
    from mmshm.venues.binance_usdm.trading import InstrumentIndex

    idx = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")])
    s = ExecutionSession(None, idx, ClientIdGenerator(), lambda r: True, mode="observe")
    acts = asyncio.run(s.on_targets(row([(100, 5)], [(101, 5)])))
    assert len(acts.places) == 2 and s.counters["would_send"] == 2 and s.working.live_orders() == []
    # risk modes on a book with one resting bid and one ask and a long position
    s.working.new_sent(client_id="b", cid_num=1, instrument=0, side=Side.BUY, price=99, qty=5)
    s.working.new_sent(client_id="a", cid_num=2, instrument=0, side=Side.SELL, price=102, qty=5)
    s.working.position[0] = 3
    halt = s.plan(row([(100, 5)], [(101, 5)]), Mode.HALT)
    assert {c.client_id for c in halt.cancels} == {"a", "b"} and not halt.places
    ro = s.plan(row([(100, 5)], [(101, 5)]), Mode.REDUCE_ONLY)
    assert all(p.side == Side.SELL for p in ro.places) and "b" in {c.client_id for c in ro.cancels}


def test_control_limits_cap_order_size_and_worst_case_position():
    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import CONTROL_ROW, Mode
    from mmshm.venues.binance_usdm.trading import InstrumentIndex

    idx = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")])
    s = ExecutionSession(None, idx, ClientIdGenerator(), lambda r: True, mode="observe")
    ctl = np.zeros(1, CONTROL_ROW)[0]
    ctl["max_order_qty"], ctl["max_position"], ctl["limit_scale_bp"] = 4, 10, 10_000
    acts = s.plan(row([(100, 6), (99, 6), (98, 6)], [(101, 6)]), Mode.NORMAL, ctl)
    assert all(p.qty <= 4 for p in acts.places)
    buys = sorted((p.price for p in acts.places if p.side == Side.BUY), reverse=True)
    assert buys == [100, 99]                      # 4 + 4 <= 10; the worst bid is dropped
    # long 8 already: only 2 more lots of bids may rest; asks are unaffected (short side)
    s.working.position[0] = 8
    s.working.new_sent(client_id="b", cid_num=1, instrument=0, side=Side.BUY, price=97, qty=3)
    acts = s.plan(row([(100, 6)], [(101, 6)]), Mode.NORMAL, ctl)
    worst_long = 8 + sum(p.qty for p in acts.places if p.side == Side.BUY) + sum(
        o.remaining for o in s.working.live_orders(0, Side.BUY) if o.client_id not in {c.client_id for c in acts.cancels})
    assert worst_long <= 10
    ctl["limit_scale_bp"] = 5_000                 # informational: the limits are already effective
    acts = s.plan(row([], [(101, 20)]), Mode.NORMAL, ctl)
    assert [p.qty for p in acts.places] == [4]    # never scaled a second time
    ctl["max_order_qty"], ctl["max_position"] = 2, 5   # risk halves the limits (re-entry at 50%)
    acts = s.plan(row([], [(101, 20)]), Mode.NORMAL, ctl)
    assert [p.qty for p in acts.places] == [2]
    ctl["max_position"] = 0                       # no limits set: no new exposure at all ...
    assert [p.qty for p in s.plan(row([], [(101, 20)]), Mode.NORMAL, ctl).places] == [2]  # ... but reducing is fine
    s.working.position[0] = 0
    assert not s.plan(row([], [(101, 20)]), Mode.NORMAL, ctl).places


def test_position_report_is_the_form_risk_adopts():
    """RECONCILE, client_id 0, side by sign, |lots|, average entry rounded to the nearest tick."""
    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import OrderEventKind
    from mmshm.venues.binance_usdm.trading import InstrumentIndex

    idx = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")])
    s = ExecutionSession(None, idx, ClientIdGenerator(), lambda r: True, mode="observe")
    short = s.position_report(0, -25, "61800.26")
    assert int(short["kind"]) == OrderEventKind.RECONCILE and int(short["client_id"]) == 0
    assert (int(short["side"]), int(short["qty"]), int(short["price"])) == (Side.SELL, 25, 618003)
    flat = s.position_report(0, 0, "0.0")
    assert (int(flat["side"]), int(flat["qty"]), int(flat["price"])) == (Side.NONE, 0, 0)
    assert int(s.position_report(0, 3, "not a number")["price"]) == 0   # risk drops it as invalid


def test_limit_clipping_never_leaves_a_no_op_amend():
    """A size amend clipped back to the order's own size is dropped (the venue answers -5027)."""
    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import CONTROL_ROW, Mode
    from mmshm.venues.binance_usdm.trading import InstrumentIndex

    idx = InstrumentIndex([InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")])
    s = ExecutionSession(None, idx, ClientIdGenerator(), lambda r: True, mode="observe")
    ctl = np.zeros(1, CONTROL_ROW)[0]
    ctl["max_order_qty"], ctl["max_position"] = 4, 100
    s.working.new_sent(client_id="b", cid_num=1, instrument=0, side=Side.BUY, price=100, qty=4)
    s.working.force_status("b", S.NEW, filled_qty=0, venue_ts=0)   # acked: amendable
    acts = s.plan(row([(100, 9)], []), Mode.NORMAL, ctl)     # wants 9, may rest 4: it already does
    assert not acts.amends and not acts.places and not acts.cancels
    acts = s.plan(row([(101, 9)], []), Mode.NORMAL, ctl)     # a price move is still an amend, clipped
    assert [(a.price, a.qty) for a in acts.amends] == [(101, 4)]
