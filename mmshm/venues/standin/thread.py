"""Run a :class:`StandinServer` on its own event loop in a background thread.

For synchronous tests and tools (e.g. a test that spawns the feed process and injects
faults): every fault method is forwarded thread-safely to the server's loop.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from mmshm.venues.standin.server import StandinServer


class StandinThread:
    """``with StandinThread(source, **server_kwargs) as s:`` -> ``s.ws_url``, ``s.rest_url``,
    ``s.close_after(...)``, ``s.drop_diff()``, ``s.malformed()``, ``s.stall(...)``,
    ``s.outage(...)``, ``s.clear_faults()``, ``s.stats`` (a copy), ``s.wait_finished(timeout)``."""

    def __init__(self, source: Any, **server_kwargs: Any) -> None:
        self._source = source
        self._kwargs = server_kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: StandinServer | None = None

    def start(self, timeout: float = 10.0) -> "StandinThread":
        self._thread = threading.Thread(target=self._run, name="standin", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("stand-in server did not start")
        if self._error is not None:
            raise RuntimeError("stand-in server failed to start") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.server = await StandinServer(self._source, **self._kwargs).start()
        except BaseException as e:  # surfaced to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> "StandinThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ forwarding
    def _call(self, fn: Callable[[], Any]) -> Any:
        assert self._loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    @property
    def ws_url(self) -> str:
        assert self.server is not None
        return self.server.ws_url

    @property
    def rest_url(self) -> str:
        assert self.server is not None
        return self.server.rest_url

    @property
    def stats(self) -> dict:
        return self._call(lambda: dict(self.server.stats, position=self.server.position))

    def close_after(self, n: int, **kw: Any) -> None:
        self._call(lambda: self.server.close_after(n, **kw))

    def drop_diff(self, count: int = 1) -> None:
        self._call(lambda: self.server.drop_diff(count))

    def malformed(self, kind: str = "truncated") -> None:
        self._call(lambda: self.server.malformed(kind))

    def stall(self, seconds: float) -> None:
        self._call(lambda: self.server.stall(seconds))

    def outage(self, seconds: float | None = None) -> None:
        self._call(lambda: self.server.outage(seconds))

    def clear_faults(self) -> None:
        self._call(lambda: self.server.clear_faults())

    def wait_finished(self, timeout: float) -> bool:
        assert self._loop is not None

        async def wait() -> bool:
            try:
                await asyncio.wait_for(self.server.finished.wait(), timeout)
                return True
            except asyncio.TimeoutError:
                return False

        return asyncio.run_coroutine_threadsafe(wait(), self._loop).result(timeout + 5)
