"""Configuration: one TOML file, typed and validated, every value knowing where it came from.

Precedence, highest first (DESIGN.md section 8)::

    CLI (--set a.b=c)  >  environment (MMSHM_*)  >  override file  >  profile  >  config file  >  built-in defaults

Why the sources are kept: the on-call person runs ``mmshm config show`` and sees, for
each value, whether it is a default, came from the file, a profile, an override file, an
environment variable (which one) or the command line.

Environment scheme: ``MMSHM_<KEY>`` for top-level keys (``MMSHM_INSTANCE``,
``MMSHM_MODE``), ``MMSHM_<SECTION>__<KEY>`` for section keys (``MMSHM_RISK__DAILY_LOSS_PCT=0.4``),
one more ``__<KEY>`` per nested table (``MMSHM_WATCHDOG__HEARTBEAT_TIMEOUT_MS__FEED=500``).
Values are read as TOML values (``0.4``, ``true``, ``["BTCUSDT","ETHUSDT"]``), falling back
to the plain string; lists also accept ``BTCUSDT,ETHUSDT``. ``EXCHANGE_ENV`` sets ``mode``
(``MMSHM_MODE`` wins over it); ``MMSHM_IDLE`` sets the idle strategy of every role (tests and
CI use ``MMSHM_IDLE=sleep``). ``MMSHM_CONFIG``, ``MMSHM_PROFILE`` and ``MMSHM_OVERRIDES``
name the file, profile and override file when the caller does not.

Optional values (a CPU, a limit) are unset with the string ``"none"`` (TOML has no null).

Secrets are never configuration: :func:`load_credentials` reads them from systemd's
``$CREDENTIALS_DIRECTORY`` (``LoadCredential=``) or ``MMSHM_API_KEY``/``MMSHM_API_SECRET``.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import signal
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import Any, Iterator, Mapping, Sequence

from mmshm.log import mask, register_secret
from mmshm.records import TARGET_LEVELS

#: Every process role, in start order. ``[cpus]``, ``[idle]`` and the watchdog's
#: per-role tables have one key per role.
ROLES: tuple[str, ...] = ("feed", "quoter", "executor", "risk", "watchdog", "recorder", "exporter")
MODES: tuple[str, ...] = ("observe", "shadow", "paper", "testnet", "live")
VENUES: tuple[str, ...] = ("sim", "binance-usdm", "hyperliquid", "replay")
IDLE_STRATEGIES: tuple[str, ...] = ("busy", "yield", "sleep")
#: Roles on the tick-to-order path whose idle park bounds the latency (``idle.hot_max_park_ns``).
HOT_ROLES: tuple[str, ...] = ("quoter", "executor")
#: Trigger actions, least to most severe (``mmshm.risk.params.Action``). HALT cancels all.
RISK_ACTIONS: tuple[str, ...] = ("alert", "widen", "pull", "pause", "reduce_only", "halt")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: ``[quoter] model`` values and the ``mmshm.strategy.params.Model`` member each selects.
QUOTER_MODELS: tuple[str, ...] = ("fixed", "avellaneda_stoikov", "glft")
_MODEL_ENUM = {"fixed": "FIXED", "avellaneda_stoikov": "AS", "glft": "GLFT"}

#: MMSHM_* environment variables that are not configuration keys (never parsed as such).
RESERVED_ENV: frozenset[str] = frozenset({
    "MMSHM_API_KEY", "MMSHM_API_SECRET", "MMSHM_CONFIG", "MMSHM_PROFILE", "MMSHM_OVERRIDES",
    "MMSHM_IDLE", "MMSHM_SHARED_DATA", "MMSHM_NATIVE_ONLY",
})
ENV_PREFIX = "MMSHM_"

_INSTANCE_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_NONE_WORDS = frozenset({"none", "null"})
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}


class ConfigError(ValueError):
    """One or more configuration problems; each names the key, value, source and expectation."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"invalid configuration: {self.problems[0]}")
        else:
            super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


# --------------------------------------------------------------------------- schema helpers

def _f(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Any = None,
       ge: float | None = None, gt: float | None = None, le: float | None = None,
       choices: Sequence[str] | None = None, pow2: bool = False,
       auto: bool = False) -> Any:
    """A dataclass field carrying its validation rules (checked by the loader, not here)."""
    md = {"doc": doc, "ge": ge, "gt": gt, "le": le, "choices": tuple(choices) if choices else None,
          "pow2": pow2, "auto": auto}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    return field(default=default, metadata=md)


def _roles_table(cls_name: str, doc: str, defaults: Mapping[str, Any], tp: str,
                 **rules: Any) -> type:
    """A frozen dataclass with one field per role (used for per-role tables)."""
    fields = [(r, tp, _f(defaults[r], f"{doc} ({r})", **rules)) for r in ROLES]
    cls = dataclasses.make_dataclass(cls_name, fields, frozen=True, namespace={"__doc__": doc})
    cls.__module__ = __name__
    return cls


# --------------------------------------------------------------------------- sections

CpusConfig = _roles_table(
    "CpusConfig", "CPU each role is pinned to (\"none\" = unpinned). On 2 cores the hot "
    "roles alternate cores 0/1; the exporter, recorder and watchdog float.",
    {"feed": 0, "quoter": 1, "executor": 0, "risk": 1, "watchdog": None, "recorder": None,
     "exporter": None}, "int | None", ge=0)

_IdleRoles = _roles_table(
    "_IdleRoles", "idle strategy per role", {r: "sleep" for r in ROLES}, "str",
    choices=IDLE_STRATEGIES, auto=True)


@dataclass(frozen=True)
class IdleConfig(_IdleRoles):  # type: ignore[misc, valid-type]
    """Idle strategy per role (busy|yield|sleep) and the backoff parameters.

    Default: ``sleep`` everywhere when the machine has fewer cores than processes (busy
    spinning there starves the other processes), else ``yield`` for feed/quoter/executor.
    ``busy`` is only ever chosen explicitly (production, isolated cores).
    """

    spins: int = _f(100, "busy-spin iterations before yielding (yield strategy; sleep: the hot roles only)", ge=0)
    yields: int = _f(10, "sched_yield calls before parking (sleep strategy, the hot roles)", ge=0)
    min_park_ns: int = _f(1_000, "first sleep of the hot roles' backoff, ns (the others: cold_min_park_ns)", ge=1)
    max_park_ns: int = _f(1_000_000, "longest sleep of the backoff, ns", ge=1)
    bells: bool = _f(
        True, "the hot roles (quoter, executor) sleep on a doorbell their producers ring after "
        "publishing (mmshm.agent.doorbell), so a new tick or target wakes them at once and "
        "their parks last max_park_ns; false: they poll with hot_max_park_ns parks")
    hot_max_park_ns: int = _f(
        50_000, "longest sleep of the latency-critical pollers when idle.bells is off (the "
        "quoter's backoff and the executor's targets watcher thread), ns: a new target waits "
        "at most about this long", ge=1)
    cold_min_park_ns: int = _f(
        200_000, "first park of the sleeping roles off the tick's path (risk, recorder), ns: "
        "they skip the spins and yields, which only the hot roles' latency pays for, and back "
        "off from here to max_park_ns (measured on the 2-core VM: risk 11-14% of a core with "
        "the hot roles' 1 us start, 6.6-7.6% with this)", ge=1)
    timer_slack_ns: int = _f(
        1_000, "kernel timer slack of the hot roles' threads (quoter, executor), ns: how late "
        "the kernel may wake a park (Linux default 50000, which made a 50 us park ~130 us); "
        "0 keeps the kernel's", ge=0)

    def max_park_ns_for(self, role: str) -> int:
        """The longest park of ``role``'s sleeping idle strategy.

        Without bells the hot roles (quoter, executor) react to a change within one park,
        so they use ``hot_max_park_ns``; with bells a ring ends the park, which then only
        bounds the unrung work (timers), so every role keeps ``max_park_ns``. Cost measured
        on a 2-core VM: a 50 us park wakes every ~130 us (kernel timer slack) and takes
        ~15-17% of a core, against ~2% for 1 ms. The executor's row watcher and
        ``run_role`` (the quoter's backoff) use it.
        """
        return self.hot_max_park_ns if role in HOT_ROLES and not self.bells else self.max_park_ns

    def backoff_for(self, role: str) -> dict[str, int]:
        """The sleeping strategy's backoff for ``role`` (``BackoffIdle`` arguments): the hot
        roles spin ``spins`` cycles, yield ``yields`` times, then park from ``min_park_ns``;
        every other role parks at once from ``cold_min_park_ns`` (a fill or a record a few
        hundred us later costs them nothing, the spinning cost a shared core CPU)."""
        if role in HOT_ROLES:
            start = {"max_spins": self.spins, "max_yields": self.yields, "min_park_ns": self.min_park_ns}
        else:
            start = {"max_spins": 0, "max_yields": 0, "min_park_ns": self.cold_min_park_ns}
        return {**start, "max_park_ns": self.max_park_ns_for(role)}


