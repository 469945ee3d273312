"""Market data of the simulated venue: a source (synthetic market, replayed capture, or
frames injected through the control API) drives the matching engine's displayed book
and is fanned out to market-stream WebSocket clients (combined `/stream?streams=` and raw
`/ws/<stream>`), with the channel's faults applied."""
from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import orjson

from mmshm._native import matching as M
from mmshm.venues.sim.conn import Conn
from mmshm.venues.sim.engine import SimExchange
from mmshm.venues.sim.faults import FaultInjector

log = logging.getLogger(__name__)


class MarketSource(Protocol):
    """Anything that yields Binance combined-stream frames as simulated time advances."""

    def step(self, dt_ns: int) -> list[bytes]: ...


class CaptureSource:
    """Replays a capture file (``<local ns> <frame>`` lines) at `speed` x real time.

    A REST depth snapshot line (``{"lastUpdateId":..}``) is applied as a snapshot; frames
    before the first snapshot still drive trades and book tickers.
    """

    def __init__(self, path: str | Path, symbols: Iterable[str], *, loop: bool = False) -> None:
        from mmshm.venues.capture import CaptureReader
        self._reader_cls = CaptureReader
        self.path = Path(path)
        self.symbols = {s.upper() for s in symbols}
        self.loop = loop
        self._it: Iterator[tuple[int, bytes]] | None = None
        self._t0: int | None = None
        self._elapsed = 0
        self._pending: tuple[int, bytes] | None = None
        self.finished = False

    def _next(self) -> tuple[int, bytes] | None:
        if self._it is None:
            self._it = iter(self._reader_cls(self.path))
        try:
            return next(self._it)
        except StopIteration:
            if not self.loop:
                self.finished = True
                return None
            self._it = iter(self._reader_cls(self.path))
            self._t0 = None
            self._elapsed = 0
            return next(self._it, None)

    def step(self, dt_ns: int) -> list[bytes]:
        self._elapsed += dt_ns
        out = []
        while True:
            item = self._pending or self._next()
            self._pending = None
            if item is None:
                return out
            ts, frame = item
            if self._t0 is None:
                self._t0 = ts
            if ts - self._t0 > self._elapsed:
                self._pending = item
                return out
            out.append(frame)


def _ticks(value: str, step: Decimal) -> int | None:
    q, r = divmod(Decimal(value), step)
    return None if r else int(q)


