"""Cancel everything, and prove it, even when the venue is misbehaving.

1. Bulk: one ``cancel_all_open(symbol)`` per symbol (Binance ``DELETE allOpenOrders``).
2. Query the open orders; whatever is still there is cancelled one by one, each with
   retries and backoff (a 5xx or a timeout on the bulk call must not leave orders).
3. Query again to verify. The report says how many were cancelled, which failed and
   which remain, and the method that did the work.

"Already gone" (-2011/-2013 unknown order) counts as success: the goal is that nothing
rests. Every step is bounded by ``deadline_s`` so a shutdown never hangs on a dead venue.
The breaker and rate budget still apply: if they refuse, the step fails and is reported
(never bypassed: a 418 would make things worse). An open breaker that reopens within the
deadline is waited for first (what it asks for anyway): a burst of business rejects just
before a halt must not delay the halt's cancel-all by the caller's whole retry period.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

from mmshm.execution.venue import TradingVenue

log = logging.getLogger("mmshm.execution.cancel_all")


@dataclass
class CancelAllReport:
    canceled: int = 0                       # orders seen open before and gone after
    failed: list[str] = field(default_factory=list)     # client ids (or venue ids) not cancelled
    method: str = "none"                    # "none", "bulk", "bulk+per_order", "per_order", "failed"
    remaining: list[str] = field(default_factory=list)  # still open at the final check
    verified: bool = False                  # the final open-orders query succeeded
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verified and not self.remaining


def _is_gone(exc: Exception) -> bool:
    code = getattr(exc, "code", 0)
    return code in (-2011, -2013)


def _key(o) -> str:
    return o.client_id or str(o.venue_order_id)


async def cancel_all(venue: TradingVenue, symbols: Sequence[str], *, retries: int = 3,
                     backoff_s: float = 0.05, deadline_s: float = 10.0) -> CancelAllReport:
    """Cancel every open order on ``symbols`` and verify (see module doc)."""
    t0 = time.monotonic()
    rep = CancelAllReport()
    end = t0 + deadline_s

    def left() -> float:
        return max(0.01, end - time.monotonic())

    async def list_open() -> dict[str, object] | None:
        out: dict[str, object] = {}
        for sym in symbols:
            try:
                for o in await asyncio.wait_for(venue.open_orders(sym), left()):
                    out[_key(o)] = o
            except Exception as exc:  # noqa: BLE001 - any failure means "unknown"
                rep.errors.append(f"openOrders {sym}: {type(exc).__name__}: {exc}")
                return None
        return out

    breaker = getattr(venue, "breaker", None)
    if breaker is not None:
        wait_s = breaker.retry_in_ns() / 1e9
        if 0 < wait_s < left() - 0.1:
            await asyncio.sleep(wait_s)
    before = await list_open()
    bulk_ok = True
    for sym in symbols:
        try:
            await asyncio.wait_for(venue.cancel_all_open(sym), left())
        except Exception as exc:  # noqa: BLE001
            bulk_ok = False
            rep.errors.append(f"allOpenOrders {sym}: {type(exc).__name__}: {exc}")
    after_bulk = await list_open()
    methods = ["bulk"] if bulk_ok else []
    todo = after_bulk if after_bulk is not None else before
    per_order_used = False
    if todo:
        per_order_used = True
        for k, o in list(todo.items()):
            for attempt in range(retries + 1):
                if time.monotonic() >= end:
                    break
                try:
                    await asyncio.wait_for(venue.cancel(o.symbol, o.client_id or None,
                                                        o.venue_order_id or None), left())
                    break
                except Exception as exc:  # noqa: BLE001
                    if _is_gone(exc):
                        break
                    rep.errors.append(f"cancel {k}: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(min(backoff_s * (2 ** attempt), left()))
    if per_order_used:
        methods.append("per_order")
    final = await list_open()
    rep.verified = final is not None
    if final is not None:
        rep.remaining = sorted(final)
    seen = set(before or {}) | set(after_bulk or {})
    gone = seen - set(final or {}) if final is not None else set()
    rep.canceled = len(gone)
    rep.failed = sorted(set(final or {})) if final is not None else sorted(seen)
    rep.method = "+".join(methods) if methods else "failed"
    if final is None or final:
        if not methods:
            rep.method = "failed"
    rep.elapsed_s = time.monotonic() - t0
    if not rep.ok:
        log.error("cancel-all incomplete", extra={"remaining": rep.remaining, "errors": rep.errors[-5:]})
    return rep