@dataclass(frozen=True)
class GcConfig:
    """Python's garbage collector in every role (``mmshm.agent.gcpolicy``): frozen after
    start-up, collected while idle, pauses measured (``gc_<role>`` latency rows)."""

    freeze: bool = _f(
        True, "after start-up, one full collection then gc.freeze(): the ~45k objects alive then "
        "are never walked again (a full collection of them took ~10 ms)")
    gen0_threshold: int = _f(
        20_000, "allocations before the automatic collector runs (CPython: 700); the backstop of "
        "collect-while-idle", ge=1)
    idle_collect_at: int = _f(
        700, "allocations after which a role collects where it is about to sleep, off the "
        "tick's path (0 = never: only the automatic collector)", ge=0)


@dataclass(frozen=True)
class SegmentsConfig:
    """Shared-memory sizes. Ring capacities are slots and must be powers of two."""

    md_capacity: int = _f(1 << 16, "md broadcast ring slots", ge=2, pow2=True)
    orders_capacity: int = _f(1 << 14, "orders gated ring slots", ge=2, pow2=True)
    book_rows: int = _f(8, "book table rows (one per instrument)", ge=1)
    instruments_rows: int = _f(8, "instrument table rows", ge=1)
    targets_rows: int = _f(8, "quote targets rows (one per instrument)", ge=1)
    control_rows: int = _f(9, "control rows (row 0 global, 1+i instrument i)", ge=2)
    procs_rows: int = _f(16, "process table rows", ge=len(ROLES))
    verdicts_rows: int = _f(16, "watchdog verdict rows", ge=1)


@dataclass(frozen=True)
class VenueConfig:
    """Which venue, where, and which symbols. Empty URLs mean the venue's own default for the mode."""

    name: str = _f("sim", "venue adapter", choices=VENUES)
    rest_url: str = _f("", "REST base URL (empty = default for venue and mode)")
    ws_url: str = _f("", "market-data WebSocket URL (empty = default)")
    ws_api_url: str = _f("", "order-entry WebSocket API URL (empty = default)")
    symbols: tuple[str, ...] = _f(factory=lambda: ("BTCUSDT",), doc="instruments traded")
    recv_window_ms: int = _f(5000, "signed request validity window", ge=1, le=60000)
    sim_host: str = _f("127.0.0.1", "simulated venue bind address")
    sim_port: int = _f(0, "simulated venue port (0 = ephemeral)", ge=0, le=65535)
    sim_seed: int = _f(1, "synthetic market seed", ge=0)
    # A market maker's account: at Binance USD-M's VIP0 maker fee (200 ppm = 2 bp a fill) no
    # quote inside ~2 bp of the mid can earn its fees, so every round trip of the default
    # 1 bp quoter loses and risk's losing-fills trigger pauses it within minutes. Market
    # makers trade on liquidity-provider tiers (maker rebates of ~0.5 bp): the sim does too.
    sim_maker_fee_ppm: int = _f(-50, "simulated venue's maker fee, ppm (negative = rebate; VIP0 is 200)",
                                ge=-1000, le=10_000)
    sim_taker_fee_ppm: int = _f(500, "simulated venue's taker fee, ppm", ge=-1000, le=10_000)
    replay_file: str = _f("", "capture file for venue=replay")
    replay_pace: str = _f("recorded", "replay speed", choices=("recorded", "fast"))


@dataclass(frozen=True)
class FeedConfig:
    """Market-data feed: book depth kept, staleness and reconnect backoff."""

    book_depth: int = _f(1000, "price levels kept per side; deeper ones are dropped and counted", ge=1)
    publish_levels: int = _f(20, "levels per side written to the book table", ge=1, le=20)
    depth_speed: str = _f("0ms", "Binance depth stream speed", choices=("0ms", "100ms", "250ms", "500ms"))
    stale_after_s: float = _f(5.0, "no message for this long -> STALE status", gt=0)
    reconnect_backoff_base_s: float = _f(0.5, "first reconnect backoff (full jitter)", gt=0)
    reconnect_backoff_max_s: float = _f(30.0, "longest reconnect backoff", gt=0)
    ping_interval_s: float = _f(20.0, "WebSocket ping interval", gt=0)


