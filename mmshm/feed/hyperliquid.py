"""Hyperliquid market data for the feed: ``l2Book`` + ``trades`` per coin over one WebSocket.

Hyperliquid pushes full snapshots, so there is no sequence to keep: the adapter
(``mmshm.venues.hyperliquid.marketdata.HyperliquidMarketData``) turns each frame into
events, and this module publishes them (restamped with the feed-wide ``md_seq`` and
``publish_mono``) and rewrites the coin's book row when its top changed. The connection
manager sends the subscriptions on every (re)connect and the application-level ping the
venue wants; silence -> STALE, a disconnect -> DISCONNECTED until the next snapshot.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson

from mmshm.feed.base import Beat, LatencyWindow, no_op, now_ns
from mmshm.instruments import InstrumentSpec
from mmshm.records import MdKind, MdStatus
from mmshm.venues.connection import BackoffPolicy, WsConnection
from mmshm.venues.hyperliquid.constants import instrument_spec
from mmshm.venues.hyperliquid.marketdata import HyperliquidMarketData, connection_config
from mmshm.venues.hyperliquid.parsing import subscription_messages

log = logging.getLogger("mmshm.feed")


class HyperliquidFeedSource:
    """One WebSocket session for ``coins`` (see the module docstring)."""

    def __init__(self, coins: list[str], *, ws_url: str | None = None, book_depth: int = 20,
                 stale_after_s: float = 5.0, silence_reconnect_s: float | None = None,
                 backoff: BackoffPolicy | None = None, ping_interval_s: float = 20.0,
                 latency: LatencyWindow | None = None, beat: Beat | None = None) -> None:
        if not coins:
            raise ValueError("at least one coin")
        self.coins = list(coins)
        self.book_depth = book_depth
        self.latency = latency or LatencyWindow()
        self.beat_hook = beat or (lambda: None)
        self.published_hook: Beat = no_op   # after every frame (the service rings the quoter)
        self.specs: list[InstrumentSpec] = []
        self.adapters: list[HyperliquidMarketData] = []
        self._by_coin: dict[str, int] = {}
        self.md_seq = 0
        self.published = 0
        self.publish_refused = 0
        self.stale_events = 0
        self.unrouted = 0
        self._md = None
        self._table = None
        self._stopping = False
        cfg = connection_config(ws_url, name="feed-hyperliquid", silence_timeout_s=stale_after_s,
                                silence_reconnect_s=silence_reconnect_s, backoff=backoff or BackoffPolicy(),
                                ping_interval_s=ping_interval_s, ping_timeout_s=ping_interval_s)
        self.conn = WsConnection(cfg, self._on_message, on_connect=self._on_connect,
                                 on_disconnect=self._on_disconnect, on_stale=self._on_stale)

    async def prepare(self) -> list[InstrumentSpec]:
        self.specs = [instrument_spec(c) for c in self.coins]
        self.adapters = [HyperliquidMarketData(s, i, levels=max(self.book_depth, 1)) for i, s in enumerate(self.specs)]
        self._by_coin = {c: i for i, c in enumerate(self.coins)}
        return self.specs

    def bind(self, md_writer, book_table) -> None:
        self._md, self._table = md_writer, book_table

    async def run(self) -> None:
        await self.conn.run()

    async def stop(self) -> None:
        self._stopping = True
        await self.conn.stop()
        ts = now_ns()
        for i, a in enumerate(self.adapters):
            if a.status != MdStatus.DISCONNECTED:
                self._publish(i, a.disconnected(ts))

    # ------------------------------------------------------------------ callbacks
    async def _on_connect(self, conn: WsConnection) -> None:
        for coin in self.coins:
            for msg in subscription_messages(coin):
                await conn.send(msg)
        self.beat_hook()

    def _on_disconnect(self, reason: str) -> None:
        ts = now_ns()
        for i, a in enumerate(self.adapters):
            self._publish(i, a.disconnected(ts))
        if not self._stopping:
            log.warning("disconnected: %s", reason)
        self.beat_hook()

    def _on_stale(self, silence_ns: int) -> None:
        self.stale_events += 1
        ts = now_ns()
        for i, a in enumerate(self.adapters):
            self._publish(i, a.mark_stale(ts))
        log.warning("no market data for %.2f s: books STALE", silence_ns / 1e9)
        self.beat_hook()

    def _on_message(self, data: bytes, recv_ns: int) -> None:
        i = 0 if len(self.adapters) == 1 else self._route(data)
        if i >= 0:
            events = self.adapters[i].handle(data, recv_ns)
            if len(events):
                vts = int(events["venue_ts"][-1])
                if vts > 0:
                    self.latency.add(recv_ns - vts)
                self._publish(i, events)
                self.published_hook()
        self.beat_hook()

    def _route(self, data: bytes) -> int:
        try:
            msg = orjson.loads(data)
            d = msg.get("data") if isinstance(msg, dict) else None
            coin = d.get("coin") if isinstance(d, dict) else (d[0].get("coin") if isinstance(d, list) and d
                                                               and isinstance(d[0], dict) else None)
        except (orjson.JSONDecodeError, AttributeError):
            return 0          # the first adapter counts it as malformed / unknown
        if coin is None:
            return 0          # control channels (subscriptionResponse, pong)
        i = self._by_coin.get(coin)
        if i is None:
            self.unrouted += 1
            return -1
        return i

    def _publish(self, i: int, events: np.ndarray) -> None:
        n = len(events)
        if not n:
            return
        a = self.adapters[i]
        seqs = np.arange(self.md_seq + 1, self.md_seq + 1 + n, dtype=np.uint64)
        self.md_seq += n
        events["md_seq"] = seqs
        events["publish_mono"] = time.monotonic_ns()
        if self._md is not None:
            self.published += self._md.publish_batch(events)
        if self._table is not None and np.any((events["kind"] == MdKind.BOOK_TOP) | (events["kind"] == MdKind.STATUS)):
            row = a.book_row()
            r = row[0]
            r["md_seq"] = int(seqs[-1])
            r["local_ts"] = int(events["local_ts"][-1])
            r["publish_mono"] = int(events["publish_mono"][-1])
            self._table.write(i, row)

    # ------------------------------------------------------------------ reporting
    def totals(self) -> dict[str, int]:
        msgs: Counter[str] = Counter()
        for a in self.adapters:
            msgs.update(a.messages)
        return {"md_events": self.published, "md_gaps": 0, "book_resyncs": 0,
                "snapshots": sum(a.snapshots for a in self.adapters), "msg_depth": msgs["l2Book"],
                "msg_ticker": 0, "msg_trade": msgs["trades"], "reconnects": self.conn.stats.reconnects}

    def drops(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for a in self.adapters:
            out.update(a.drops)
        if self.unrouted:
            out["unrouted"] += self.unrouted
        return dict(out)

    def statuses(self) -> list[int]:
        return [int(a.status) for a in self.adapters]

    def details(self) -> dict[str, Any]:
        s = self.conn.stats
        return {"instruments": {a.spec.symbol: {"status": MdStatus(a.status).name, "messages": dict(a.messages),
                                                "drops": dict(a.drops), "snapshots": a.snapshots, "trades": a.trades,
                                                "duplicate_trades": a.duplicate_trades,
                                                "levels_dropped": a.book.truncated} for a in self.adapters},
                "connection": {"connects": s.connects, "reconnects": s.reconnects, "failures": s.failures,
                               "disconnects": s.disconnects, "stale": s.stale, "messages": s.messages}}


__all__ = ["HyperliquidFeedSource"]
