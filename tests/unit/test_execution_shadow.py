"""Shadow mode: the session's orders matched locally against the live book, nothing sent."""
from __future__ import annotations

import asyncio

from mmshm.execution.client_ids import ClientIdGenerator
from mmshm.execution.session import ExecutionSession, SessionConfig
from mmshm.instruments import InstrumentSpec
from mmshm.records import FEE_SCALE, OrderEventKind as K, OrderStatus as S, Side
from mmshm.venues.binance_usdm.trading import InstrumentIndex
from rows import book_row as book, target_row

BTC = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_notional="100",
                                   maker_fee_ppm=200, taker_fee_ppm=500)


def target(bids=(), asks=(), md_seq=1):
    return target_row(bids, asks, md_seq=md_seq)


def test_shadow_session_fills_from_public_trades():
    async def main():
        pub = []
        s = ExecutionSession(None, InstrumentIndex([BTC]), ClientIdGenerator(), lambda r: pub.append(r) or True,
                             mode="shadow", config=SessionConfig(deadman=False))
        await s.start()
        sh = s.shadow
        sh.on_book_row(book([(500000, 1000)], [(500100, 1000)]))
        await s.on_targets(target(bids=[(500000, 3)], asks=[(500050, 3)]))
        # a crossing post-only bid is refused like the venue would (-5022)
        await s.on_targets(target(bids=[(500000, 3), (500200, 3)], asks=[(500050, 3)], md_seq=2))
        assert any(r["kind"] == K.REJECT and r["reason"] == -5022 for r in pub)
        bid = next(o for o in s.working.live_orders(0, Side.BUY))
        # 1.000 displayed ahead of our bid; a 1.002 sell eats it and 0.002 of ours
        sh.on_trade(0, 500000, 1002, Side.SELL)
        assert s.working.get(bid.client_id).filled_qty == 2
        assert s.working.get(bid.client_id).status == S.PARTIALLY_FILLED
        assert s.working.position[0] == 2
        assert s.working.fees[0] == 2 * FEE_SCALE // 100          # 0.02 USDT maker fee
        # the book moving through the ask fills it fully at its price
        sh.on_book_row(book([(500060, 5)], [(500100, 1000)]))
        ask = next(o for o in s.working.orders.values() if o.side == Side.SELL)
        assert ask.status == S.FILLED and s.working.position[0] == -1
        rep = await s.stop()
        assert rep.ok and not s.working.live_orders()
        assert sh.counters["fills"] == 2 and sh.counters["gtx_rejects"] == 1
    asyncio.run(main())
