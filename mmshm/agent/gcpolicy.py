"""Keep Python's cyclic garbage collector off the hot path (``[gc]`` in the config).

Why: a py-spy profile of the running pipeline (``bench/e2e.py``, sleeping roles) showed
``gc_collect_main`` as the feed's and the executor's largest CPU consumer, ahead of their
own work. CPython starts a collection after every 700 container allocations, a gen1 pass
every 10th of those, and now and then a full pass over every object the process holds:
about 45,000 after start-up (numpy, aiohttp, websockets, our modules), ~10 ms here. A tick
arriving during a pass waits for it, however fast the code around it is.

What this does:

- **freeze at start-up** (``gc.freeze``): once the role is running, one full collection,
  then every object alive (modules, config, segments, engines) moves to the permanent
  generation, which no later collection walks. A full pass afterwards takes ~1 us.
- **collect while idle**: the role calls :meth:`GcPolicy.collect_if_due` where it is about
  to sleep (nothing to do, or its work just published); once ``idle_collect_at``
  allocations have piled up it collects there, so the automatic collector, whose gen0
  threshold is raised to ``gen0_threshold``, rarely has to run in the middle of a tick.
  Automatic collection stays on as the backstop of a role that never idles.
- **every pause measured**: a ``gc.callbacks`` hook times each collection into the
  ``gc_<role>`` row of the latency table (exported as ``mmshm_stage_latency_seconds``),
  and the totals are logged at exit, so the effect is visible, not assumed.
"""
from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("mmshm.agent.gcpolicy")

#: CPython's default thresholds (generation 0, 1, 2).
DEFAULT_THRESHOLDS = (700, 10, 10)


@dataclass
class GcStats:
    """Collections seen by the pause hook, per generation, and their pauses."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    idle_collections: int = 0
    pause_total_ns: int = 0
    pause_max_ns: int = 0
    collected: int = 0          # unreachable objects freed
    frozen: int = 0             # objects moved to the permanent generation at start-up

    def as_dict(self) -> dict[str, Any]:
        return {"gen0": self.collections[0], "gen1": self.collections[1], "gen2": self.collections[2],
                "idle": self.idle_collections, "pause_total_ms": round(self.pause_total_ns / 1e6, 3),
                "pause_max_us": round(self.pause_max_ns / 1e3, 1), "collected": self.collected,
                "frozen": self.frozen}


class GcPolicy:
    """The garbage-collector settings of one role's process (see the module docstring).

    ``GcPolicy.from_config(role, cfg.gc)``; :meth:`start` once the role runs,
    :meth:`collect_if_due` where it idles, :meth:`close` at exit (restores the
    interpreter's settings: tests run several roles in one process).
    """

    def __init__(self, role: str, *, freeze: bool = True, gen0_threshold: int = 700,
                 idle_collect_at: int = 0, recorder: Any | None = None,
                 open_recorder: Callable[[], Any] | None = None, publish_every_ns: int = 500_000_000,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if gen0_threshold < 1:
            raise ValueError(f"gen0_threshold must be >= 1, got {gen0_threshold}")
        if idle_collect_at < 0:
            raise ValueError(f"idle_collect_at must be >= 0, got {idle_collect_at}")
        self.role = role
        self.freeze = freeze
        self.gen0_threshold = gen0_threshold
        self.idle_collect_at = idle_collect_at
        self.recorder = recorder            # .record(ns) / .publish(now): a LatencyRecorder
        self._open_recorder = open_recorder  # or made by start(): no segment for a role that never runs
        self.publish_every_ns = publish_every_ns
        self._next_publish = 0
        self.stats = GcStats()
        self._clock = clock
        self._t0 = 0
        self._started = False
        self._saved_threshold: tuple[int, int, int] | None = None

    @classmethod
    def from_config(cls, role: str, gc_cfg: Any, open_recorder: Callable[[], Any] | None = None) -> "GcPolicy":
        """From a ``GcConfig`` (``cfg.gc``)."""
        return cls(role, freeze=gc_cfg.freeze, gen0_threshold=gc_cfg.gen0_threshold,
                   idle_collect_at=gc_cfg.idle_collect_at, open_recorder=open_recorder)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Once the role is running: collect and freeze, raise the threshold, time pauses."""
        if self._started:
            return
        self._started = True
        if self.recorder is None and self._open_recorder is not None:
            try:
                self.recorder = self._open_recorder()
            except (ValueError, OSError) as exc:   # only the histogram is lost, never the role
                log.warning("gc pauses not recorded", extra={"role": self.role, "error": str(exc)})
        if self.freeze:
            gc.collect()
            gc.freeze()
            self.stats.frozen = gc.get_freeze_count()
        self._saved_threshold = gc.get_threshold()
        t = self._saved_threshold
        gc.set_threshold(self.gen0_threshold, t[1], t[2])
        gc.callbacks.append(self._on_gc)
        log.info("garbage collector set", extra={
            "role": self.role, "frozen_objects": self.stats.frozen, "gen0_threshold": self.gen0_threshold,
            "idle_collect_at": self.idle_collect_at})

    def close(self) -> None:
        """Log the totals, give the interpreter its settings back and close the recorder
        (also when never started). Idempotent."""
        rec, self.recorder = self.recorder, None
        if self._started:
            self._started = False
            try:
                gc.callbacks.remove(self._on_gc)
            except ValueError:
                pass
            if self._saved_threshold is not None:
                gc.set_threshold(*self._saved_threshold)
            if self.freeze:
                gc.unfreeze()
            log.info("garbage collector totals", extra={"role": self.role, **self.stats.as_dict()})
        if rec is not None:
            rec.close()

    # ------------------------------------------------------------------ idle
    def collect_if_due(self) -> bool:
        """Where the role is about to sleep: collect once ``idle_collect_at`` allocations
        piled up (0: never here), the oldest generation whose count is over its threshold
        included, as the automatic collector would. Returns whether it collected."""
        at = self.idle_collect_at
        if not at or not self._started:
            return False
        c0, c1, c2 = gc.get_count()
        if c0 < at:
            return False
        _, t1, t2 = gc.get_threshold()
        gen = 2 if (c1 + 1 > t1 and c2 + 1 > t2) else 1 if c1 + 1 > t1 else 0
        self.stats.idle_collections += 1
        gc.collect(gen)
        return True

    # ------------------------------------------------------------------ pause hook
    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = self._clock()
            return
        d = self._clock() - self._t0
        s = self.stats
        gen = info.get("generation", 0)
        if 0 <= gen < 3:
            s.collections[gen] += 1
        s.collected += info.get("collected", 0)
        s.pause_total_ns += d
        if d > s.pause_max_ns:
            s.pause_max_ns = d
        rec = self.recorder
        if rec is not None:
            rec.record(d)
            now = self._clock()
            if now >= self._next_publish:
                self._next_publish = now + self.publish_every_ns
                rec.publish(now)


def open_gc_policy(role: str, config: Any) -> GcPolicy:
    """The role's policy from ``config.gc``, its pauses recorded (from :meth:`GcPolicy.start`
    on) in the ``gc_<role>`` row of the instance's latency table, closed with the policy."""
    from mmshm.monitor.latency import LatencyRecorder

    return GcPolicy.from_config(role, config.gc,
                                open_recorder=lambda: LatencyRecorder.open(config.instance, f"gc_{role}"))


__all__ = ["DEFAULT_THRESHOLDS", "GcPolicy", "GcStats", "open_gc_policy"]
