"""A deterministic, seeded market that speaks Binance USD-M's market-data wire format.

Why it exists: the system must run end to end with no network (demo, CI, backtests), and
the simulated trading venue needs a market whose book it can match against. The market
keeps an exact fixed-point L2 book and emits the *same bytes* a venue would send
(combined-stream JSON for ``@depth@0ms``, ``@bookTicker``, ``@trade``, ``@aggTrade``, plus
REST depth snapshots and exchangeInfo), so downstream code parses it through the real
Binance parser and cannot tell it apart structurally.

Model (continuous time, competing Poisson clocks, all draws from one ``random.Random``):

- Taker orders arrive at the regime's rate, buy or sell (with a regime flow bias), with a
  lognormal size; each one consumes queue at the opposite best level, walks to the next
  level when a level is exhausted (so the price moves), and prints one ``@trade`` per fill
  and one ``@aggTrade`` per price.
- Resting liquidity relaxes towards a depth profile ``top * (1 + growth * d)`` (quantity
  grows with distance ``d`` from the best): adds, partial cancels, holes that refill.
- A spread wider than one tick is closed by orders placed inside it (so the spread is one
  tick most of the time, as on BTCUSDT); whole best levels are sometimes withdrawn.
- A latent fair value follows a geometric random walk (``fair_vol_bp`` per sqrt(s)); at
  ``reprice_rate`` per second, when it has left the spread, makers pull every level it
  passed on the stale side and one joins at the fair value on the other side (so resting
  orders between the old best and the fair value are crossed, as informed flow does). This
  is what gives the mid a BTC-like volatility; the taker flow alone barely moves it.
- Regimes (calm / volatile by default) switch as a Markov chain; each regime has its own
  rates, which is what makes volatility cluster.

Update ids: every book change takes fresh ids; one event is one depth diff with
``U``..``u`` and ``pu`` = the previous diff's ``u``; a ``bookTicker`` follows any event that
changed the best bid/ask and carries ``u`` equal to that diff's ``u``. Snapshots carry
``lastUpdateId`` = the last diff's ``u``. Same seed and config -> byte-identical frames.
"""
from __future__ import annotations

import math
import random
from typing import Iterable

import orjson

from mmshm.venues.synthetic.config import SyntheticConfig, units_to_decimal

BID = 0
ASK = 1


class SyntheticBook:
    """The market's own exact book: price in ticks -> quantity in lots, per side.

    Exposed for tests and for the simulated venue's matching engine; mutate it only
    through the market (which emits the matching wire frames).
    """

    __slots__ = ("bids", "asks", "best_bid", "best_ask")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.best_bid = 0
        self.best_ask = 0

    def side(self, side: int) -> dict[int, int]:
        return self.bids if side == BID else self.asks

    def levels(self, side: int, n: int | None = None) -> list[tuple[int, int]]:
        """The best ``n`` levels of a side as (ticks, lots), best first."""
        book = self.side(side)
        prices = sorted(book, reverse=(side == BID))
        if n is not None:
            prices = prices[:n]
        return [(p, book[p]) for p in prices]

    def spread_ticks(self) -> int:
        return self.best_ask - self.best_bid

    def mid_ticks2(self) -> int:
        """Twice the mid price in ticks (an exact integer)."""
        return self.best_ask + self.best_bid

    def _rescan_best(self, side: int) -> None:
        """Recompute one side's best after its best level disappeared."""
        book = self.side(side)
        if side == BID:
            self.best_bid = max(book) if book else 0
        else:
            self.best_ask = min(book) if book else 0


