"""Names for the ``PROC_COUNTERS`` counter slots of each process-table row.

The row carries only numbers; this registry says which slot means what per role, so
`mmshm status` and the exporter can print ``md_gaps=3`` instead of ``c1=3`` without
asking the process. It lives in code (not shared memory) because every reader of the
table imports mmshm anyway and names never change at run time. Owners of a role add or
edit their role's tuple here (slot = position); unnamed slots show as ``c<N>``.
"""
from __future__ import annotations

from mmshm.records import PROC_COUNTERS

#: Counter slot names per role, by slot index.
ROLE_COUNTERS: dict[str, tuple[str, ...]] = {
    # feed: see mmshm.feed.counters (messages by stream, drops by reason, venue->local latency)
    "feed": ("md_events", "md_gaps", "drops", "reconnects", "book_resyncs", "stale", "msg_depth",
             "msg_ticker", "msg_trade", "snapshots", "drop_malformed", "drop_unknown", "drop_invalid",
             "drop_off_grid", "lat_p50_us", "lat_max_us"),
    # quoter/risk scales: *_e6 = value x 1e6, *_e8 = quote asset x 1e8 (FEE_SCALE); see
    # mmshm.strategy.process and mmshm.risk.process.
    "quoter": ("quotes", "md_gaps", "drops", "stale_book", "pulls", "pull_reason", "imbalance_e6",
               "leadlag_bp_e6", "cascade_e6", "sigma_bp_e6", "spread_bp_e6", "fair_value_ticks", "md_lost",
               "control_changes", "risk_stale", "fits"),
    "executor": ("orders_sent", "acks", "rejects", "fills", "cancels", "ring_full", "drops", "cancel_all",
                 "amends", "reconnects", "breaker_state", "position_lots", "fees", "mode", "not_sent",
                 "reconciles"),
    "risk": ("mode_changes", "limit_breaches", "md_gaps", "drops", "mode", "pnl_e8", "daily_pnl_e8",
             "equity_e8", "position_lots", "drawdown_e6", "margin_e6", "fills", "halts", "paused", "halt_reason",
             "order_events"),
    "recorder": ("orders_journaled", "md_recorded", "md_gaps", "drops", "fills_journaled", "duplicates",
                 "lag", "ring_refused", "commits", "db_errors", "attached"),
    "exporter": ("scrapes", "errors", "scrape_us"),
    "watchdog": ("checks", "verdict_changes", "kills", "halts", "kill_errors", "segment_errors"),
}


def register_counters(role: str, names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Name ``role``'s counter slots (in-process; for roles not listed above, e.g. tests)."""
    names = tuple(names)
    if len(names) > PROC_COUNTERS:
        raise ValueError(f"role {role!r} names {len(names)} counters; a row has {PROC_COUNTERS}")
    if len(set(names)) != len(names):
        raise ValueError(f"role {role!r} has duplicate counter names: {names}")
    ROLE_COUNTERS[role] = names
    return names


def counter_names(role: str) -> tuple[str, ...]:
    """All ``PROC_COUNTERS`` slot names for ``role`` (unnamed slots are ``c<N>``)."""
    named = ROLE_COUNTERS.get(role, ())
    return tuple(named[i] if i < len(named) else f"c{i}" for i in range(PROC_COUNTERS))


def counter_index(role: str, name: str) -> int:
    """Slot of counter ``name`` for ``role``; ``KeyError`` naming the known ones otherwise."""
    names = ROLE_COUNTERS.get(role, ())
    try:
        return names.index(name)
    except ValueError:
        raise KeyError(f"role {role!r} has no counter {name!r}; known: {', '.join(names) or 'none'}") from None


def named_counters(role: str, values) -> dict[str, int]:
    """``{name: value}`` for the nonzero or named slots of a row's ``counters`` array."""
    names = counter_names(role)
    named = ROLE_COUNTERS.get(role, ())
    return {names[i]: int(v) for i, v in enumerate(values) if i < len(named) or int(v) != 0}
