"""What the stand-in server plays: a capture file or the synthetic market.

Both sources hand the server frames as ``(stream, data_bytes, combined_bytes, depth_ids)``
and answer depth-snapshot requests *consistently with what was delivered*, because a
client following Binance's procedure (buffer diffs, fetch snapshot, first diff must have
``U <= lastUpdateId <= u``) can only synchronise against a snapshot that matches the
stream it is reading. See :class:`CaptureSource` for how a single recorded snapshot is
stretched into a live-looking endpoint.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterator

import orjson

from mmshm.venues.capture import load_capture
from mmshm.venues.synthetic import SyntheticConfig, SyntheticMarket, exchange_info


@dataclass(slots=True)
class Frame:
    """One venue push, split so the server can route it and re-wrap it per client."""

    stream: str            # combined-stream name, e.g. "btcusdt@depth@0ms"
    data: bytes            # the raw ``data`` object (what ``/ws/<stream>`` clients get)
    combined: bytes        # the full ``{"stream":..,"data":..}`` frame, byte-exact
    local_ns: int          # capture receive time (pacing); simulated time for synthetic
    symbol: str = ""       # upper-case symbol for depth diffs (snapshot routing)
    first_id: int = 0      # depth diff U
    last_id: int = 0       # depth diff u (0 = not a depth diff)


def canonical_stream(name: str) -> str:
    """Stream identity for routing: every depth speed (``@depth``, ``@depth@100ms``,
    ``@depth@0ms``) maps to one key, because a source has one diff stream per symbol and
    serves it under whichever depth name the client subscribed to."""
    sym, _, kind = name.partition("@")
    if kind.startswith("depth") and not kind[5:6].isdigit():  # not depth5/10/20 (partial book)
        return f"{sym.lower()}@depth"
    return f"{sym.lower()}@{kind}"


def split_combined(raw: bytes) -> tuple[str, bytes] | None:
    """``(stream, data bytes)`` of a combined-stream frame, slicing (never re-encoding) the data."""
    prefix = b'{"stream":"'
    if not raw.startswith(prefix):
        return None
    end = raw.find(b'"', len(prefix))
    if end < 0 or not raw.startswith(b',"data":', end + 1) or not raw.endswith(b"}"):
        return None
    return raw[len(prefix):end].decode(), raw[end + 9:-1]


def combine(stream: str, data: bytes) -> bytes:
    """Wrap ``data`` as a combined-stream frame named ``stream``."""
    return b'{"stream":"' + stream.encode() + b'","data":' + data + b"}"


class _RefBook:
    """Server-side book of one symbol, as decimal strings (the server never prices anything).

    Used only to cut fresh snapshots that match the diffs already delivered.
    """

    def __init__(self, snapshot: dict) -> None:
        self.bids = {p: q for p, q in snapshot.get("bids", [])}
        self.asks = {p: q for p, q in snapshot.get("asks", [])}
        self.last_id = int(snapshot["lastUpdateId"])

    def apply(self, data: dict) -> None:
        for side, key in ((self.bids, "b"), (self.asks, "a")):
            for p, q in data.get(key, ()):
                if _is_zero(q):
                    side.pop(p, None)
                else:
                    side[p] = q
        self.last_id = int(data["u"])

    def snapshot(self, limit: int, ms: int) -> bytes:
        bids = sorted(self.bids.items(), key=lambda kv: float(kv[0]), reverse=True)[:limit]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:limit]
        return orjson.dumps({"lastUpdateId": self.last_id, "E": ms, "T": ms,
                             "bids": [list(kv) for kv in bids], "asks": [list(kv) for kv in asks]})


def _is_zero(q: str) -> bool:
    return q.strip("0.") == ""


class CaptureSource:
    """A capture file (line format ``<local ns> <raw JSON>``) played as a live venue.

    The file has stream frames and (usually) one REST snapshot line. Snapshot requests are
    answered so that a client can always synchronise:

    - until the *bridging* diff (the first diff with ``U <= lastUpdateId <= u``) has been
      delivered, the recorded snapshot line is returned verbatim: a client subscribed from
      the start will still receive that diff, exactly as the recording client did;
    - afterwards the server cuts a fresh snapshot from its own book (the recorded snapshot
      plus every diff played since), stamped with the ``u`` of the diff about to be sent.
    """

    kind = "capture"

    def __init__(self, path: str | os.PathLike, *, speed: float | None = None) -> None:
        """``speed`` None plays as fast as the clients read; 1.0 at recorded pace, 2.0 twice as fast."""
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0")
        self.path = str(path)
        self.speed = speed
        stamps, raws = load_capture(path)
        self.frames: list[Frame] = []
        self.snapshots: list[tuple[int, bytes, dict]] = []   # (frame index it precedes, raw, parsed)
        self.bad_lines = 0
        symbols: set[str] = set()
        for ns, raw in zip(stamps, raws):
            if raw.startswith(b'{"lastUpdateId"'):
                try:
                    self.snapshots.append((len(self.frames), raw, orjson.loads(raw)))
                except orjson.JSONDecodeError:
                    self.bad_lines += 1
                continue
            parts = split_combined(raw)
            if parts is None:
                self.bad_lines += 1
                continue
            stream, data = parts
            sym = stream.partition("@")[0].upper()
            symbols.add(sym)
            frame = Frame(stream, data, raw, ns)
            if canonical_stream(stream).endswith("@depth"):
                try:
                    d = orjson.loads(data)
                    frame.symbol, frame.first_id, frame.last_id = sym, int(d["U"]), int(d["u"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.bad_lines += 1
                    continue
            self.frames.append(frame)
        self.symbols = sorted(symbols)
        # The snapshot's symbol and bridge: the first later diff with U <= L <= u.
        self.snapshot_symbol: str | None = None
        self.snapshot_raw: bytes | None = None
        self.bridge_index: int | None = None
        self._ref: _RefBook | None = None
        if self.snapshots:
            at, raw, snap = self.snapshots[0]
            L = int(snap["lastUpdateId"])
            for i, f in enumerate(self.frames):
                if f.last_id and f.first_id <= L <= f.last_id:
                    self.snapshot_symbol, self.bridge_index = f.symbol, i
                    break
            self.snapshot_raw = raw
            self._snapshot_doc = snap

    def __len__(self) -> int:
        return len(self.frames)

    def depth_symbols(self) -> list[str]:
        return sorted({f.symbol for f in self.frames if f.last_id})

    def on_played(self, index: int) -> None:
        """Track the server-side book as frame ``index`` is played (before delivery)."""
        if self.bridge_index is None or index < self.bridge_index:
            return
        f = self.frames[index]
        if not f.last_id or f.symbol != self.snapshot_symbol:
            return
        if self._ref is None:
            self._ref = _RefBook(self._snapshot_doc)
        self._ref.apply(orjson.loads(f.data))

    def snapshot_now(self, symbol: str, limit: int, next_index: int) -> bytes | None:
        """A snapshot consistent with delivery position ``next_index`` (frames before it are
        delivered), or None when none can be cut yet for ``symbol``."""
        if symbol != self.snapshot_symbol or self.snapshot_raw is None:
            return None
        if self.bridge_index is not None and next_index <= self.bridge_index:
            return _limit_snapshot(self.snapshot_raw, self._snapshot_doc, limit)
        if self._ref is None:
            return None
        return self._ref.snapshot(limit, time.time_ns() // 1_000_000)

    def exchange_info(self) -> dict:
        """exchangeInfo for the capture's symbols (published Binance specs when known)."""
        from mmshm.venues.binance_usdm.constants import REFERENCE_SPECS

        markets = []
        for sym in self.symbols:
            spec = REFERENCE_SPECS.get(sym)
            if spec is None:
                continue
            tick, lot, min_qty, max_qty, notional, quote = spec
            cfg = SyntheticConfig(symbol=sym, base_asset=sym[: -len(quote)], quote_asset=quote,
                                  tick_size=tick, lot_size=lot, min_qty=min_qty, max_qty=max_qty,
                                  min_notional=notional, price_decimals=max(2, _decimals(tick)),
                                  qty_decimals=_decimals(lot), start_price="1" + "0" * 4)
            markets.append(_InfoOnly(cfg))
        return exchange_info(markets, server_time_ms=time.time_ns() // 1_000_000)


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


class _InfoOnly:
    """Enough of a market for :func:`exchange_info` (no simulation)."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.config = cfg
        self.symbol = cfg.symbol
        self.now_ns = 0

    def symbol_info(self) -> dict:
        return SyntheticMarket.symbol_info(self)  # type: ignore[arg-type]


def _limit_snapshot(raw: bytes, doc: dict, limit: int) -> bytes:
    if len(doc.get("bids", ())) <= limit and len(doc.get("asks", ())) <= limit:
        return raw
    cut = dict(doc)
    cut["bids"], cut["asks"] = doc["bids"][:limit], doc["asks"][:limit]
    return orjson.dumps(cut)


class SyntheticSource:
    """One or more :class:`SyntheticMarket` stepped in real time (continuous, never ends)."""

    kind = "synthetic"

    def __init__(self, symbols: list[str] | tuple[str, ...] = ("BTCUSDT",), *, seed: int = 0,
                 speed: float = 1.0, step_ms: float = 10.0, start_ns: int | None = None,
                 configs: dict[str, SyntheticConfig] | None = None) -> None:
        if speed <= 0 or step_ms <= 0:
            raise ValueError("speed and step_ms must be > 0")
        start = time.time_ns() if start_ns is None else start_ns
        self.speed = speed
        self.step_ms = step_ms
        self.markets: dict[str, SyntheticMarket] = {}
        for i, sym in enumerate(symbols):
            cfg = (configs or {}).get(sym) or SyntheticConfig(symbol=sym, base_asset=sym.removesuffix("USDT"))
            from dataclasses import replace
            self.markets[sym] = SyntheticMarket(sym, seed=seed + i, config=replace(cfg, start_ns=start))
        self.symbols = list(self.markets)

    def step(self, dt_ns: int) -> Iterator[Frame]:
        """Advance every market ``dt_ns`` (simulated) and yield their frames."""
        for sym, m in self.markets.items():
            for stream, raw in m.step_streams(dt_ns):
                _, data = split_combined(raw)  # type: ignore[misc]
                f = Frame(stream, data, raw, m.now_ns)
                if stream.endswith("@depth@0ms"):
                    d = orjson.loads(data)
                    f.symbol, f.first_id, f.last_id = sym, d["U"], d["u"]
                yield f

    def snapshot_now(self, symbol: str, limit: int) -> bytes | None:
        m = self.markets.get(symbol)
        return None if m is None else m.snapshot(limit)

    def exchange_info(self) -> dict:
        return exchange_info(self.markets.values(), server_time_ms=time.time_ns() // 1_000_000)


__all__ = ["CaptureSource", "SyntheticSource", "Frame", "canonical_stream", "combine", "split_combined"]
