"""A place whose frame never reached the venue (the connection dropped under it).

The venue answers every cancel and query of it with "unknown order". It must end
REJECTED once its request can no longer execute (recvWindow + 1 s after the place), also
when a cancel of ours is in flight at that moment, and not before.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.diff import Cancel
from mmshm.execution.session import ExecutionSession, SessionConfig
from mmshm.instruments import InstrumentSpec
from mmshm.records import OrderStatus as S, Side
from mmshm.venues.binance_usdm.trading import ExchangeEnv, InstrumentIndex, UnknownOrder

pytestmark = pytest.mark.timeout(30)
GRACE_NS = (5000 + 1000) * 1_000_000


class LostVenue:
    """Knows no order at all (the place was lost on the wire)."""

    def __init__(self) -> None:
        self.ws = SimpleNamespace(connected=True)
        self.rest = SimpleNamespace(recv_window_ms=5000)

    async def query(self, symbol, client_id=None, venue_order_id=None):
        raise UnknownOrder(-2013, "Order does not exist.")

    def cancel_now(self, symbol, client_id=None, venue_order_id=None):
        raise UnknownOrder(-2011, "Unknown order sent.")


def session_with_lost_place() -> tuple[ExecutionSession, str]:
    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001")
    s = ExecutionSession(LostVenue(), InstrumentIndex([spec]), ClientIdGenerator("lp"), lambda r: True,
                         mode=ExchangeEnv.PAPER, config=SessionConfig(deadman=False))
    s.working.new_sent(client_id="lp1", cid_num=1, instrument=0, side=Side.BUY, price=500_000, qty=10)
    return s, "lp1"


def test_query_settles_it_only_after_the_grace_also_with_a_cancel_in_flight():
    s, cid = session_with_lost_place()
    o = s.working.get(cid)
    s.working.cancel_sent(cid)                      # a cancel of ours is out
    assert o.status == S.PENDING_CANCEL and o.unacknowledged
    asyncio.run(s._query(cid, 0))
    assert o.status == S.PENDING_CANCEL             # within the grace: it may still arrive
    o.placed_mono -= GRACE_NS + 1
    asyncio.run(s._query(cid, 0))
    assert o.status == S.REJECTED and not s.working.live_orders()


def test_a_refused_cancel_settles_it_after_the_grace():
    s, cid = session_with_lost_place()
    o = s.working.get(cid)
    assert s._cancel_now(Cancel(cid, 0, Side.BUY)) is None      # refused at once: unknown order
    assert o.status == S.PENDING_NEW                            # restored, still within the grace
    o.placed_mono -= GRACE_NS + 1
    assert s._cancel_now(Cancel(cid, 0, Side.BUY)) is None
    assert o.status == S.REJECTED
