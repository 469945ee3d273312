"""The feed process as an asyncio service: segments, process row, signals, sd_notify.

The agent runner (``mmshm.agent.runner``) drives a synchronous duty cycle; the feed is
I/O-bound on sockets, so it runs on an event loop (uvloop) instead and does the runner's
duties itself, the same way:

- process-table row ``feed``: claimed at start (STARTING), RUNNING once the segments
  exist, heartbeat after every frame (one C seqlock write) *and* from a periodic task, so
  a loop stuck anywhere stops the heartbeat and the watchdog sees a hung feed; the named
  counters (``mmshm.feed.counters``) are refreshed by the periodic task;
- signals through the loop (flags only): SIGTERM/SIGINT stop, SIGUSR1 latches HALTED and
  SIGUSR2 toggles PAUSED in the row (market data keeps flowing either way: risk and the
  quoter act on halt/pause, not the feed), SIGHUP is logged (nothing to reload);
- sd_notify: READY=1 after the first instrument is LIVE (synchronised), WATCHDOG=1 from
  the periodic task, STATUS now and then, STOPPING=1 at stop;
- segments: the feed creates ``md`` (broadcast ring), ``book`` (seqlock table, row i =
  instrument i) and ``instruments``; at stop every book publishes DISCONNECTED and the
  segments are left for readers (a restarted feed takes them over and bumps the epoch,
  so readers stay attached; ``mmshm shm clean`` removes them once nobody needs them),
  unless ``unlink_on_exit``;
- venue-to-local latency (local receive ns - venue event time): every sample goes into
  the ``venue_to_feed`` row of the shared latency histograms, and the p50/max of the last
  window into the ``lat_p50_us``/``lat_max_us`` counters.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmshm.agent.doorbell import Bells
from mmshm.agent.gcpolicy import GcPolicy
from mmshm.agent.pinning import pin_current_process
from mmshm.agent.proctable import ProcessSlot, ProcessTable
from mmshm.agent.sdnotify import SdNotifier
from mmshm.feed import counters as fc
from mmshm.feed.base import FeedSource, LatencyWindow
from mmshm.records import BOOK_ROW, MARKET_EVENT, MdStatus, ProcState

log = logging.getLogger("mmshm.feed")

#: Latency histogram stage of the venue -> feed hop (``mmshm.monitor.latency``).
LATENCY_STAGE = "venue_to_feed"
#: Venue-to-local samples beyond this are clock mismatches (see ``_publish_latency``).
MAX_PLAUSIBLE_LATENCY_NS = 60_000_000_000


@dataclass
class FeedSettings:
    """Process-level settings (venue settings live in the source)."""

    instance: str
    md_capacity: int = 1 << 16
    book_rows: int = 8
    procs_rows: int = 16
    cpu: int | None = None
    housekeeping_s: float = 0.05     # periodic heartbeat / counters / sd_notify
    latency_publish_s: float = 1.0   # latency histogram + p50/max window
    status_log_s: float = 30.0       # one INFO line with every counter
    unlink_on_exit: bool = False
    bells: bool = True               # ring the quoter's doorbell after publishing (idle.bells)


class FeedService:
    """Runs one :class:`FeedSource` as the instance's feed (see the module docstring)."""

    def __init__(self, source: FeedSource, settings: FeedSettings, *, notifier: SdNotifier | None = None,
                 latency: LatencyWindow | None = None, gc_policy: GcPolicy | None = None) -> None:
        self.source = source
        self.settings = settings
        self.notifier = notifier or SdNotifier()
        self.latency = latency or getattr(source, "latency", None) or LatencyWindow()
        self.slot: ProcessSlot | None = None
        self.md = None
        self.book = None
        self.instruments = None
        self.lat_recorder = None
        self.ready = False
        self.halted = False
        self.paused = False
        self.exit_reason = ""
        self._procs: ProcessTable | None = None
        self._stop: asyncio.Event | None = None
        self._beats = 0
        self._hb = None
        self._last_lat: tuple[int, int] = (0, 0)
        self.implausible_latency = 0
        if hasattr(source, "beat_hook"):
            source.beat_hook = self.beat     # heartbeat after every frame the source handles
        self.bells: Bells | None = None      # rung when a frame published (see _ring_readers)
        self._rung_cursor = -1
        # started once running; collects after a frame was published and rung (closed at exit)
        self.gc_policy = gc_policy

    # ------------------------------------------------------------------ heartbeat
    def beat(self) -> None:
        """Heartbeat the process row (called after every frame and by the periodic task)."""
        hb = self._hb
        if hb is not None:
            self._beats += 1
            hb(time.monotonic_ns(), self._beats, 0)

    def _ring_readers(self) -> None:
        """After a frame: ring the quoter's doorbell if the frame published into the md ring
        (a frame that changed nothing wakes nobody)."""
        cursor = self.md.cursor
        if cursor != self._rung_cursor:
            self._rung_cursor = cursor
            self.bells.ring()

    def _after_frame(self) -> None:
        """The source's hook after every frame: ring the readers, then collect garbage if
        due (the frame is out; the next one has not come)."""
        if self.bells is not None:
            self._ring_readers()
        if self.gc_policy is not None:
            self.gc_policy.collect_if_due()

    def request_stop(self, reason: str = "stop requested") -> None:
        if self._stop is not None and not self._stop.is_set():
            self.exit_reason = reason
            self._stop.set()

    # ------------------------------------------------------------------ main
    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or ``request_stop``); returns the exit code."""
        s = self.settings
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed = self._install_signals(loop)
        if s.cpu is not None:
            pin_current_process(s.cpu)
        self._procs = ProcessTable.open(s.instance, s.procs_rows)
        self.slot = self._procs.claim(fc.ROLE, cpu=-1 if s.cpu is None else s.cpu)
        self._hb = self.slot.heartbeat
        housekeeping = loop.create_task(self._housekeeping(), name="feed-housekeeping")
        runner: asyncio.Task | None = None
        code = 0
        try:
            prepare = loop.create_task(self.source.prepare())
            stop_wait = loop.create_task(self._stop.wait())
            await asyncio.wait({prepare, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if not prepare.done():
                prepare.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prepare
                return 0
            specs = prepare.result()
            if not specs:
                return 0
            self._create_segments(specs)
            self.source.bind(self.md, self.book)
            if s.bells and hasattr(self.source, "published_hook"):
                self.bells = Bells(s.instance, ("quoter",))
            if (self.bells is not None or self.gc_policy is not None) and hasattr(self.source, "published_hook"):
                self.source.published_hook = self._after_frame
            self.slot.set_state(self._state())
            log.info("feed running", extra={"instruments": [f"{sp.venue}:{sp.symbol}" for sp in specs],
                                            "instance": s.instance})
            if self.gc_policy is not None:
                self.gc_policy.start()
            runner = loop.create_task(self.source.run(), name="feed-source")
            stop_wait = loop.create_task(self._stop.wait())
            done, _ = await asyncio.wait({runner, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if runner in done:
                exc = runner.exception()
                if exc is not None:
                    raise exc
                self.exit_reason = self.exit_reason or "source ended"
        except Exception as exc:
            code = 1
            self.exit_reason = f"{type(exc).__name__}: {exc}"
            log.exception("feed failed")
        finally:
            await self._shutdown(runner, housekeeping, installed, loop)
        return code

    def _create_segments(self, specs) -> None:
        from mmshm.instruments import InstrumentTable
        from mmshm.monitor.latency import LatencyRecorder
        from mmshm.shm import BroadcastWriter, SeqlockTable

        s = self.settings
        if len(specs) > s.book_rows:
            raise ValueError(f"{len(specs)} instruments but segments.book_rows = {s.book_rows}")
        self.instruments = InstrumentTable(list(specs)).write_segment(s.instance)
        self.book = SeqlockTable.create(s.instance, "book", BOOK_ROW, rows=s.book_rows)
        self.md = BroadcastWriter.create(s.instance, "md", MARKET_EVENT, capacity=s.md_capacity)
        try:
            self.lat_recorder = LatencyRecorder.open(s.instance, LATENCY_STAGE)
        except ValueError as e:           # a full latency table must not stop market data
            log.warning("no latency histogram: %s", e)

    # ------------------------------------------------------------------ periodic duties
    async def _housekeeping(self) -> None:
        s = self.settings
        next_lat = next_log = time.monotonic()
        next_log += s.status_log_s
        while True:
            try:
                now = time.monotonic()
                self._refresh_counters()
                self.beat()
                if self.md is not None:
                    self.md.heartbeat()
                if not self.ready and any(st == MdStatus.LIVE for st in self.source.statuses()):
                    self.ready = True
                    self.notifier.ready(status=self.status_text())
                    log.info("book synchronised: READY")
                self.notifier.maybe_ping()
                if now >= next_lat:
                    next_lat = now + s.latency_publish_s
                    self._publish_latency()
                if now >= next_log:
                    next_log = now + s.status_log_s
                    self.notifier.status(self.status_text())
                    log.info("feed status", extra={"counters": self.counters(), "drops": self.source.drops()})
            except Exception:   # never let bookkeeping kill the feed; the heartbeat goes on
                log.exception("feed housekeeping failed")
            await asyncio.sleep(s.housekeeping_s)

    def _publish_latency(self) -> None:
        samples = self.latency.drain()
        # A sample beyond a minute is a clock mismatch, not latency (a replayed capture's
        # venue times, a venue clock far off): counted, kept out of the histogram.
        ok = np.abs(samples) < MAX_PLAUSIBLE_LATENCY_NS
        self.implausible_latency += int(samples.size - np.count_nonzero(ok))
        samples = samples[ok]
        if samples.size:
            self._last_lat = (int(np.median(samples)) // 1000, int(samples.max()) // 1000)
            if self.lat_recorder is not None:
                self.lat_recorder.record_many(samples)
        if self.lat_recorder is not None:
            self.lat_recorder.publish()

    def _refresh_counters(self) -> None:
        if self.slot is None:
            return
        stale = int(getattr(self.source, "stale_events", 0))
        fc.fold(self.slot.counters, self.source.totals(), self.source.drops(), stale, *self._last_lat)

    def counters(self) -> dict[str, int]:
        """The row's named counters as published."""
        from mmshm.agent.counters import named_counters

        return named_counters(fc.ROLE, self.slot.counters) if self.slot is not None else {}

    def status_text(self) -> str:
        st = ",".join(MdStatus(x).name for x in self.source.statuses())
        c = self.counters()
        return (f"feed: {st} events={c.get('md_events', 0)} gaps={c.get('md_gaps', 0)} "
                f"reconnects={c.get('reconnects', 0)} resyncs={c.get('book_resyncs', 0)} drops={c.get('drops', 0)}")

    # ------------------------------------------------------------------ signals
    def _state(self) -> ProcState:
        if self.halted:
            return ProcState.HALTED
        if self.paused:
            return ProcState.PAUSED
        return ProcState.RUNNING

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        handlers = {
            signal.SIGTERM: lambda: self.request_stop("signal SIGTERM"),
            signal.SIGINT: lambda: self.request_stop("signal SIGINT"),
            signal.SIGUSR1: self._on_halt,
            signal.SIGUSR2: self._on_pause,
            signal.SIGHUP: lambda: log.info("SIGHUP: the feed has nothing to reload"),
        }
        installed = []
        for signum, fn in handlers.items():
            try:
                loop.add_signal_handler(signum, fn)
                installed.append(signum)
            except (RuntimeError, ValueError):   # not the main thread (in-process tests)
                pass
        return installed

    def _on_halt(self) -> None:
        if not self.halted:
            self.halted = True
            log.warning("emergency halt signalled: the feed keeps publishing (risk acts on it)")
            if self.slot is not None and self.md is not None:
                self.slot.set_state(self._state())

    def _on_pause(self) -> None:
        self.paused = not self.paused
        log.warning("paused" if self.paused else "resumed")
        if self.slot is not None and self.md is not None:
            self.slot.set_state(self._state())

    # ------------------------------------------------------------------ stop
    async def _shutdown(self, runner, housekeeping, installed, loop) -> None:
        reason = self.exit_reason or "stop"
        self.notifier.stopping(status=f"feed: stopping ({reason})")
        if self.slot is not None:
            self.slot.set_state(ProcState.STOPPING)
        try:
            await asyncio.wait_for(self.source.stop(), 5.0)
        except Exception:
            log.exception("feed source did not stop cleanly")
        if self.bells is not None:
            self.bells.ring()                # the DISCONNECTED rows the stop published
            log.info("quoter bell", extra=self.bells.counts())
            self.bells.close()
            self.bells = None
        for task in (runner, housekeeping):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for signum in installed:
            loop.remove_signal_handler(signum)
        try:
            self._refresh_counters()
            self._publish_latency()
            log.info("feed stopped", extra={"reason": reason, "counters": self.counters(),
                                            "drops": self.source.drops(), "details": self.source.details(),
                                            "implausible_latency_samples": self.implausible_latency})
        except Exception:
            log.exception("final counters failed")
        if self.md is not None:
            self.md.heartbeat()
        if self.lat_recorder is not None:
            self.lat_recorder.close()
        if self.gc_policy is not None:
            self.gc_policy.close()
        for seg in (self.md, self.book, self.instruments):
            if seg is not None:
                if self.settings.unlink_on_exit:
                    with contextlib.suppress(Exception):
                        seg.unlink()
                seg.close()
        if self.slot is not None:
            self.slot.release()
        if self._procs is not None:
            self._procs.close()
        self.notifier.close()


def settings_from_config(cfg: Any, **overrides: Any) -> FeedSettings:
    """FeedSettings from an ``mmshm.config.Config``."""
    kw = dict(instance=cfg.instance, md_capacity=cfg.segments.md_capacity, book_rows=cfg.segments.book_rows,
              procs_rows=cfg.segments.procs_rows, cpu=cfg.role_cpu("feed"), bells=cfg.idle.bells)
    kw.update(overrides)
    return FeedSettings(**kw)


__all__ = ["FeedService", "FeedSettings", "LATENCY_STAGE", "settings_from_config"]