class MarketHub:
    """Feeds frames into the exchange and out to market-stream subscribers."""

    def __init__(self, exchange: SimExchange, faults: FaultInjector, sources: list[MarketSource] | None = None,
                 *, speed: float = 1.0, interval_s: float = 0.02) -> None:
        self.exchange = exchange
        self.faults = faults
        self.sources = list(sources or [])
        self.speed = speed
        self.interval_s = interval_s
        self.conns: set[Conn] = set()
        self.counters = {"frames": 0, "dropped_bad": 0, "sent": 0}
        self._update_ids = {s: 1 for s in exchange.symbols}
        self._trade_ids = {s: 1 for s in exchange.symbols}

    # ------------------------------------------------------------------ ingest

    def ingest(self, frame: bytes) -> None:
        """Apply one frame (combined-stream or a REST snapshot) and forward it to subscribers."""
        try:
            doc = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.counters["dropped_bad"] += 1
            return
        if not isinstance(doc, dict):
            self.counters["dropped_bad"] += 1
            return
        if "lastUpdateId" in doc and "bids" in doc:
            sym = doc.get("s") or (next(iter(self.exchange.symbols)) if len(self.exchange.symbols) == 1 else None)
            if sym:
                self._apply_snapshot(sym, doc)
            return
        stream, data = doc.get("stream"), doc.get("data")
        if not isinstance(stream, str) or not isinstance(data, dict):
            self.counters["dropped_bad"] += 1
            return
        self.counters["frames"] += 1
        try:
            self._apply(data)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            self.counters["dropped_bad"] += 1
            return
        self.broadcast(stream, data, frame)

    def _apply_snapshot(self, symbol: str, doc: dict) -> None:
        st = self.exchange.symbols.get(symbol)
        if st is None:
            return
        spec = st.spec
        bids = [(t, _ticks(q, spec.lot)) for p, q in doc["bids"] if (t := _ticks(p, spec.tick)) is not None]
        asks = [(t, _ticks(q, spec.lot)) for p, q in doc["asks"] if (t := _ticks(p, spec.tick)) is not None]
        self.exchange.on_snapshot(symbol, [(p, q) for p, q in bids if q], [(p, q) for p, q in asks if q])
        st.last_update_id = int(doc["lastUpdateId"])

    def _apply(self, data: dict) -> None:
        sym = data.get("s")
        st = self.exchange.symbols.get(sym)
        if st is None:
            return
        spec = st.spec
        ev = data.get("e")
        if ev == "depthUpdate":
            for side, key in ((M.BUY, "b"), (M.SELL, "a")):
                for p, q in data.get(key, ()):
                    px, qty = _ticks(p, spec.tick), _ticks(q, spec.lot)
                    if px is None or qty is None:
                        self.counters["dropped_bad"] += 1
                        continue
                    self.exchange.on_level(sym, side, px, qty)
            st.last_update_id = int(data.get("u", st.last_update_id))
        elif ev in ("trade", "aggTrade"):
            if data.get("X", "MARKET") not in ("MARKET",):
                return
            px, qty = _ticks(data["p"], spec.tick), _ticks(data["q"], spec.lot)
            if px is None or qty is None:
                self.counters["dropped_bad"] += 1
                return
            # m = buyer is maker: the seller was the aggressor
            self.exchange.on_trade(sym, px, qty, M.SELL if data.get("m") else M.BUY)
        elif "b" in data and "B" in data and "a" in data and "A" in data:  # bookTicker
            for side, pk, qk in ((M.BUY, "b", "B"), (M.SELL, "a", "A")):
                px, qty = _ticks(data[pk], spec.tick), _ticks(data[qk], spec.lot)
                if px is None or qty is None:
                    self.counters["dropped_bad"] += 1
                    continue
                self.exchange.on_top(sym, side, px, qty)

    # ------------------------------------------------------------------ injection (control API)

    def inject_depth(self, symbol: str, bids: list, asks: list) -> None:
        """Set displayed levels ([[price, qty], ...] as decimal strings; qty 0 removes) and publish
        the matching depthUpdate and bookTicker frames."""
        st = self.exchange.state(symbol)
        t = time.time_ns() // 1_000_000
        u0 = max(st.last_update_id, self._update_ids[st.spec.symbol])
        u = u0 + 1
        self._update_ids[st.spec.symbol] = u
        data = {"e": "depthUpdate", "E": t, "T": t, "s": st.spec.symbol, "U": u, "u": u, "pu": u0,
                "b": [[str(p), str(q)] for p, q in bids], "a": [[str(p), str(q)] for p, q in asks]}
        stream = f"{st.spec.symbol.lower()}@depth@0ms"
        self._apply(data)
        self.broadcast(stream, data, None)
        b, a = st.core.best(M.BUY), st.core.best(M.SELL)
        if b and a:
            tick = {"e": "bookTicker", "u": u, "E": t, "T": t, "s": st.spec.symbol,
                    "b": st.spec.fmt_px(b[0]), "B": st.spec.fmt_qty(b[1]),
                    "a": st.spec.fmt_px(a[0]), "A": st.spec.fmt_qty(a[1])}
            self.broadcast(f"{st.spec.symbol.lower()}@bookTicker", tick, None)

    def inject_trade(self, symbol: str, price: str, qty: str, aggressor: str) -> None:
        """A public trade (aggressor BUY lifts asks), published as a trade frame."""
        st = self.exchange.state(symbol)
        if aggressor not in ("BUY", "SELL"):
            raise ValueError("side must be BUY or SELL")
        t = time.time_ns() // 1_000_000
        tid = self._trade_ids[st.spec.symbol]
        self._trade_ids[st.spec.symbol] = tid + 1
        data = {"e": "trade", "E": t, "T": t, "s": st.spec.symbol, "t": tid, "p": str(price), "q": str(qty),
                "X": "MARKET", "m": aggressor == "SELL"}
        self._apply(data)
        self.broadcast(f"{st.spec.symbol.lower()}@trade", data, None)

    # ------------------------------------------------------------------ fan-out

    def broadcast(self, stream: str, data: dict, raw: bytes | None) -> None:
        if not self.conns:
            return
        base = _stream_base(stream)
        combined = raw
        plain = None
        for c in list(self.conns):
            name = c.match(stream, base)
            if name is None:
                continue
            if c.combined:
                if name != stream or combined is None:
                    msg = orjson.dumps({"stream": name, "data": data})
                    if name == stream:
                        combined = msg
                else:
                    msg = combined
            else:
                plain = plain or orjson.dumps(data)
                msg = plain
            c.push(msg)
            self.counters["sent"] += 1

    # ------------------------------------------------------------------ driver

    async def run(self) -> None:
        """Step every source in (scaled) real time until cancelled."""
        last = time.monotonic_ns()
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic_ns()
            dt = int((now - last) * self.speed)
            last = now
            if self.faults.in_outage() or self.faults.stalled("market"):
                continue  # the market does not advance while its data is stalled
            for src in self.sources:
                try:
                    frames = src.step(dt)
                except Exception:  # a broken source must not kill the venue
                    log.exception("market source failed")
                    continue
                for f in frames:
                    self.ingest(f)


def _stream_base(stream: str) -> str:
    """btcusdt@depth@100ms -> btcusdt@depth (speed suffixes do not change the data)."""
    parts = stream.split("@")
    return "@".join(parts[:2]).lower()
