"""The simulated venue's server: one aiohttp app on one port serving REST (`/fapi`), the
WebSocket API (`/ws-fapi/v1`), market streams (`/stream`, `/ws/<stream>`), user-data
streams (`/ws/<listenKey>`) and the control API (`/_control/...`).

Python API::

    venue = SimVenue(VenueConfig(symbols=("BTCUSDT",), market="none"))
    await venue.start()            # binds 127.0.0.1:<ephemeral>; venue.urls
    ...
    await venue.stop()

or from synchronous code ``with VenueThread(config) as venue: ...`` (own event loop).

Control API (JSON over HTTP on the same port; never rate limited or authenticated):

- ``GET /_control/state[?account=NAME]``: open orders, positions (lots, entry, realized),
  balances (FEE_SCALE units) and armed countdowns per account.
- ``POST /_control/faults`` with any of::

      {"drop": [{"channel": "market|user|wsapi", "after": N, "times": K}],
       "stall": [{"channel": "market|user|wsapi", "seconds": S}],
       "reject": {"count": N, "code": -2010, "msg": "..."},   # next N order requests
       "storm429": {"count": N, "retry_after": S},             # next N requests of any kind
       "errors5xx": {"count": N, "status": 503},
       "latency_ms": 5 | [min, max],                           # added to every REST/WS API answer
       "outage_s": S}                                           # close every socket, refuse all

  ``GET /_control/faults`` describes what is armed (and counters, drops per channel and the
  venue-side reconnect time after each drop, ms); ``DELETE`` clears what is armed.
- ``POST /_control/market/depth`` ``{"symbol", "bids": [[px, qty]], "asks": [...]}``: set
  displayed levels (qty "0" removes); publishes a depthUpdate (and bookTicker).
- ``POST /_control/market/trade`` ``{"symbol", "price", "qty", "side": aggressor}``.
- ``POST /_control/listenKey/expire[?account=NAME]``: the key lapses now (listenKeyExpired).
- ``POST /_control/ratelimit/reset``; ``GET /_control/stats`` (counters).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import WSMsgType, web

from mmshm.venues.sim import auth
from mmshm.venues.sim import errors as E
from mmshm.venues.sim.conn import Conn
from mmshm.venues.sim.engine import SimExchange
from mmshm.venues.sim.faults import FaultInjector
from mmshm.venues.sim.market import CaptureSource, MarketHub, MarketSource
from mmshm.venues.sim.ratelimit import RateLimitConfig, RateLimiter
from mmshm.venues.sim.rest import RestApi, error_response, json_response
from mmshm.venues.sim.symbols import SymbolSpec, default_spec
from mmshm.venues.sim.userdata import UserData
from mmshm.venues.sim.wsapi import WsApi

log = logging.getLogger(__name__)


@dataclass
class AccountConfig:
    name: str
    api_key: str
    api_secret: str
    balance: str = "100000"
    maker_fee_ppm: int = 200     # Binance USD-M VIP0: 0.0200 %
    taker_fee_ppm: int = 500     # Binance USD-M VIP0: 0.0500 %


@dataclass
class VenueConfig:
    """Everything `mmshm venue` and tests can set."""
    host: str = "127.0.0.1"
    port: int = 0
    symbols: tuple[str, ...] = ("BTCUSDT",)
    #: "synthetic" (mmshm.venues.synthetic), "capture" (replay `capture`), or "none"
    #: (the book only changes through /_control/market/*)
    market: str = "synthetic"
    seed: int = 0
    capture: str | None = None
    speed: float = 1.0
    accounts: list[AccountConfig] = field(default_factory=list)
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    #: "reject": a crossing post-only order gets -5022 (Binance today); "expire": it is
    #: accepted and expires at once (NEW then EXPIRED events), as Binance did before 2023.
    gtx_mode: str = "reject"
    listen_key_ttl_s: float = 3600.0
    max_open_orders: int = 200
    #: server clock offset (ms) added to the real clock, to test -1021 handling
    clock_offset_ms: int = 0

    def all_accounts(self) -> list[AccountConfig]:
        if self.accounts:
            return self.accounts
        return [AccountConfig("default", os.environ.get("MMSHM_API_KEY", auth.DEFAULT_API_KEY),
                              os.environ.get("MMSHM_API_SECRET", auth.DEFAULT_API_SECRET))]


class SimVenue:
    """The venue: exchange + wire protocols + faults, on one loopback port."""

    def __init__(self, config: VenueConfig | None = None) -> None:
        self.config = cfg = config or VenueConfig()
        self.sources: list[MarketSource] = []
        specs = self._build_sources_and_specs()
        self.exchange = SimExchange(specs, gtx_mode=cfg.gtx_mode, max_open_orders=cfg.max_open_orders,
                                    clock_ms=self.server_ms)
        for a in cfg.all_accounts():
            self.exchange.add_account(a.name, a.api_key, a.api_secret, balance=a.balance,
                                      maker_fee_ppm=a.maker_fee_ppm, taker_fee_ppm=a.taker_fee_ppm)
        self.faults = FaultInjector()
        self.ratelimiter = RateLimiter(cfg.rate_limits)
        self.userdata = UserData(cfg.listen_key_ttl_s)
        self.exchange.listeners.append(self.userdata.publish)
        self.market = MarketHub(self.exchange, self.faults, self.sources, speed=cfg.speed)
        for src in self.sources:
            snap = getattr(src, "snapshot", None)
            sym = getattr(src, "symbol", None)
            if callable(snap) and sym in self.exchange.symbols:
                self.market._apply_snapshot(sym, orjson.loads(snap()))
        self.rest = RestApi(self)
        self.wsapi = WsApi(self)
        self.conns: set[Conn] = set()
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ construction

    def _build_sources_and_specs(self) -> list[SymbolSpec]:
        cfg = self.config
        symbols = [s.upper() for s in cfg.symbols]
        if cfg.market == "synthetic":
            from mmshm.venues.synthetic.market import SyntheticMarket
            specs = []
            for i, sym in enumerate(symbols):
                # Served live: the simulated clock starts at wall time, so E/T are real
                # timestamps and venue-to-local latency is meaningful downstream.
                m = SyntheticMarket(sym, seed=cfg.seed + i, start_ns=time.time_ns())
                self.sources.append(m)
                specs.append(SymbolSpec.from_exchange_info(m.symbol_info()))
            return specs
        if cfg.market == "capture":
            if not cfg.capture:
                raise ValueError("market='capture' needs a capture file")
            self.sources.append(CaptureSource(cfg.capture, symbols))
        elif cfg.market != "none":
            raise ValueError(f"unknown market source {cfg.market!r}")
        return [default_spec(s) for s in symbols]

    def server_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.config.clock_offset_ms

    def exchange_info(self) -> dict:
        assets = sorted({st.spec.quote_asset for st in self.exchange.symbols.values()})
        return {"timezone": "UTC", "serverTime": self.server_ms(), "futuresType": "U_MARGINED",
                "rateLimits": self.config.rate_limits.exchange_info(), "exchangeFilters": [],
                "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in assets],
                "symbols": [st.spec.exchange_info_entry() for st in self.exchange.symbols.values()]}

    # ------------------------------------------------------------------ Python control API

    def inject_depth(self, symbol: str, bids: list, asks: list) -> None:
        """Set displayed levels ([[price, qty], ...] decimal strings, qty 0 removes); publishes a diff."""
        self.market.inject_depth(symbol, bids, asks)

    def inject_trade(self, symbol: str, price: str, qty: str, side: str) -> None:
        """A public trade; side is the aggressor (SELL hits bids)."""
        self.market.inject_trade(symbol, price, qty, side)

    def state(self, account: str | None = None) -> dict:
        """The venue's view of open orders, positions, balances and countdowns per account."""
        acct = next((a for a in self.exchange.accounts.values() if a.name == account), None) if account else None
        return self.exchange.snapshot_state(acct)

    @property
    def urls(self) -> dict[str, str]:
        h, p = self.config.host, self.port
        return {"rest": f"http://{h}:{p}", "ws": f"ws://{h}:{p}/ws", "stream": f"ws://{h}:{p}/stream",
                "wsapi": f"ws://{h}:{p}/ws-fapi/v1", "control": f"http://{h}:{p}/_control"}

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.add_routes(self.rest.routes())
        app.add_routes([
            web.get("/ws-fapi/v1", self.wsapi.handle),
            web.get("/stream", self._stream),
            web.get("/ws", self._stream),
            web.get("/ws/{name}", self._ws_named),
            web.get("/_control/state", self._c_state),
            web.get("/_control/faults", self._c_faults_get),
            web.post("/_control/faults", self._c_faults),
            web.delete("/_control/faults", self._c_faults_clear),
            web.post("/_control/market/depth", self._c_depth),
            web.post("/_control/market/trade", self._c_trade),
            web.post("/_control/listenKey/expire", self._c_expire_key),
            web.post("/_control/ratelimit/reset", self._c_rl_reset),
            web.get("/_control/stats", self._c_stats),
        ])
        return app

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound port
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        wall = time.time_ns()
        for src in self.sources:     # synthetic clocks = wall time from the moment they start stepping
            if hasattr(src, "step_streams") and hasattr(src, "now_ns"):
                src.now_ns = wall
        self._tasks = [loop.create_task(self.market.run()), loop.create_task(self._housekeeping())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._close_all_ws()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _close_all_ws(self) -> None:
        for c in list(self.conns) + list(self.market.conns) + self.userdata.all_conns():
            c.close()

    async def _housekeeping(self) -> None:
        """Dead-man switch (10 ms resolution), listen-key expiry, outage enforcement."""
        was_out = False
        while True:
            await asyncio.sleep(0.01)
            try:
                self.exchange.check_countdowns()
                self.userdata.expire()
                out = self.faults.in_outage()
                if out and not was_out:
                    self._close_all_ws()
                was_out = out
            except Exception:  # keep the venue alive; the failure is logged
                log.exception("housekeeping failed")

    # ------------------------------------------------------------------ streams

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        names = [s for s in request.query.get("streams", "").split("/") if s]
        return await self._market_ws(request, set(names), combined=request.path == "/stream")

    async def _ws_named(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if "@" in name:
            return await self._market_ws(request, {name}, combined=False)
        return await self._user_ws(request, name)

    async def _market_ws(self, request: web.Request, streams: set[str], combined: bool) -> web.StreamResponse:
        if self.faults.in_outage():
            self.faults.counters["refused"] += 1
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(heartbeat=180.0)
        await ws.prepare(request)
        conn = Conn(ws, "market", self.faults, streams=streams, combined=combined)
        self.market.conns.add(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    req = orjson.loads(msg.data)
                    method, params, rid = req.get("method"), req.get("params") or [], req.get("id")
                except (orjson.JSONDecodeError, AttributeError):
                    conn.push(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
                    continue
                if method == "SUBSCRIBE":
                    conn.subscribe(params)
                    conn.push(orjson.dumps({"result": None, "id": rid}))
                elif method == "UNSUBSCRIBE":
                    conn.unsubscribe(params)
                    conn.push(orjson.dumps({"result": None, "id": rid}))
                elif method == "LIST_SUBSCRIPTIONS":
                    conn.push(orjson.dumps({"result": sorted(conn.streams.values()), "id": rid}))
                else:
                    conn.push(orjson.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method}"},
                                            "id": rid}))
        finally:
            conn.close()
            self.market.conns.discard(conn)
        return ws

    async def _user_ws(self, request: web.Request, key: str) -> web.StreamResponse:
        if self.faults.in_outage():
            self.faults.counters["refused"] += 1
            raise web.HTTPServiceUnavailable()
        if key not in self.userdata.keys:
            return json_response({"code": E.INVALID_LISTEN_KEY, "msg": "This listenKey does not exist."}, 400)
        ws = web.WebSocketResponse(heartbeat=180.0)
        await ws.prepare(request)
        conn = Conn(ws, "user", self.faults)
        self.userdata.attach(key, conn)
        try:
            async for _msg in ws:
                if conn.closed:
                    break
        finally:
            conn.close()
            self.userdata.detach(key, conn)
        return ws

    # ------------------------------------------------------------------ control API

    def _acct(self, request: web.Request):
        name = request.query.get("account")
        if not name:
            return None
        for a in self.exchange.accounts.values():
            if a.name == name:
                return a
        raise web.HTTPNotFound(text=f"no account {name}")

    async def _c_state(self, request: web.Request) -> web.Response:
        return json_response(self.exchange.snapshot_state(self._acct(request)))

    async def _c_faults_get(self, request: web.Request) -> web.Response:
        return json_response(self.faults.describe())

    async def _c_faults(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json(loads=orjson.loads)
            self.faults.apply(spec)
        except (ValueError, KeyError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        if spec.get("outage_s"):
            self._close_all_ws()
        return json_response(self.faults.describe())

    async def _c_faults_clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return json_response(self.faults.describe())

    async def _c_depth(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
            self.market.inject_depth(body["symbol"], body.get("bids", []), body.get("asks", []))
        except E.VenueError as err:
            return error_response(err)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"ok": True})

    async def _c_trade(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
            self.market.inject_trade(body["symbol"], body["price"], body["qty"], body["side"])
        except E.VenueError as err:
            return error_response(err)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"ok": True})

    async def _c_expire_key(self, request: web.Request) -> web.Response:
        acct = self._acct(request)
        for a in ([acct] if acct else list(self.exchange.accounts.values())):
            self.userdata.expire_now(a)
        return json_response({"ok": True})

    async def _c_rl_reset(self, request: web.Request) -> web.Response:
        self.ratelimiter.reset()
        return json_response({"ok": True})

    async def _c_stats(self, request: web.Request) -> web.Response:
        return json_response({"exchange": self.exchange.counters, "ratelimit": self.ratelimiter.counters,
                              "market": self.market.counters, "userdata": self.userdata.counters,
                              "faults": self.faults.counters,
                              "connections": {"market": len(self.market.conns), "wsapi": len(self.conns),
                                              "user": len(self.userdata.all_conns())}})


class VenueThread:
    """Run a SimVenue on its own event loop in a daemon thread (for synchronous callers).

    Calls into the venue's objects from the caller's thread must go through :meth:`call`.
    """

    def __init__(self, config: VenueConfig | None = None) -> None:
        self.config = config or VenueConfig()
        self.venue: SimVenue | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> SimVenue:
        self.start()
        assert self.venue is not None
        return self.venue

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> SimVenue:
        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.venue = SimVenue(self.config)
                self.loop.run_until_complete(self.venue.start())
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.venue.stop())
            self.loop.close()

        self._thread = threading.Thread(target=run, name="sim-venue", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.venue is not None
        return self.venue

    def call(self, fn, *args, **kw):
        """Run fn(*args, **kw) on the venue's loop and return its result."""
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(_call(fn, *args, **kw), self.loop)
        return fut.result(10)

    def stop(self) -> None:
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


async def _call(fn, *args, **kw):
    res = fn(*args, **kw)
    if asyncio.iscoroutine(res):
        res = await res
    return res