@dataclass(frozen=True)
class QuoterConfig:
    """Pricing model, ladder and signals.

    Keys and units are those of :class:`mmshm.strategy.params.QuoterParams` (prices in bp
    of the fair value, sigma in bp/sqrt(s), sizes in lots), so the quoter builds its
    parameters with ``QuoterParams(**quoter_params_kwargs(cfg))``.
    """

    model: str = _f("fixed", "pricing model", choices=QUOTER_MODELS)
    fair_value: str = _f("microprice", "fair value", choices=("mid", "microprice"))
    half_spread_bp: float = _f(1.0, "half-spread of model=fixed, bp (sim: ~1 bp/sqrt(s) volatility fills it a few times a minute)", gt=0)
    inventory_skew_bp: float = _f(2.0, "fair value shifted by -skew * position / max position, bp", ge=0)
    gamma: float = _f(0.1, "risk aversion per (bp * unit) (AS, GLFT)", gt=0)
    horizon_s: float = _f(60.0, "T - t of Avellaneda-Stoikov, s", gt=0)
    arrival_a: float = _f(1.0, "A of lambda(d) = A exp(-k d), 1/s (initial; fitted online)", gt=0)
    arrival_k: float = _f(0.5, "k, 1/bp (initial; fitted online)", gt=0)
    glft_delta: float = _f(1.0, "GLFT order size Delta, units", gt=0)
    unit_lots: int = _f(0, "lots per inventory unit (0 = first ladder level size)", ge=0)
    min_half_spread_bp: float = _f(0.5, "half-spread floor per side, bp", gt=0)
    max_half_spread_bp: float = _f(100.0, "half-spread cap per side, bp", gt=0)
    vol_half_life_s: float = _f(30.0, "EWMA half-life of the volatility (bp/sqrt(s))", gt=0)
    vol_prior_bp: float = _f(1.0, "sigma used until vol_warmup_s of data is seen", gt=0)
    vol_warmup_s: float = _f(5.0, "volatility warm-up, s", ge=0)
    levels: int = _f(3, "quote levels per side", ge=1, le=TARGET_LEVELS)
    level_spacing_bp: float = _f(1.0, "distance between ladder levels, bp", ge=0)
    level_sizes: tuple[int, ...] = _f(factory=lambda: (1, 1, 2, 2, 3), doc="lots per level", ge=1)
    imbalance_levels: int = _f(5, "book levels in the imbalance signal", ge=1, le=20)
    imbalance_weight_bp: float = _f(0.0, "fair-value shift per unit imbalance, bp", ge=0)
    leadlag_weight: float = _f(0.0, "fraction of the reference venue's lead applied", ge=0)
    leadlag_max_bp: float = _f(10.0, "lead-lag shift cap, bp", ge=0)
    leadlag_half_life_s: float = _f(30.0, "EWMA of the basis between venues, s", gt=0)
    leadlag_max_age_ms: float = _f(1000.0, "reference older than this: signal 0", ge=0)
    cascade_half_life_s: float = _f(2.0, "cascade detector decay, s", gt=0)
    cascade_through_scale_bp_s: float = _f(5.0, "trade-through velocity giving severity 1.0", gt=0)
    cascade_volume_ratio_scale: float = _f(5.0, "fast/slow volume ratio giving severity 1.0", gt=0)
    cascade_vol_burst_scale: float = _f(3.0, "fast/slow vol ratio giving severity 1.0", gt=0)
    cascade_widen_at: float = _f(1.0, "severity at which quotes widen", ge=0)
    cascade_widen_bp: float = _f(5.0, "extra half-spread while widened, bp", ge=0)
    cascade_pull_at: float = _f(1.5, "severity above which quotes are pulled", ge=0)
    widen_bp: float = _f(5.0, "extra half-spread in WIDEN mode when control gives 0, bp", ge=0)
    max_book_age_ms: float = _f(5000.0, "book older than this: pull (0 = off)", ge=0)
    min_qty_pad: float = _f(0.1, "below-minimum sizes raised to min * (1 + pad)", ge=0)


@dataclass(frozen=True)
class RiskConfig:
    """Limits and every trigger of the risk table, each with threshold and action."""

    equity: float = _f(10_000.0, "equity assumed until the venue reports it (quote asset)", gt=0)
    leverage: float = _f(5.0, "leverage used for sizing and margin", gt=0, le=125)
    maint_margin_rate: float = _f(0.004, "maintenance margin rate used until the venue reports it", ge=0, le=0.5)
    kelly_fraction: float = _f(0.25, "fraction in max position = equity/(leverage*price)*kelly", gt=0, le=1)
    max_position_lots: int | None = _f(None, "max |position| in lots (none = from equity formula)", ge=1)
    max_order_lots: int = _f(10, "max order size in lots", ge=1)
    daily_loss_pct: float = _f(0.5, "daily loss trigger, % of equity", gt=0, le=100)
    daily_loss_action: str = _f("halt", "action when the daily loss trigger fires", choices=RISK_ACTIONS)
    drawdown_pct: float = _f(2.0, "drawdown from high-water mark trigger, %", gt=0, le=100)
    drawdown_action: str = _f("halt", "action when the drawdown trigger fires", choices=RISK_ACTIONS)
    position_runaway_mult: float = _f(2.0, "|position| > mult * max position trigger", gt=1)
    position_runaway_action: str = _f("halt", "action when the position runaway trigger fires", choices=RISK_ACTIONS)
    stale_md_s: float = _f(10.0, "market data older than this trigger, s", gt=0)
    stale_md_action: str = _f("pull", "action when the stale md trigger fires", choices=RISK_ACTIONS)
    cascade_severity: float = _f(1.5, "cascade severity above this trigger", gt=0)
    cascade_action: str = _f("pull", "action when the cascade trigger fires", choices=RISK_ACTIONS)
    rate_limit_errors: int = _f(2, "rate-limit errors in a row trigger", ge=1)
    rate_limit_action: str = _f("halt", "action when the rate limit trigger fires", choices=RISK_ACTIONS)
    losing_fills: int = _f(5, "losing fills in a row trigger", ge=1)
    losing_fills_action: str = _f("pause", "action when the losing fills trigger fires", choices=RISK_ACTIONS)
    losing_fills_pause_s: float = _f(4 * 3600.0, "length of a pause action (losing fills), s", ge=0)
    widen_bp: int = _f(5, "extra half-spread of a widen action, bp", ge=0)
    error_burst_per_hour: int = _f(10, "more errors than this in an hour trigger", ge=0)
    error_burst_action: str = _f("halt", "action when the error burst trigger fires", choices=RISK_ACTIONS)
    margin_alert_pct: float = _f(60.0, "margin utilisation alert, %", gt=0, le=100)
    margin_reduce_only_pct: float = _f(80.0, "margin utilisation -> REDUCE_ONLY, %", gt=0, le=100)
    margin_halt_pct: float = _f(90.0, "margin utilisation -> HALT, %", gt=0, le=100)
    reentry_wait_s: float = _f(300.0, "wait after a halt before re-entry", ge=0)
    reentry_limit_fraction: float = _f(0.5, "limits on re-entry, fraction of normal", gt=0, le=1)
    full_limits_after_s: float = _f(3600.0, "quoting this long after re-entry without a halt restores full limits", ge=0)
    rehalt_window_s: float = _f(3600.0, "halted again within this -> halted for the UTC day", ge=0)
    max_halts_per_day: int = _f(3, "halts in a UTC day after which only `mmshm resume` restarts", ge=1)
    postmortem_dir: str = _f("", "post-mortem JSON directory (empty = <state_dir>/<instance>/postmortem)", auto=True)


