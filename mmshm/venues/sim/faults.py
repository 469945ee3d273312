"""Fault injection: what the control API (and tests through the Python API) can break.

Channels are ``market`` (market streams), ``user`` (user-data streams) and ``wsapi``
(WebSocket order entry); ``rest`` is the REST API. Every fault is counted down or timed
and cleared by :meth:`FaultInjector.clear`.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

CHANNELS = ("market", "user", "wsapi")


@dataclass
class DropRule:
    """Close connections of a channel after `after` messages, for the next `times` connections."""
    after: int
    times: int = 1


@dataclass
class FaultInjector:
    drops: dict[str, DropRule] = field(default_factory=dict)
    stalled_until: dict[str, float] = field(default_factory=dict)
    reject_left: int = 0
    reject_code: int = -2010
    reject_msg: str = "Order rejected by fault injection."
    storm429_left: int = 0
    storm429_retry_after: int = 1
    errors5xx_left: int = 0
    error5xx_status: int = 503
    latency_ms: tuple[float, float] = (0.0, 0.0)
    outage_until: float = 0.0
    counters: dict[str, int] = field(default_factory=lambda: {"dropped": 0, "rejected": 0, "storm429": 0,
                                                              "errors5xx": 0, "refused": 0})
    #: per channel: connections dropped by a drop rule, and the venue-side reconnect time of
    #: each (drop -> the next connection on that channel, ms), so a test can check a
    #: client's recovery without trusting the client's own clock
    dropped_by_channel: dict[str, int] = field(default_factory=dict)
    reconnect_ms: dict[str, list[float]] = field(default_factory=dict)
    _dropped_at: dict[str, float] = field(default_factory=dict)

    def clear(self) -> None:
        self.drops.clear()
        self.stalled_until.clear()
        self.reject_left = self.storm429_left = self.errors5xx_left = 0
        self.latency_ms = (0.0, 0.0)
        self.outage_until = 0.0

    # ------------------------------------------------------------------ setters

    def drop_after(self, channel: str, after: int, times: int = 1) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}")
        if after < 0 or times < 1:
            raise ValueError("after >= 0 and times >= 1")
        self.drops[channel] = DropRule(after, times)

    def stall(self, channel: str, seconds: float) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}")
        self.stalled_until[channel] = time.monotonic() + seconds

    def reject_storm(self, count: int, code: int = -2010, msg: str | None = None) -> None:
        self.reject_left, self.reject_code = count, code
        if msg:
            self.reject_msg = msg

    def storm_429(self, count: int, retry_after: int = 1) -> None:
        self.storm429_left, self.storm429_retry_after = count, retry_after

    def errors_5xx(self, count: int, status: int = 503) -> None:
        if not 500 <= status <= 599:
            raise ValueError("status must be 5xx")
        self.errors5xx_left, self.error5xx_status = count, status

    def latency(self, min_ms: float, max_ms: float | None = None) -> None:
        self.latency_ms = (min_ms, max_ms if max_ms is not None else min_ms)

    def outage(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds

    # ------------------------------------------------------------------ queries (server side)

    def in_outage(self) -> bool:
        return time.monotonic() < self.outage_until

    def take_drop_budget(self, channel: str) -> int | None:
        """For a new connection: after how many messages to drop it (None = never)."""
        dropped_at = self._dropped_at.pop(channel, None)
        if dropped_at is not None:
            self.reconnect_ms.setdefault(channel, []).append(round((time.monotonic() - dropped_at) * 1000, 3))
        rule = self.drops.get(channel)
        if rule is None:
            return None
        rule.times -= 1
        if rule.times <= 0:
            del self.drops[channel]
        return rule.after

    def note_drop(self, channel: str) -> None:
        """A connection of `channel` was closed by its drop rule (after its N messages)."""
        self.counters["dropped"] += 1
        self.dropped_by_channel[channel] = self.dropped_by_channel.get(channel, 0) + 1
        self._dropped_at[channel] = time.monotonic()

    async def wait_stall(self, channel: str) -> None:
        until = self.stalled_until.get(channel, 0.0)
        delay = until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def stalled(self, channel: str) -> bool:
        return time.monotonic() < self.stalled_until.get(channel, 0.0)

    async def delay(self) -> None:
        lo, hi = self.latency_ms
        if hi > 0:
            await asyncio.sleep(random.uniform(lo, hi) / 1000.0)

    def take_reject(self) -> tuple[int, str] | None:
        if self.reject_left > 0:
            self.reject_left -= 1
            self.counters["rejected"] += 1
            return self.reject_code, self.reject_msg
        return None

    def take_429(self) -> int | None:
        if self.storm429_left > 0:
            self.storm429_left -= 1
            self.counters["storm429"] += 1
            return self.storm429_retry_after
        return None

    def take_5xx(self) -> int | None:
        if self.errors5xx_left > 0:
            self.errors5xx_left -= 1
            self.counters["errors5xx"] += 1
            return self.error5xx_status
        return None

    def apply(self, spec: dict) -> None:
        """Apply a JSON fault spec (the body of POST /_control/faults)."""
        for d in spec.get("drop", []) or []:
            self.drop_after(d["channel"], int(d.get("after", 0)), int(d.get("times", 1)))
        for s in spec.get("stall", []) or []:
            self.stall(s["channel"], float(s["seconds"]))
        if "reject" in spec:
            r = spec["reject"]
            self.reject_storm(int(r["count"]), int(r.get("code", -2010)), r.get("msg"))
        if "storm429" in spec:
            r = spec["storm429"]
            self.storm_429(int(r["count"]), int(r.get("retry_after", 1)))
        if "errors5xx" in spec:
            r = spec["errors5xx"]
            self.errors_5xx(int(r["count"]), int(r.get("status", 503)))
        if "latency_ms" in spec:
            v = spec["latency_ms"]
            if isinstance(v, (list, tuple)):
                self.latency(float(v[0]), float(v[1]))
            else:
                self.latency(float(v))
        if "outage_s" in spec:
            self.outage(float(spec["outage_s"]))

    def describe(self) -> dict:
        now = time.monotonic()
        return {"drops": {k: {"after": v.after, "times": v.times} for k, v in self.drops.items()},
                "stalled": {k: round(v - now, 3) for k, v in self.stalled_until.items() if v > now},
                "reject_left": self.reject_left, "storm429_left": self.storm429_left,
                "errors5xx_left": self.errors5xx_left, "latency_ms": list(self.latency_ms),
                "outage_left_s": round(max(0.0, self.outage_until - now), 3), "counters": dict(self.counters),
                "dropped_by_channel": dict(self.dropped_by_channel),
                "reconnect_ms": {k: list(v) for k, v in self.reconnect_ms.items()}}
