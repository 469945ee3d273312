"""The exporter's HTTP server (/metrics, /health, /ready) and its agent.

Why aiohttp in one background thread rather than prometheus-client's WSGI server: the
WSGI server handles each request in a new thread, and the collector keeps shared-memory
mappings between scrapes that must not be read from several threads at once; aiohttp
serves every request on one event loop (one reader, no thread per request), gives
/health and /ready as plain routes next to /metrics, and shuts down cleanly. The agent
runner keeps the main thread (process-table row, heartbeat, signals), so the exporter is
supervised like every other process; it sleeps between cycles and is never pinned.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Mapping, Sequence

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mmshm.agent.counters import counter_index
from mmshm.exporter import health as hc
from mmshm.exporter.collector import SharedMemoryCollector

log = logging.getLogger("mmshm.exporter")

ROLE = "exporter"


class ExporterServer:
    """Serves the collector over HTTP from a background thread; ``start()`` returns the URL."""

    def __init__(self, collector: SharedMemoryCollector, host: str = "127.0.0.1", port: int = 0, *,
                 critical: Sequence[str] = (), timeouts_s: Mapping[str, float] | None = None,
                 default_timeout_s: float = 2.0) -> None:
        self.collector = collector
        self.host = host
        self.port = port
        self.critical = tuple(critical)
        self.timeouts_s = dict(timeouts_s or {})
        self.default_timeout_s = default_timeout_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.url = ""
        self.requests = 0
        self.errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ handlers
    async def _metrics(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # never let a torn segment kill the server
            self.errors += 1
            log.exception("scrape failed")
            return web.Response(status=500, text=f"scrape failed: {exc}\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _json(self, decision: hc.Decision) -> web.Response:
        return web.Response(status=decision.status, body=orjson.dumps(decision.body),
                            content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            snap = self.collector.snapshot()
            return self._json(hc.health(snap, _has_procs(snap)))
        except Exception as exc:
            self.errors += 1
            return self._json(hc.Decision(False, {"status": f"error: {exc}"}))

    async def _ready(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            snap = self.collector.snapshot()
            mode = self.collector.global_mode()
            return self._json(hc.ready(snap, _has_procs(snap), self.critical, self.timeouts_s,
                                       self.default_timeout_s, mode))
        except Exception as exc:
            self.errors += 1
            return self._json(hc.Decision(False, {"ready": False, "reasons": [f"error: {exc}"]}))

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 10.0) -> str:
        self._thread = threading.Thread(target=self._run, name="exporter-http", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError("exporter HTTP server did not start")
        if self._start_error is not None:
            raise self._start_error
        return self.url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # bind errors etc.: reported by start()
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        host, port = sock.getsockname()[:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)


def _has_procs(snap) -> bool:
    return any(s.name == "procs" for s in snap.segments)


class ExporterAgent:
    """Owns the server's lifetime inside the agent runner and publishes its counters."""

    name = "exporter"

    def __init__(self, server: ExporterServer, announce=print) -> None:
        self.server = server
        self._announce = announce
        self._counters = None

    def bind_runner(self, runner) -> None:
        self._counters = runner.counters

    def on_start(self) -> None:
        url = self.server.start()
        # Tests and operators read the bound URL (port 0 = ephemeral) from stdout.
        self._announce(f"exporter listening on {url}", flush=True)
        log.info("exporter listening", extra={"url": url})

    def do_work(self) -> int:
        c = self._counters
        if c is not None:
            c[counter_index(ROLE, "scrapes")] = self.server.collector.scrapes
            c[counter_index(ROLE, "errors")] = self.server.errors + self.server.collector.errors
            c[counter_index(ROLE, "scrape_us")] = self.server.collector.last_scrape_ns // 1000
        return 0

    def on_close(self) -> None:
        self.server.stop()
        self.server.collector.close()