@dataclass(frozen=True)
class ExecutorConfig:
    """Order management: amend tolerances, timeouts, dead-man switch, batching."""

    price_tolerance_ticks: int = _f(0, "leave an order alone if its price is within this", ge=0)
    size_tolerance_lots: int = _f(0, "leave an order alone if its size is within this", ge=0)
    price_tolerance_bp: float = _f(0.5, "leave an order alone if its price is within this many bp "
                                   "(or price_tolerance_ticks, whichever is larger)", ge=0)
    price_tolerance_distance: float = _f(0.3, "... or within this fraction of the level's distance "
                                         "from the mid (far levels may drift further)", ge=0, le=1)
    requote_rate_per_s: float = _f(8.0, "places + amends per second per instrument, sustained "
                                   "(token bucket; cancels never wait; 0 = unlimited)", ge=0)
    requote_burst: int = _f(24, "places + amends allowed at once per instrument (bucket depth)", ge=1)
    prefer_amend: bool = _f(True, "modify instead of cancel + new where the venue allows")
    pending_timeout_ms: int = _f(5000, "pending state longer than this -> query, then cancel-all", ge=1)
    deadman_countdown_ms: int = _f(10_000, "venue countdown cancel-all timer", ge=1000)
    deadman_refresh_ms: int = _f(3000, "how often the countdown is refreshed (< countdown)", ge=100)
    batch_size: int = _f(5, "orders per batch request (Binance allows 5)", ge=1, le=5)
    prefer_ws: bool = _f(True, "order entry over the WebSocket API, REST as fallback")
    cancel_all_timeout_s: float = _f(10.0, "budget for a verified cancel-all", gt=0)
    request_timeout_s: float = _f(5.0, "timeout of one venue request", gt=0)
    cancel_retry_backoff_s: float = _f(0.05, "first backoff between per-order cancel retries", gt=0)
    breaker_failures: int = _f(3, "consecutive 429/5xx/timeouts that open the breaker", ge=1)
    breaker_rejects: int = _f(20, "rejects within breaker_reject_window_s that open the breaker", ge=1)
    breaker_reject_window_s: float = _f(1.0, "window of the reject count", gt=0)
    breaker_backoff_base_s: float = _f(0.1, "first breaker backoff (exponential, jittered)", gt=0)
    breaker_backoff_max_s: float = _f(30.0, "longest breaker backoff", gt=0)
    control_stale_ms: int = _f(1000, "control block heartbeat older than this = no limits: HALT, cancel all", ge=1)
    tick_interval_ms: int = _f(100, "housekeeping period (timeouts, reconnect, reconcile)", ge=1)
    halt_drain_ms: int = _f(500, "on HALT/FLATTEN/stop, the longest wait for the requests in flight "
                            "before the cancel-all (then they are cut and the cancel-all repeats)", ge=0)
    replan_ms: int = _f(250, "an unchanged target is planned again at most this often when orders "
                        "changed under it (an order ended, a request was refused)", ge=1)


RoleTimeouts = _roles_table(
    "RoleTimeouts", "per-role heartbeat timeout, s (none = watchdog.heartbeat_timeout_s)",
    {"feed": None, "quoter": None, "executor": 3.0, "risk": None, "watchdog": 5.0,
     "recorder": 5.0, "exporter": 10.0}, "float | None", gt=0)
IdleLimits = _roles_table(
    "IdleLimits", "fresh heartbeat but every written segment still this long (s) = idle "
    "(none = never idle)",
    {"feed": 30.0, "quoter": None, "executor": None, "risk": None, "watchdog": None,
     "recorder": None, "exporter": None}, "float | None", gt=0)


@dataclass(frozen=True)
class WatchdogConfig:
    """Supervision of every process through the process table and segment headers.

    Keys are those of :class:`mmshm.monitor.policy.WatchdogPolicy`:
    ``WatchdogPolicy.from_mapping(section_mapping(cfg.watchdog))``.
    """

    interval_s: float = _f(0.25, "check interval (the watchdog sleeps between checks)", gt=0)
    heartbeat_timeout_s: float = _f(2.0, "heartbeat older than this with the pid alive = hung", gt=0)
    role_timeouts: RoleTimeouts = _f(factory=RoleTimeouts, doc="per-role hung timeout")  # type: ignore[valid-type]
    starting_timeout_s: float = _f(30.0, "hung timeout while STARTING (venue connect)", gt=0)
    stopping_timeout_s: float = _f(60.0, "hung timeout while STOPPING (cancel-all)", gt=0)
    idle_limits: IdleLimits = _f(factory=IdleLimits, doc="per-role idle limit")  # type: ignore[valid-type]
    critical_roles: tuple[str, ...] = _f(factory=lambda: ("feed", "quoter", "risk"),
                                         doc="roles whose death or hang raises HALT", choices=ROLES)
    kill_hung: bool = _f(True, "kill processes found hung")
    kill_signal: str = _f("SIGKILL", "signal sent to a hung process")
    halt_on_critical: bool = _f(True, "raise HALT when a critical role is dead, hung or killed")
    auto_clear_halt_s: float | None = _f(None, "clear the watchdog HALT after this long with all "
                                         "critical roles OK (none = only SIGHUP clears it)", gt=0)
    slow_reader_checks: int = _f(3, "checks with growing lag before a reader is slow", ge=1)
    slow_reader_min_lag: int = _f(1024, "minimum lag (messages) of a slow reader", ge=0)
    pid_reuse_tolerance_s: float = _f(2.0, "start-time slack when detecting a reused pid", gt=0)


@dataclass(frozen=True)
class ExporterConfig:
    """Prometheus /metrics, /health, /ready."""

    host: str = _f("127.0.0.1", "bind address (keep on loopback unless fronted)")
    port: int = _f(9464, "port (0 = ephemeral)", ge=0, le=65535)


@dataclass(frozen=True)
class RecorderConfig:
    """The journal (SQLite, WAL) and optional market-data captures."""

    sqlite_path: str = _f("", "journal (empty = <state_dir>/<instance>/journal.sqlite)", auto=True)
    capture_dir: str = _f("", "capture files (empty = <state_dir>/<instance>/captures)", auto=True)
    capture_md: bool = _f(False, "also write md into capture files")
    commit_interval_ms: int = _f(100, "longest time between SQLite commits", ge=1)


@dataclass(frozen=True)
class LoggingConfig:
    """JSON lines to stdout (journald) or a file."""

    level: str = _f("INFO", "log level", choices=LOG_LEVELS)
    file: str = _f("", "log file (empty = stdout)")
    queue_size: int = _f(10_000, "records buffered before new ones are dropped (counted)", ge=16)


_ROOT_SCALARS = ("instance", "mode", "state_dir")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. Use :func:`load_config` to build one.

    ``sources`` maps each dotted key (``risk.daily_loss_pct``) to where its value came from.
    """

    instance: str = _f("main", "instance name; segments are /mmshm-<instance>-<segment>")
    mode: str = _f("paper", "observe|shadow|paper|testnet|live", choices=MODES)
    state_dir: str = _f("", "state directory (empty = $STATE_DIRECTORY, else ~/.local/state/mmshm)", auto=True)
    cpus: CpusConfig = _f(factory=CpusConfig)  # type: ignore[valid-type]
    idle: IdleConfig = _f(factory=IdleConfig)
    gc: GcConfig = _f(factory=GcConfig)
    segments: SegmentsConfig = _f(factory=SegmentsConfig)
    venue: VenueConfig = _f(factory=VenueConfig)
    feed: FeedConfig = _f(factory=FeedConfig)
    quoter: QuoterConfig = _f(factory=QuoterConfig)
    risk: RiskConfig = _f(factory=RiskConfig)
    executor: ExecutorConfig = _f(factory=ExecutorConfig)
    watchdog: WatchdogConfig = _f(factory=WatchdogConfig)
    exporter: ExporterConfig = _f(factory=ExporterConfig)
    recorder: RecorderConfig = _f(factory=RecorderConfig)
    logging: LoggingConfig = _f(factory=LoggingConfig)
    # Provenance (not configuration): excluded from comparisons.
    profile: str | None = field(default=None, compare=False)
    path: str | None = field(default=None, compare=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    ignored_env: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def get(self, key: str) -> Any:
        """Value at a dotted key, e.g. ``cfg.get("risk.daily_loss_pct")``."""
        obj: Any = self
        for part in key.split("."):
            if not dataclasses.is_dataclass(obj) or part not in _field_map(type(obj)):
                raise KeyError(key)
            obj = getattr(obj, part)
        return obj

    def source(self, key: str) -> str:
        """Where the value at a dotted key came from (``default``, ``env MMSHM_...``, ...)."""
        return self.sources[key]

    def items(self) -> Iterator[tuple[str, Any, str]]:
        """(dotted key, value, source) for every leaf value, in schema order."""
        for key in leaf_keys():
            yield key, self.get(key), self.sources.get(key, "default")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict of the configuration (tuples as lists), without provenance."""
        def conv(obj: Any) -> Any:
            if dataclasses.is_dataclass(obj):
                return {f.name: conv(getattr(obj, f.name)) for f in _schema_fields(type(obj))}
            if isinstance(obj, tuple):
                return list(obj)
            return obj
        return conv(self)

    def role_cpu(self, role: str) -> int | None:
        """CPU the role is pinned to, None when unpinned."""
        return getattr(self.cpus, role)

    def role_idle(self, role: str) -> str:
        """Idle strategy of the role: busy, yield or sleep."""
        return getattr(self.idle, role)