class SyntheticMarket:
    """A seeded synthetic market for one symbol.

    ``step(dt_ns)`` advances simulated time and returns the combined-stream frames the
    venue would have pushed in that interval; ``snapshot()`` is the REST depth answer;
    ``exchange_info()`` the exchangeInfo document; ``book`` the exact book.
    """

    def __init__(self, symbol: str = "BTCUSDT", seed: int = 0, config: SyntheticConfig | None = None,
                 **overrides) -> None:
        cfg = config or SyntheticConfig()
        if symbol != cfg.symbol or overrides:
            from dataclasses import replace
            cfg = replace(cfg, symbol=symbol, **overrides)
        self.config = cfg
        self.symbol = cfg.symbol
        self.seed = seed
        self._rng = random.Random(seed)
        self._lstream = cfg.symbol.lower()
        self._depth_stream = f"{self._lstream}@depth@0ms"
        self._ticker_stream = f"{self._lstream}@bookTicker"
        self._trade_stream = f"{self._lstream}@trade"
        self._agg_stream = f"{self._lstream}@aggTrade"
        self.book = SyntheticBook()
        self._pending_extend: dict[int, dict[int, int]] = {}
        self._last_top: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.now_ns = cfg.start_ns
        self.last_update_id = cfg.first_update_id
        self._next_trade_id = cfg.first_trade_id
        self._next_agg_id = cfg.first_trade_id // 2
        self._regime_index = 0
        self._buy_prob = 0.5
        self._fair = float(cfg.start_price_ticks) + 0.5     # the seeded book's mid
        self._fair_sigma = cfg.fair_vol_bp * 1e-4            # log-return per sqrt(s)
        self.reprices = 0
        self.regime_changes = 0
        self.trades = 0
        self._seed_book()
        self._enter_regime(0)

    # ------------------------------------------------------------------ public API

    @property
    def regime(self) -> str:
        """Name of the current volatility regime."""
        return self.config.regimes[self._regime_index].name

    @property
    def streams(self) -> tuple[str, ...]:
        """The stream names this market produces (combined-stream ``stream`` values)."""
        return (self._depth_stream, self._ticker_stream, self._trade_stream, self._agg_stream)

    def step(self, dt_ns: int) -> list[bytes]:
        """Advance ``dt_ns`` of simulated time; the combined-stream frames sent meanwhile."""
        return [frame for _, frame in self.step_streams(dt_ns)]

    def step_streams(self, dt_ns: int) -> list[tuple[str, bytes]]:
        """Like :meth:`step` but each frame paired with its stream name (for routing)."""
        if dt_ns < 0:
            raise ValueError("dt_ns must be non-negative")
        out: list[tuple[str, bytes]] = []
        end = self.now_ns + dt_ns
        rng = self._rng
        while True:
            regime = self.config.regimes[self._regime_index]
            wide = self.book.spread_ticks() > 1
            switch_rate = (1.0 / regime.mean_dwell_s) if len(self.config.regimes) > 1 else 0.0
            rates = (regime.trade_rate, regime.liquidity_rate, regime.improve_rate if wide else 0.0,
                     regime.cancel_top_rate, switch_rate,
                     self.config.reprice_rate if self._fair_sigma > 0.0 else 0.0)
            total = sum(rates)
            if total <= 0.0:
                self.now_ns = end
                break
            # Competing exponential clocks; memorylessness lets the next step redraw.
            wait_ns = int(rng.expovariate(total) * 1e9) + 1
            if self.now_ns + wait_ns > end:
                self._diffuse(end - self.now_ns)
                self.now_ns = end
                break
            self._diffuse(wait_ns)
            self.now_ns += wait_ns
            pick = rng.random() * total
            if pick < rates[0]:
                self._taker(regime, out)
            elif pick < rates[0] + rates[1]:
                self._liquidity(out)
            elif pick < rates[0] + rates[1] + rates[2]:
                self._improve(out)
            elif pick < rates[0] + rates[1] + rates[2] + rates[3]:
                self._withdraw_top(out)
            elif pick < rates[0] + rates[1] + rates[2] + rates[3] + rates[4]:
                self._switch_regime()
            else:
                self._reprice(out)
        return out

    def snapshot(self, limit: int = 1000) -> bytes:
        """The REST ``GET /fapi/v1/depth`` answer for the current book (JSON bytes)."""
        ms = self.now_ns // 1_000_000
        cfg = self.config
        return orjson.dumps({
            "lastUpdateId": self.last_update_id,
            "E": ms,
            "T": ms,
            "bids": [[cfg.price_str(p), cfg.qty_str(q)] for p, q in self.book.levels(BID, limit)],
            "asks": [[cfg.price_str(p), cfg.qty_str(q)] for p, q in self.book.levels(ASK, limit)],
        })

    def exchange_info(self) -> dict:
        """A ``GET /fapi/v1/exchangeInfo`` document listing this market's symbol."""
        return exchange_info([self])

    def symbol_info(self) -> dict:
        """This symbol's entry of exchangeInfo ``symbols`` (filters carry tick/lot/notional)."""
        cfg = self.config
        lo_px = cfg.price_str(1)
        return {
            "symbol": cfg.symbol,
            "pair": cfg.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "baseAsset": cfg.base_asset,
            "quoteAsset": cfg.quote_asset,
            "marginAsset": cfg.quote_asset,
            "pricePrecision": cfg.price_decimals,
            "quantityPrecision": cfg.qty_decimals,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": lo_px, "maxPrice": "4529764",
                 "tickSize": cfg.tick_size},
                {"filterType": "LOT_SIZE", "stepSize": cfg.lot_size, "maxQty": cfg.max_qty,
                 "minQty": cfg.min_qty},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": cfg.lot_size, "maxQty": cfg.max_qty,
                 "minQty": cfg.min_qty},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": cfg.min_notional},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                           "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    # ------------------------------------------------------------------ model

    def target_qty(self, distance: int) -> float:
        """Mean resting quantity (lots) ``distance`` ticks behind the best: grows with depth."""
        cfg = self.config
        return cfg.top_qty_lots * (1.0 + cfg.depth_growth * distance)

    def _draw_qty(self, distance: int) -> int:
        return max(1, int(self.target_qty(distance) * self._rng.lognormvariate(0.0, 0.6)))

    def _seed_book(self) -> None:
        """Initial book: every tick within ``depth_levels`` of a 1-tick spread is occupied."""
        mid = self.config.start_price_ticks
        book = self.book
        book.best_bid, book.best_ask = mid, mid + 1
        for d in range(self.config.depth_levels):
            book.bids[mid - d] = self._draw_qty(d)
            book.asks[mid + 1 + d] = self._draw_qty(d)

    def _enter_regime(self, index: int) -> None:
        self._regime_index = index
        bias = self.config.regimes[index].flow_bias
        self._buy_prob = 0.5 + self._rng.uniform(-bias, bias)

    def _switch_regime(self) -> None:
        n = len(self.config.regimes)
        # Jump to a different regime, uniformly among the others.
        nxt = (self._regime_index + 1 + self._rng.randrange(n - 1)) % n
        self._enter_regime(nxt)
        self.regime_changes += 1

    def _set(self, side: int, px: int, qty: int, changes: dict[int, int]) -> None:
        """Set a level (0 removes it) and record the change for the depth diff."""
        book = self.book.side(side)
        if qty > 0:
            book[px] = qty
        else:
            book.pop(px, None)
        changes[px] = qty

    def _taker(self, regime, out: list) -> None:
        rng = self._rng
        buy = rng.random() < self._buy_prob
        size = max(1, int(rng.lognormvariate(math.log(regime.trade_size_median), regime.trade_size_sigma)))
        book = self.book
        side = ASK if buy else BID
        # A taker never empties a side: cap its size by the first few levels.
        prices = book.levels(side, 5)
        available = sum(q for _, q in prices[:-1]) if len(prices) > 1 else 0
        size = min(size, available)
        if size <= 0:
            return
        bid_changes: dict[int, int] = {}
        ask_changes: dict[int, int] = {}
        changes = ask_changes if buy else bid_changes
        fills: list[tuple[int, int, int]] = []   # (trade id, px, qty)
        per_price: list[tuple[int, int, int, int]] = []  # (px, qty, first id, last id)
        remaining = size
        for px, qty in prices:
            if remaining <= 0:
                break
            take = min(remaining, qty)
            # One taker fill per resting order: split the level's take into a few prints.
            first_id = self._next_trade_id
            left = take
            pieces = 1 + min(int(rng.expovariate(1.0)), 3)
            while left > 0:
                part = left if pieces <= 1 else max(1, min(left, int(left * rng.uniform(0.4, 0.9))))
                pieces -= 1
                fills.append((self._next_trade_id, px, part))
                self._next_trade_id += 1
                left -= part
            per_price.append((px, take, first_id, self._next_trade_id - 1))
            remaining -= take
            self._set(side, px, qty - take, changes)
        self._refresh_best(side)
        self.trades += len(fills)
        ms = self.now_ns // 1_000_000
        cfg = self.config
        maker_is_buyer = not buy
        for tid, px, qty in fills:
            out.append((self._trade_stream, self._frame(self._trade_stream, {
                "e": "trade", "E": ms, "T": ms, "s": cfg.symbol, "t": tid,
                "p": cfg.price_str(px), "q": cfg.qty_str(qty), "X": "MARKET", "m": maker_is_buyer})))
        for px, qty, first_id, last_id in per_price:
            out.append((self._agg_stream, self._frame(self._agg_stream, {
                "e": "aggTrade", "E": ms, "a": self._next_agg_id, "s": cfg.symbol,
                "p": cfg.price_str(px), "q": cfg.qty_str(qty), "f": first_id, "l": last_id,
                "T": ms, "m": maker_is_buyer})))
            self._next_agg_id += 1
        self._emit_book(bid_changes, ask_changes, out)

    def _liquidity(self, out: list) -> None:
        """Resting liquidity relaxes towards the depth profile at one random level."""
        rng = self._rng
        side = BID if rng.random() < 0.5 else ASK
        book = self.book
        best = book.best_bid if side == BID else book.best_ask
        # Most activity sits near the top: geometric distance.
        d = min(int(rng.expovariate(0.08)), self.config.depth_levels - 1)
        px = best - d if side == BID else best + d
        levels = book.side(side)
        cur = levels.get(px, 0)
        target = self.target_qty(d)
        new = int(cur + 0.35 * (target - cur) + rng.gauss(0.0, 0.25 * target))
        if d == 0 and new <= 0:
            new = max(1, int(0.1 * target))  # a top-level update never empties the best
        new = max(0, new)
        if new == cur:
            return
        changes: dict[int, int] = {}
        self._set(side, px, new, changes)
        self._trim(side, changes)
        if side == BID:
            self._emit_book(changes, {}, out)
        else:
            self._emit_book({}, changes, out)

    def _improve(self, out: list) -> None:
        """A new order inside a spread wider than one tick (never crossing)."""
        rng = self._rng
        book = self.book
        side = BID if rng.random() < 0.5 else ASK
        gap = book.spread_ticks() - 1
        # Usually a maker re-joins one tick from the other side (the spread snaps back to
        # one tick); otherwise it steps in somewhere inside the gap.
        step = gap if rng.random() < 0.6 else rng.randint(1, gap)
        px = book.best_bid + step if side == BID else book.best_ask - step
        changes: dict[int, int] = {}
        self._set(side, px, self._draw_qty(0), changes)
        self._refresh_best(side)
        self._trim(side, changes)
        if side == BID:
            self._emit_book(changes, {}, out)
        else:
            self._emit_book({}, changes, out)

    def _withdraw_top(self, out: list) -> None:
        """A market maker pulls its whole best level (the price moves without a trade)."""
        book = self.book
        side = BID if self._rng.random() < 0.5 else ASK
        levels = book.side(side)
        if len(levels) < 3:
            return
        best = book.best_bid if side == BID else book.best_ask
        changes: dict[int, int] = {}
        self._set(side, best, 0, changes)
        self._refresh_best(side)
        if side == BID:
            self._emit_book(changes, {}, out)
        else:
            self._emit_book({}, changes, out)

    def _diffuse(self, dt_ns: int) -> None:
        """Advance the latent fair value by ``dt_ns`` (geometric Brownian motion, no drift)."""
        if self._fair_sigma > 0.0 and dt_ns > 0:
            sigma = self._fair_sigma * self.config.regimes[self._regime_index].fair_vol_mult
            self._fair *= math.exp(sigma * math.sqrt(dt_ns * 1e-9) * self._rng.gauss(0.0, 1.0))

    @property
    def fair_ticks(self) -> float:
        """The latent fair value, in ticks (not published; tests and diagnostics)."""
        return self._fair

    def _reprice(self, out: list) -> None:
        """Makers move the book to the fair value once it has left the spread.

        Levels on the stale side at or through the fair value are pulled, and a maker joins
        at the fair value on the other side; own orders resting in between are crossed by
        that level (the simulated venue fills them). At most ``max_reprice_ticks`` a time.
        """
        book = self.book
        target = int(round(self._fair))
        step = self.config.max_reprice_ticks
        bid_changes: dict[int, int] = {}
        ask_changes: dict[int, int] = {}
        if target >= book.best_ask:                       # fair above the ask: price goes up
            old_best = book.best_ask
            target = min(target, book.best_ask + step - 1, max(book.asks) - 1)   # never empty a side
            for px in [p for p in book.asks if p <= target]:
                self._set(ASK, px, 0, ask_changes)
            self._refresh_best(ASK)
            self._reshape(ASK, target - old_best, ask_changes)
            for px in range(max(book.best_bid + 1, target - self.config.depth_levels + 1), target + 1):
                self._set(BID, px, self._draw_qty(target - px), bid_changes)
            self._refresh_best(BID)
            self._trim(BID, bid_changes)
        elif target <= book.best_bid:                     # fair below the bid: price goes down
            old_best = book.best_bid
            target = max(target, book.best_bid - step + 1, min(book.bids) + 1)
            for px in [p for p in book.bids if p >= target]:
                self._set(BID, px, 0, bid_changes)
            self._refresh_best(BID)
            self._reshape(BID, old_best - target, bid_changes)
            for px in range(min(book.best_ask - 1, target + self.config.depth_levels - 1), target - 1, -1):
                self._set(ASK, px, self._draw_qty(px - target), ask_changes)
            self._refresh_best(ASK)
            self._trim(ASK, ask_changes)
        else:
            return
        self.reprices += 1
        self._emit_book(bid_changes, ask_changes, out)

    def _reshape(self, side: int, moved: int, changes: dict[int, int]) -> None:
        """After the best of ``side`` moved ``moved`` ticks away: its new front levels were deep
        (thick) ones; makers re-size the first ``moved`` of them to the profile's front."""
        book = self.book
        best = book.best_bid if side == BID else book.best_ask
        levels = book.side(side)
        sign = -1 if side == BID else 1
        for d in range(min(moved, 32)):
            px = best + sign * d
            if px in levels:
                self._set(side, px, self._draw_qty(d), changes)

    def _refresh_best(self, side: int) -> None:
        self.book._rescan_best(side)
        self._extend(side)

    def _extend(self, side: int) -> None:
        """Keep the deep end of a side populated after the best moved away from it."""
        book = self.book
        levels = book.side(side)
        n = self.config.depth_levels
        if not levels:
            return
        if side == BID:
            far = book.best_bid - n + 1
            if far not in levels and min(levels) > far:
                levels[far] = self._draw_qty(n - 1)
                self._pending_extend.setdefault(BID, {})[far] = levels[far]
        else:
            far = book.best_ask + n - 1
            if far not in levels and max(levels) < far:
                levels[far] = self._draw_qty(n - 1)
                self._pending_extend.setdefault(ASK, {})[far] = levels[far]

    def _trim(self, side: int, changes: dict[int, int]) -> None:
        """Drop levels that fell more than ``depth_levels`` + 8 ticks behind the best."""
        book = self.book
        levels = book.side(side)
        n = self.config.depth_levels + 8
        if side == BID:
            cut = book.best_bid - n
            for px in [p for p in levels if p < cut]:
                self._set(BID, px, 0, changes)
        else:
            cut = book.best_ask + n
            for px in [p for p in levels if p > cut]:
                self._set(ASK, px, 0, changes)

    # ------------------------------------------------------------------ wire

    def _frame(self, stream: str, data: dict) -> bytes:
        return orjson.dumps({"stream": stream, "data": data})

    def _emit_book(self, bid_changes: dict[int, int], ask_changes: dict[int, int], out: list) -> None:
        """One depth diff for this event, then a bookTicker if the top changed."""
        pending = self._pending_extend
        if pending:
            for px, q in pending.get(BID, {}).items():
                bid_changes.setdefault(px, q)
            for px, q in pending.get(ASK, {}).items():
                ask_changes.setdefault(px, q)
            pending.clear()
        if not bid_changes and not ask_changes:
            return
        book = self.book
        if book.best_bid >= book.best_ask:  # pragma: no cover - guarded by construction
            raise AssertionError(f"synthetic book crossed: {book.best_bid} >= {book.best_ask}")
        rng = self._rng
        stride = self.config.update_id_stride
        prev_u = self.last_update_id
        first = prev_u + rng.randint(1, stride)
        last = first + rng.randint(0, stride * (len(bid_changes) + len(ask_changes) - 1))
        self.last_update_id = last
        ms = self.now_ns // 1_000_000
        cfg = self.config
        ps, qs = cfg.price_str, cfg.qty_str
        out.append((self._depth_stream, self._frame(self._depth_stream, {
            "e": "depthUpdate", "E": ms, "T": ms, "s": cfg.symbol, "U": first, "u": last, "pu": prev_u,
            "b": [[ps(p), qs(q)] for p, q in sorted(bid_changes.items(), reverse=True)],
            "a": [[ps(p), qs(q)] for p, q in sorted(ask_changes.items())],
        })))
        top = (book.best_bid, book.bids[book.best_bid], book.best_ask, book.asks[book.best_ask])
        if top != self._last_top:
            self._last_top = top
            out.append((self._ticker_stream, self._frame(self._ticker_stream, {
                "e": "bookTicker", "u": last, "s": cfg.symbol, "b": ps(top[0]), "B": qs(top[1]),
                "a": ps(top[2]), "A": qs(top[3]), "T": ms, "E": ms})))


def exchange_info(markets: Iterable[SyntheticMarket], server_time_ms: int | None = None) -> dict:
    """A Binance USD-M ``exchangeInfo`` document for several synthetic markets."""
    markets = list(markets)
    if server_time_ms is None:
        server_time_ms = max((m.now_ns for m in markets), default=0) // 1_000_000
    quotes = sorted({m.config.quote_asset for m in markets})
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": q, "marginAvailable": True, "autoAssetExchange": "-10000"} for q in quotes],
        "symbols": [m.symbol_info() for m in markets],
    }


__all__ = ["SyntheticMarket", "SyntheticBook", "exchange_info", "BID", "ASK", "units_to_decimal"]