_PROVENANCE = frozenset({"profile", "path", "sources", "ignored_env"})


def _schema_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not (cls is Config and f.name in _PROVENANCE)]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, globalns=globals())
    return _HINTS[cls]


def _field_map(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in _schema_fields(cls)}


def leaf_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema, in declaration order."""
    out: list[str] = []
    hints = _hints(cls)
    for f in _schema_fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.extend(leaf_keys(tp, f"{prefix}{f.name}."))
        else:
            out.append(f"{prefix}{f.name}")
    return out


def _leaf_spec(key: str) -> tuple[Any, dataclasses.Field] | None:
    """(type, field) of a dotted leaf key, None if the key is not a leaf of the schema."""
    cls: type = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fmap = _field_map(cls)
        if part not in fmap:
            return None
        tp = _hints(cls)[part]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            if i == len(parts) - 1:
                return None
            cls = tp
            continue
        return (tp, fmap[part]) if i == len(parts) - 1 else None
    return None


def describe_key(key: str) -> str:
    """The one-line meaning of a dotted key (for ``mmshm config show --doc``)."""
    spec = _leaf_spec(key)
    if spec is None:
        raise KeyError(key)
    return spec[1].metadata.get("doc", "")


def _table_keys(prefix: str) -> list[str]:
    """Keys directly under a (dotted) table prefix; '' is the top level."""
    cls: type = Config
    if prefix:
        for part in prefix.split("."):
            cls = _hints(cls)[part]
    return [f.name for f in _schema_fields(cls)]


def _is_table(key: str) -> bool:
    cls: type = Config
    for part in key.split("."):
        fmap = _field_map(cls)
        if part not in fmap:
            return False
        cls = _hints(cls)[part]
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return False
    return True


# --------------------------------------------------------------------------- layers

@dataclass
class _Value:
    value: Any
    source: str
    raw: str | None = None  # the original text for env/CLI values


class _Layers:
    """Raw values per dotted key, later layers winning; unknown keys collected as problems."""

    def __init__(self) -> None:
        self.values: dict[str, _Value] = {}
        self.problems: list[str] = []

    def add_table(self, table: Mapping[str, Any], source: str, prefix: str = "",
                  skip: frozenset[str] = frozenset()) -> None:
        for name, value in table.items():
            if not prefix and name in skip:
                continue
            key = f"{prefix}{name}"
            if _is_table(key):
                if not isinstance(value, Mapping):
                    self.problems.append(f"{key} = {value!r} (from {source}): expected a table [{key}]")
                    continue
                self.add_table(value, source, key + ".")
            elif _leaf_spec(key) is not None:
                self.values[key] = _Value(value, source)
            else:
                self.problems.append(_unknown_key(key, value, source))

    def add_raw(self, key: str, raw: str, source: str) -> None:
        if _leaf_spec(key) is None:
            self.problems.append(_unknown_key(key, raw, source))
            return
        self.values[key] = _Value(_parse_scalar(raw), source, raw)

    def add_value(self, key: str, value: Any, source: str) -> None:
        if _leaf_spec(key) is None:
            self.problems.append(_unknown_key(key, value, source))
            return
        raw = value if isinstance(value, str) else None
        self.values[key] = _Value(_parse_scalar(value) if raw is not None else value, source, raw)


def _unknown_key(key: str, value: Any, source: str) -> str:
    prefix, _, name = key.rpartition(".")
    try:
        known = _table_keys(prefix)
    except (KeyError, TypeError):
        known = []
        # the table itself is unknown: suggest among the top level
        head = key.split(".")[0]
        close = difflib.get_close_matches(head, _table_keys(""), n=1)
        hint = f"did you mean [{close[0]}]? " if close else ""
        return (f"unknown key {key} = {value!r} (from {source}): {hint}known top-level keys "
                f"and sections: {', '.join(_table_keys(''))}")
    close = difflib.get_close_matches(name, known, n=1)
    where = f"[{prefix}]" if prefix else "the top level"
    hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}? " if close else ""
    return (f"unknown key {key} = {value!r} (from {source}): {hint}"
            f"known keys in {where}: {', '.join(known)}")


def _parse_scalar(raw: str) -> Any:
    """An env/CLI string read as a TOML value when it is one, else the plain string."""
    text = raw.strip()
    if text.lower() in _NONE_WORDS:
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


# --------------------------------------------------------------------------- coercion and checks

def _describe_type(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (UnionType, typing.Union):
        inner = [a for a in args if a is not NoneType]
        return f"{_describe_type(inner[0])} or \"none\""
    if typing.get_origin(tp) is tuple:
        return f"a list of {_describe_type(args[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(tp: Any, v: _Value) -> Any:
    """Convert a raw value to the field's type, or raise ValueError with what was expected."""
    value = v.value
    origin = typing.get_origin(tp)
    if origin in (UnionType, typing.Union):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        inner = [a for a in typing.get_args(tp) if a is not NoneType][0]
        try:
            return _coerce(inner, v)
        except ValueError:
            raise ValueError(_describe_type(tp)) from None
    if origin is tuple:
        elem = typing.get_args(tp)[0]
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(_describe_type(tp))
        return tuple(_coerce(elem, _Value(x, v.source)) for x in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        if v.raw is not None and v.raw.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[v.raw.strip().lower()]
        raise ValueError("true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("a number")
        if not math.isfinite(value):
            raise ValueError("a finite number")
        return float(value)
    if tp is str:
        if v.raw is not None:  # env/CLI text is taken verbatim for strings (MMSHM_INSTANCE=007)
            return v.raw
        if value is None:
            raise ValueError("a string")
        if not isinstance(value, str):
            raise ValueError("a string")
        return value
    raise ValueError(f"unsupported type {tp}")  # pragma: no cover - schema bug


def _check_rules(value: Any, md: Mapping[str, Any]) -> str | None:
    """The expectation the value breaks, or None."""
    if value is None:
        return None
    if isinstance(value, tuple):
        for x in value:
            problem = _check_rules(x, md)
            if problem:
                return problem
        return None
    if md.get("choices") and value not in md["choices"]:
        return "one of " + ", ".join(md["choices"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if md.get("ge") is not None and value < md["ge"]:
            return f"a value >= {md['ge']}"
        if md.get("gt") is not None and value <= md["gt"]:
            return f"a value > {md['gt']}"
        if md.get("le") is not None and value > md["le"]:
            return f"a value <= {md['le']}"
        if md.get("pow2") and (value <= 0 or value & (value - 1)):
            return "a power of two"
    return None


def _cross_checks(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    """Rules that span several keys."""
    problems: list[str] = []

    def need(cond: bool, a: str, b: str, rel: str) -> None:
        if not cond:
            problems.append(f"{a} = {values[a]!r} (from {sources[a]}) must be {rel} "
                            f"{b} = {values[b]!r} (from {sources[b]})")

    need(values["risk.margin_alert_pct"] < values["risk.margin_reduce_only_pct"],
         "risk.margin_alert_pct", "risk.margin_reduce_only_pct", "<")
    need(values["risk.margin_reduce_only_pct"] < values["risk.margin_halt_pct"],
         "risk.margin_reduce_only_pct", "risk.margin_halt_pct", "<")
    need(values["executor.deadman_refresh_ms"] < values["executor.deadman_countdown_ms"],
         "executor.deadman_refresh_ms", "executor.deadman_countdown_ms", "<")
    need(values["feed.reconnect_backoff_base_s"] <= values["feed.reconnect_backoff_max_s"],
         "feed.reconnect_backoff_base_s", "feed.reconnect_backoff_max_s", "<=")
    need(values["executor.breaker_backoff_base_s"] <= values["executor.breaker_backoff_max_s"],
         "executor.breaker_backoff_base_s", "executor.breaker_backoff_max_s", "<=")
    need(values["idle.min_park_ns"] <= values["idle.max_park_ns"],
         "idle.min_park_ns", "idle.max_park_ns", "<=")
    need(values["idle.min_park_ns"] <= values["idle.hot_max_park_ns"],
         "idle.min_park_ns", "idle.hot_max_park_ns", "<=")
    need(values["idle.cold_min_park_ns"] <= values["idle.max_park_ns"],
         "idle.cold_min_park_ns", "idle.max_park_ns", "<=")
    need(values["feed.publish_levels"] <= values["feed.book_depth"],
         "feed.publish_levels", "feed.book_depth", "<=")
    need(values["quoter.min_half_spread_bp"] <= values["quoter.max_half_spread_bp"],
         "quoter.min_half_spread_bp", "quoter.max_half_spread_bp", "<=")
    if len(values["quoter.level_sizes"]) < values["quoter.levels"]:
        problems.append(f"quoter.level_sizes = {list(values['quoter.level_sizes'])} (from "
                        f"{sources['quoter.level_sizes']}): expected at least quoter.levels = "
                        f"{values['quoter.levels']} sizes (from {sources['quoter.levels']})")
    tau = values["quoter.vol_half_life_s"] / math.log(2.0)
    if values["quoter.vol_warmup_s"] >= tau:
        problems.append(f"quoter.vol_warmup_s = {values['quoter.vol_warmup_s']} (from "
                        f"{sources['quoter.vol_warmup_s']}): expected below vol_half_life_s/ln 2 = "
                        f"{tau:.3g} s, or the volatility never warms up")
    n_sym = len(values["venue.symbols"])
    for key in ("segments.book_rows", "segments.instruments_rows", "segments.targets_rows"):
        if values[key] < n_sym:
            problems.append(f"{key} = {values[key]} (from {sources[key]}) is smaller than the "
                            f"{n_sym} venue.symbols: expected at least {n_sym}")
    if values["segments.control_rows"] < n_sym + 1:
        problems.append(f"segments.control_rows = {values['segments.control_rows']} (from "
                        f"{sources['segments.control_rows']}): expected at least {n_sym + 1} "
                        f"(row 0 global + one per symbol)")
    if not values["venue.symbols"]:
        problems.append(f"venue.symbols = [] (from {sources['venue.symbols']}): expected at least one symbol")
    inst = values["instance"]
    if not _INSTANCE_RE.match(inst):
        problems.append(f"instance = {inst!r} (from {sources['instance']}): expected 1-40 "
                        f"letters, digits or '_' (it is part of /mmshm-<instance>-<segment>)")
    sig = values["watchdog.kill_signal"]
    if not (isinstance(sig, str) and sig.upper() in signal.Signals.__members__):
        problems.append(f"watchdog.kill_signal = {sig!r} (from {sources['watchdog.kill_signal']}): "
                        f"expected a signal name such as SIGKILL or SIGTERM")
    if values["venue.name"] == "replay" and not values["venue.replay_file"]:
        problems.append(f"venue.replay_file = '' (from {sources['venue.replay_file']}): "
                        f"expected a capture file when venue.name = 'replay'")
    if values["mode"] in ("testnet", "live") and values["venue.name"] in ("sim", "replay"):
        problems.append(f"mode = {values['mode']!r} (from {sources['mode']}) needs a real venue, "
                        f"but venue.name = {values['venue.name']!r} (from {sources['venue.name']})")
    return problems


# --------------------------------------------------------------------------- built-in profiles

#: Profiles available without a file. A ``[profiles.NAME]`` table in the config file
#: replaces the built-in profile of the same name.
BUILTIN_PROFILES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # CI and shared machines: nothing pinned, everything sleeps, small segments.
    "ci": {
        "cpus": {r: "none" for r in ROLES},
        "idle": {r: "sleep" for r in ROLES},
        "segments": {"md_capacity": 1 << 12, "orders_capacity": 1 << 10},
        "exporter": {"port": 0},
    },
    # A developer laptop: unpinned, sleeping, the simulated venue.
    "laptop": {
        "cpus": {r: "none" for r in ROLES},
        "idle": {r: "sleep" for r in ROLES},
    },
})


def _state_dir_default(env: Mapping[str, str]) -> tuple[str, str]:
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; the first is ours.
        return env["STATE_DIRECTORY"].split(":")[0], "default (auto: $STATE_DIRECTORY)"
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return str(Path(base) / "mmshm"), "default (auto: ~/.local/state/mmshm)"


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _auto_defaults(values: dict[str, _Value], env: Mapping[str, str]) -> None:
    """Defaults that depend on the machine or on other values, filled where still unset."""
    ncpu = _available_cpus()
    for role in ROLES:
        key = f"idle.{role}"
        if key not in values:
            if ncpu < len(ROLES):
                values[key] = _Value("sleep", f"default (auto: {ncpu} cores < {len(ROLES)} processes)")
            else:
                strat = "yield" if role in ("feed", "quoter", "executor") else "sleep"
                values[key] = _Value(strat, f"default (auto: {ncpu} cores)")
    if "state_dir" not in values or not values["state_dir"].value:
        path, src = _state_dir_default(env)
        values["state_dir"] = _Value(path, src)


def _derived_paths(final: dict[str, Any], sources: dict[str, str]) -> None:
    base = Path(final["state_dir"]) / final["instance"]
    for key, leaf in (("recorder.sqlite_path", "journal.sqlite"), ("recorder.capture_dir", "captures"),
                      ("risk.postmortem_dir", "postmortem")):
        if not final[key]:
            final[key] = str(base / leaf)
            sources[key] = f"default (auto: <state_dir>/<instance>/{leaf})"


# --------------------------------------------------------------------------- loading

def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{what} {path} does not exist"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{what} {path} is not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"{what} {path} cannot be read: {exc}"]) from None


def _cli_pairs(cli_overrides: Mapping[str, Any] | Sequence[str] | None) -> list[tuple[str, Any, bool]]:
    """(dotted key, value, value_is_text) from a dict (nested or dotted) or a list of 'a.b=c'."""
    if not cli_overrides:
        return []
    out: list[tuple[str, Any, bool]] = []
    if isinstance(cli_overrides, Mapping):
        def walk(d: Mapping[str, Any], prefix: str) -> None:
            for k, v in d.items():
                key = f"{prefix}{k}"
                if isinstance(v, Mapping) and _is_table(key):
                    walk(v, key + ".")
                else:
                    out.append((key, v, isinstance(v, str)))
        walk(cli_overrides, "")
        return out
    for item in cli_overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {item!r}: expected KEY=VALUE, e.g. risk.daily_loss_pct=0.4"])
        out.append((key.strip(), raw, True))
    return out


def load_config(path: str | os.PathLike[str] | None = None, profile: str | None = None,
                overrides_file: str | os.PathLike[str] | None = None,
                cli_overrides: Mapping[str, Any] | Sequence[str] | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Build the validated :class:`Config` from every layer.

    ``path``: the TOML file (default ``$MMSHM_CONFIG``, else none: built-in defaults).
    ``profile``: a ``[profiles.NAME]`` table of the file or a built-in profile (default
    ``$MMSHM_PROFILE``, else the file's top-level ``profile = "..."``, else none).
    ``overrides_file``: a second TOML file with the same keys (default ``$MMSHM_OVERRIDES``).
    ``cli_overrides``: ``{"risk.daily_loss_pct": 0.4}``, ``{"risk": {...}}`` or
    ``["risk.daily_loss_pct=0.4"]``. ``env``: the environment (default ``os.environ``).
    Raises :class:`ConfigError` listing every problem.
    """
    env = os.environ if env is None else env
    layers = _Layers()
    file_data: dict[str, Any] = {}
    cfg_path = path if path is not None else (env.get("MMSHM_CONFIG") or None)
    if cfg_path is not None:
        cfg_path = Path(cfg_path)
        file_data = _read_toml(cfg_path, "config file")
        layers.add_table(file_data, f"file {cfg_path}", skip=frozenset({"profile", "profiles"}))

    # profile
    profile_src = "argument"
    if profile is None and env.get("MMSHM_PROFILE"):
        profile, profile_src = env["MMSHM_PROFILE"], "env MMSHM_PROFILE"
    if profile is None and "profile" in file_data:
        profile, profile_src = file_data["profile"], f"file {cfg_path}"
        if not isinstance(profile, str):
            raise ConfigError([f"profile = {profile!r} (from {profile_src}): expected a profile name"])
    file_profiles = file_data.get("profiles", {})
    if not isinstance(file_profiles, Mapping):
        raise ConfigError([f"profiles (from file {cfg_path}): expected tables [profiles.NAME]"])
    if profile:
        if profile in file_profiles:
            table = file_profiles[profile]
            if not isinstance(table, Mapping):
                raise ConfigError([f"profiles.{profile} (from file {cfg_path}): expected a table"])
            layers.add_table(table, f"profile {profile} ({cfg_path})")
        elif profile in BUILTIN_PROFILES:
            layers.add_table(BUILTIN_PROFILES[profile], f"profile {profile} (built-in)")
        else:
            known = sorted(set(file_profiles) | set(BUILTIN_PROFILES))
            raise ConfigError([f"profile = {profile!r} (from {profile_src}): no such profile; "
                               f"expected one of {', '.join(known)}"])

    # override file
    ov_path = overrides_file if overrides_file is not None else (env.get("MMSHM_OVERRIDES") or None)
    if ov_path is not None:
        ov_path = Path(ov_path)
        ov = _read_toml(ov_path, "override file")
        for bad in ("profile", "profiles"):
            if bad in ov:
                layers.problems.append(f"{bad} (from override file {ov_path}): profiles are "
                                       f"chosen in the main config file or with --profile")
        layers.add_table(ov, f"override file {ov_path}", skip=frozenset({"profile", "profiles"}))

    # environment: EXCHANGE_ENV and MMSHM_IDLE first so that specific MMSHM_* keys win
    ignored: list[str] = []
    if env.get("EXCHANGE_ENV"):
        layers.add_raw("mode", env["EXCHANGE_ENV"].strip().lower(), "env EXCHANGE_ENV")
    if env.get("MMSHM_IDLE"):
        for role in ROLES:
            layers.add_raw(f"idle.{role}", env["MMSHM_IDLE"].strip().lower(), "env MMSHM_IDLE")
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        key = name[len(ENV_PREFIX):].lower().replace("__", ".")
        if "." not in key and key not in _ROOT_SCALARS:
            ignored.append(name)  # some other tool's MMSHM_* variable, not a config key
            continue
        raw = env[name]
        if key == "mode":
            raw = raw.strip().lower()
        layers.add_raw(key, raw, f"env {name}")

    # command line
    from_list = cli_overrides is not None and not isinstance(cli_overrides, Mapping)
    for key, value, is_text in _cli_pairs(cli_overrides):
        if is_text:
            layers.add_raw(key, value, "cli --set" if from_list else "cli")
        else:
            layers.add_value(key, value, "cli")

    if layers.problems:
        raise ConfigError(layers.problems)
    return _build(layers.values, env, profile, str(cfg_path) if cfg_path is not None else None,
                  tuple(ignored))


def _build(values: dict[str, _Value], env: Mapping[str, str], profile: str | None,
           path: str | None, ignored: tuple[str, ...]) -> Config:
    _auto_defaults(values, env)
    problems: list[str] = []
    final: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in leaf_keys():
        tp, fld = _leaf_spec(key)  # type: ignore[misc]
        if key in values:
            v = values[key]
            try:
                value = _coerce(tp, v)
            except ValueError as exc:
                problems.append(f"{key} = {v.raw if v.raw is not None else v.value!r} "
                                f"(from {v.source}): expected {exc}")
                continue
            src = v.source
        else:
            value = fld.default_factory() if fld.default is dataclasses.MISSING else fld.default  # type: ignore[misc]
            src = "default"
        rule = _check_rules(value, fld.metadata)
        if rule:
            problems.append(f"{key} = {value!r} (from {src}): expected {rule}")
            continue
        final[key] = value
        sources[key] = src
    if not problems:
        problems.extend(_cross_checks(final, sources))
    if problems:
        raise ConfigError(problems)
    final["watchdog.kill_signal"] = final["watchdog.kill_signal"].upper()
    _derived_paths(final, sources)

    def make(cls: type, prefix: str) -> Any:
        kwargs = {}
        for f in _schema_fields(cls):
            tp = _hints(cls)[f.name]
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                kwargs[f.name] = make(tp, f"{prefix}{f.name}.")
            else:
                kwargs[f.name] = final[f"{prefix}{f.name}"]
        return cls(**kwargs)

    root = make(Config, "")
    return dataclasses.replace(root, profile=profile or None, path=path,
                               sources=dict(sources), ignored_env=ignored)


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """Built-in defaults only (no file, no profile); the environment still applies."""
    return load_config(None, None, None, None, env if env is not None else {})


# --------------------------------------------------------------------------- glue to the parts

def section_mapping(section: Any) -> dict[str, Any]:
    """A section as a plain dict for the parts' ``from_mapping``-style constructors.

    Nested per-role tables become dicts without their unset ("none") roles, so
    ``WatchdogPolicy.from_mapping(section_mapping(cfg.watchdog))`` sees only real overrides.
    """
    out: dict[str, Any] = {}
    for f in _schema_fields(type(section)):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = {k: v for k, v in section_mapping(value).items() if v is not None}
        else:
            out[f.name] = value
    return out


def quoter_params_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments for ``mmshm.strategy.params.QuoterParams`` from ``[quoter]``."""
    from mmshm.strategy.params import FairValue, Model  # the strategy is optional to config users

    kw = section_mapping(cfg.quoter)
    kw["model"] = Model[_MODEL_ENUM[cfg.quoter.model]]
    kw["fair_value"] = FairValue[cfg.quoter.fair_value.upper()]
    return kw


def risk_params_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments for ``mmshm.risk.params.RiskParams`` from ``[risk]``.

    Percentages become fractions; "more than N errors an hour" becomes the ``>=`` threshold
    N + 1 that RiskParams uses; money becomes FEE_SCALE units.
    """
    from fractions import Fraction

    from mmshm.records import FEE_SCALE
    from mmshm.risk.params import Action, TriggerSpec

    r = cfg.risk

    def t(threshold: float, action: str) -> Any:
        return TriggerSpec(threshold, Action[action.upper()])

    return {
        "initial_equity": int(Fraction(str(r.equity)) * FEE_SCALE),
        "daily_loss": t(r.daily_loss_pct / 100.0, r.daily_loss_action),
        "drawdown": t(r.drawdown_pct / 100.0, r.drawdown_action),
        "position_runaway": t(r.position_runaway_mult, r.position_runaway_action),
        "stale_md": t(r.stale_md_s, r.stale_md_action),
        "cascade": t(r.cascade_severity, r.cascade_action),
        "rate_limit": t(r.rate_limit_errors, r.rate_limit_action),
        "losing_fills": t(r.losing_fills, r.losing_fills_action),
        "error_burst": t(r.error_burst_per_hour + 1, r.error_burst_action),
        "margin_alert": t(r.margin_alert_pct / 100.0, "alert"),
        "margin_reduce": t(r.margin_reduce_only_pct / 100.0, "reduce_only"),
        "margin_halt": t(r.margin_halt_pct / 100.0, "halt"),
        "pause_s": r.losing_fills_pause_s,
        "widen_bp": r.widen_bp,
        "reentry_wait_s": r.reentry_wait_s,
        "reentry_scale_bp": round(r.reentry_limit_fraction * 10_000),
        "full_limits_after_s": r.full_limits_after_s,
        "rehalt_window_s": r.rehalt_window_s,
        "max_halts_per_day": r.max_halts_per_day,
        "postmortem_dir": Path(r.postmortem_dir),
    }


def instrument_risk_kwargs(cfg: Config) -> dict[str, Any]:
    """The config part of ``mmshm.risk.params.InstrumentRisk`` (limits, leverage, Kelly)."""
    r = cfg.risk
    return {"leverage": r.leverage, "maint_margin_rate": r.maint_margin_rate,
            "max_position": r.max_position_lots or 0, "max_order_qty": r.max_order_lots,
            "kelly_fraction": r.kelly_fraction}


# --------------------------------------------------------------------------- argparse glue

def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config/--profile/--override/--set to a parser (every command and process uses these)."""
    g = parser.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", help="TOML config file (default $MMSHM_CONFIG)")
    g.add_argument("--profile", metavar="NAME", help="profile in the file or built-in (ci, laptop)")
    g.add_argument("--override", metavar="FILE", dest="override_file",
                   help="override TOML file (default $MMSHM_OVERRIDES)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="set",
                   help="set one value, e.g. --set risk.daily_loss_pct=0.4 (repeatable; wins over all)")


def config_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """load_config from the arguments added by :func:`add_config_arguments`."""
    return load_config(getattr(args, "config", None), getattr(args, "profile", None),
                       getattr(args, "override_file", None), getattr(args, "set", None) or None, env)


# --------------------------------------------------------------------------- credentials

class Credentials:
    """API key and secret. ``repr``/``str`` never show them (``abcd...wxyz``)."""

    __slots__ = ("_api_key", "_api_secret", "source")

    def __init__(self, api_key: str | None, api_secret: str | None, source: str):
        self._api_key = api_key
        self._api_secret = api_secret
        self.source = source

    @property
    def api_key(self) -> str | None:
        return self._api_key

    @property
    def api_secret(self) -> str | None:
        return self._api_secret

    @property
    def present(self) -> bool:
        """Both key and secret are set."""
        return bool(self._api_key) and bool(self._api_secret)

    def __repr__(self) -> str:
        return (f"Credentials(api_key={mask(self._api_key)!r}, "
                f"api_secret={mask(self._api_secret)!r}, source={self.source!r})")

    __str__ = __repr__

    def __reduce__(self) -> Any:  # no pickling secrets into other processes by accident
        raise TypeError("Credentials cannot be pickled")


#: Credential file names under $CREDENTIALS_DIRECTORY (systemd LoadCredential=NAME:PATH).
CREDENTIAL_FILES = ("api_key", "api_secret")


def load_credentials(env: Mapping[str, str] | None = None, required: bool = False) -> Credentials:
    """API credentials from ``$CREDENTIALS_DIRECTORY/{api_key,api_secret}`` or the environment.

    Files win over ``MMSHM_API_KEY``/``MMSHM_API_SECRET``. Values are registered with the
    log masker so they never reach a log line. ``required=True`` raises ConfigError when
    either is missing (testnet/live modes).
    """
    env = os.environ if env is None else env
    key = secret = None
    sources = []
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for name in CREDENTIAL_FILES:
            p = Path(cred_dir) / name
            try:
                text = p.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError([f"credential {p} cannot be read: {exc.strerror}"]) from None
            if text:
                if name == "api_key":
                    key = text
                else:
                    secret = text
                sources.append(f"$CREDENTIALS_DIRECTORY/{name}")
    if key is None and env.get("MMSHM_API_KEY"):
        key = env["MMSHM_API_KEY"].strip()
        sources.append("env MMSHM_API_KEY")
    if secret is None and env.get("MMSHM_API_SECRET"):
        secret = env["MMSHM_API_SECRET"].strip()
        sources.append("env MMSHM_API_SECRET")
    for value in (key, secret):
        if value:
            register_secret(value)
    creds = Credentials(key, secret, ", ".join(sources) or "none")
    if required and not creds.present:
        missing = [n for n, v in (("api_key", key), ("api_secret", secret)) if not v]
        raise ConfigError([f"credentials missing: {', '.join(missing)}; expected files in "
                           f"$CREDENTIALS_DIRECTORY (systemd LoadCredential=) or env "
                           f"MMSHM_API_KEY / MMSHM_API_SECRET"])
    return creds


__all__ = [
    "BUILTIN_PROFILES", "Config", "ConfigError", "Credentials", "describe_key", "HOT_ROLES", "IDLE_STRATEGIES", "MODES",
    "ROLES", "VENUES", "add_config_arguments", "config_from_args", "default_config",
    "leaf_keys", "load_config", "load_credentials", "quoter_params_kwargs", "section_mapping",
    "risk_params_kwargs", "instrument_risk_kwargs",
]
