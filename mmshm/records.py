"""Every shared-memory record, declared once as a numpy structured dtype.

The Cython side reads the same layouts (``cython_src/records.pxd`` declares matching
packed structs; ``tests/unit/test_records.py`` proves the offsets match). Rules:

- Every record that travels in a ring starts with ``seq`` (uint64), owned by the ring: the
  ring stores it last, with release semantics, and readers poll it.
- Every row of a seqlock table starts with ``version`` (uint64), owned by the table.
- Record sizes are multiples of 64 bytes; all int64/uint64 fields are 8-byte aligned so
  single fields can be read and written atomically.
- Prices are int64 ticks of the instrument, quantities int64 lots, fees int64 in
  ``FEE_SCALE`` units of the quote asset, timestamps int64 ns (``*_ts``: realtime for
  venue/local receive times, ``*_mono``: CLOCK_MONOTONIC).
"""
from __future__ import annotations

import hashlib
from enum import IntEnum

import numpy as np

#: Fees and money amounts are int64 in units of 1e-8 of the quote asset.
FEE_SCALE = 100_000_000
#: Book levels published per side in the book seqlock table.
BOOK_DEPTH = 20
#: Quote levels per side in the targets table.
TARGET_LEVELS = 5
#: Counters per process row in the process table.
PROC_COUNTERS = 16


def _padded(fields: list[tuple], size: int) -> np.dtype:
    """A packed dtype from ``fields``, padded with a trailing ``_pad`` to exactly ``size`` bytes."""
    dt = np.dtype(fields)
    if dt.itemsize > size:
        raise ValueError(f"record of {dt.itemsize} bytes does not fit {size}")
    if dt.itemsize < size:
        dt = np.dtype(fields + [("_pad", "u1", (size - dt.itemsize,))])
    return dt


def dtype_hash(dtype: np.dtype) -> int:
    """A stable 64-bit hash of a dtype's names, formats, offsets and size (stored in headers)."""
    desc = repr((dtype.itemsize, [(n, dtype.fields[n][0].str, dtype.fields[n][0].shape, dtype.fields[n][1]) for n in dtype.names]))
    return int.from_bytes(hashlib.blake2b(desc.encode(), digest_size=8).digest(), "little")


# --------------------------------------------------------------------------- market data

class MdKind(IntEnum):
    """What a MARKET_EVENT carries."""
    BOOK_TOP = 1   # best bid/ask changed (prices/qtys in bid_*/ask_*)
    TRADE = 2      # a public trade (price/qty in trade_*, side in `side`)
    STATUS = 3     # feed/book status change (see MdStatus in `status`)


class MdStatus(IntEnum):
    """Book/feed status carried by STATUS events and by book rows."""
    UNKNOWN = 0
    SYNCING = 1    # waiting for snapshot / first diff
    LIVE = 2       # in sync, tradeable
    STALE = 3      # gap, crossed book, or silence: do not trade on it
    DISCONNECTED = 4


class Side(IntEnum):
    NONE = 0
    BUY = 1
    SELL = 2


MARKET_EVENT = _padded([
    ("seq", "<u8"),          # ring-owned
    ("md_seq", "<u8"),       # the feed's sequence number for this event (1, 2, ...)
    ("kind", "u1"),          # MdKind
    ("side", "u1"),          # Side of the aggressor for trades
    ("instrument", "<u2"),   # index into the instrument table
    ("status", "<u2"),       # MdStatus (STATUS events; book status otherwise)
    ("venue", "<u2"),        # venue id (mmshm.venues registry)
    ("venue_ts", "<i8"),     # venue event time, realtime ns
    ("local_ts", "<i8"),     # local receive time, realtime ns
    ("publish_mono", "<i8"), # monotonic ns when published (latency per stage)
    ("update_id", "<u8"),    # venue book update id (Binance `u`) or 0
    ("bid_px", "<i8"),
    ("bid_qty", "<i8"),
    ("ask_px", "<i8"),
    ("ask_qty", "<i8"),
    ("trade_px", "<i8"),
    ("trade_qty", "<i8"),
    ("trade_id", "<u8"),
], 128)


BOOK_ROW = _padded([
    ("version", "<u8"),      # seqlock-owned
    ("instrument", "<u2"),
    ("status", "<u2"),       # MdStatus
    ("n_bids", "<u2"),
    ("n_asks", "<u2"),
    ("md_seq", "<u8"),       # feed sequence of the event that produced this book
    ("update_id", "<u8"),
    ("venue_ts", "<i8"),
    ("local_ts", "<i8"),
    ("publish_mono", "<i8"),
    ("bid_px", "<i8", (BOOK_DEPTH,)),
    ("bid_qty", "<i8", (BOOK_DEPTH,)),
    ("ask_px", "<i8", (BOOK_DEPTH,)),
    ("ask_qty", "<i8", (BOOK_DEPTH,)),
], 704)


INSTRUMENT_ROW = _padded([
    ("version", "<u8"),
    ("instrument", "<u2"),
    ("venue", "<u2"),
    ("price_exp", "i1"),     # tick size = tick_mantissa * 10**price_exp
    ("qty_exp", "i1"),       # lot size  = lot_mantissa  * 10**qty_exp
    ("_r0", "u1", (2,)),
    ("tick_mantissa", "<i8"),
    ("lot_mantissa", "<i8"),
    ("min_qty", "<i8"),      # lots
    ("max_qty", "<i8"),      # lots
    ("min_notional", "<i8"), # FEE_SCALE units of quote asset
    ("maker_fee_ppm", "<i8"),# fee rate, parts per million (negative = rebate)
    ("taker_fee_ppm", "<i8"),
    ("symbol", "S16"),
    ("quote_asset", "S8"),
], 128)


# --------------------------------------------------------------------------- trading

class OrderEventKind(IntEnum):
    """What an ORDER_EVENT reports; SENT kinds are the executor's own requests."""
    NEW_SENT = 1
    AMEND_SENT = 2
    CANCEL_SENT = 3
    ACK = 4            # venue accepted the new order
    AMENDED = 5        # venue accepted a modify
    REJECT = 6         # venue rejected a request (reason in `reason`)
    FILL = 7           # a (partial) fill: fill_px/fill_qty/fee/trade_id
    CANCELED = 8
    EXPIRED = 9        # e.g. post-only (GTX) that would have crossed
    CANCEL_REJECT = 10
    RECONCILE = 11     # state merged from the venue at start-up/reconnect


class OrderStatus(IntEnum):
    PENDING_NEW = 1
    NEW = 2
    PARTIALLY_FILLED = 3
    FILLED = 4
    PENDING_CANCEL = 5
    CANCELED = 6
    REJECTED = 7
    EXPIRED = 8


ORDER_EVENT = _padded([
    ("seq", "<u8"),          # ring-owned
    ("kind", "u1"),          # OrderEventKind
    ("side", "u1"),          # Side
    ("instrument", "<u2"),
    ("status", "u1"),        # OrderStatus after this event
    ("flags", "u1"),         # bit0 post-only, bit1 reduce-only, bit2 maker (fills)
    ("reason", "<i2"),       # venue error code for rejects (e.g. -5022), else 0
    ("client_id", "<u8"),    # numeric client order id (unique across restarts)
    ("venue_order_id", "<u8"),
    ("price", "<i8"),        # ticks
    ("qty", "<i8"),          # lots (order quantity)
    ("filled_qty", "<i8"),   # cumulative lots filled
    ("fill_px", "<i8"),      # ticks (FILL)
    ("fill_qty", "<i8"),     # lots (FILL)
    ("fee", "<i8"),          # FEE_SCALE units of quote asset (FILL; negative = rebate)
    ("trade_id", "<u8"),     # venue trade id (FILL): fills are deduplicated by it
    ("md_seq", "<u8"),       # market-data sequence the order was priced from
    ("venue_ts", "<i8"),     # venue event/transaction time, realtime ns
    ("local_ts", "<i8"),     # local time this event was observed, realtime ns
    ("sent_mono", "<i8"),    # monotonic ns the request was written to the socket
    ("event_mono", "<i8"),   # monotonic ns this event was published
], 128)


TARGET_ROW = _padded([
    ("version", "<u8"),
    ("instrument", "<u2"),
    ("n_bids", "u1"),
    ("n_asks", "u1"),
    ("flags", "<u4"),        # bit0 pull all quotes
    ("md_seq", "<u8"),       # market-data sequence the targets were priced from
    ("quote_mono", "<i8"),   # monotonic ns the targets were written
    ("md_publish_mono", "<i8"),  # publish_mono of the md event priced from (stage latency)
    ("bid_px", "<i8", (TARGET_LEVELS,)),
    ("bid_qty", "<i8", (TARGET_LEVELS,)),
    ("ask_px", "<i8", (TARGET_LEVELS,)),
    ("ask_qty", "<i8", (TARGET_LEVELS,)),
], 256)


class Mode(IntEnum):
    """Risk modes in the control block, least to most restrictive."""
    NORMAL = 0
    WIDEN = 1
    REDUCE_ONLY = 2
    HALT = 3
    FLATTEN = 4


#: Row 0 of the control table is global; row 1 + i is instrument i.
CONTROL_ROW = _padded([
    ("version", "<u8"),
    ("mode", "<u4"),          # Mode
    ("reason", "<u4"),        # trigger code that set the mode (mmshm.risk)
    ("updated_ts", "<i8"),    # realtime ns of the last change
    ("heartbeat_mono", "<i8"),
    ("limit_scale_bp", "<i8"),  # limits multiplier in basis points (10000 = 100%)
    ("max_position", "<i8"),  # lots (instrument rows)
    ("max_order_qty", "<i8"), # lots (instrument rows)
    ("position", "<i8"),      # risk's view of the position, lots (instrument rows)
    ("widen_bp", "<i8"),      # extra half-spread in bp when mode is WIDEN
    ("flags", "<u8"),         # bit0 paused (SIGUSR2 / mmshm pause)
], 128)


# --------------------------------------------------------------------------- processes

class ProcState(IntEnum):
    FREE = 0
    STARTING = 1
    RUNNING = 2
    PAUSED = 3
    STOPPING = 4
    STOPPED = 5
    HALTED = 6


PROCESS_ROW = _padded([
    ("version", "<u8"),
    ("pid", "<i8"),
    ("role", "S16"),
    ("state", "<u4"),         # ProcState
    ("cpu", "<i4"),           # pinned CPU, -1 = not pinned
    ("started_ts", "<i8"),    # realtime ns
    ("heartbeat_mono", "<i8"),
    ("heartbeat_count", "<u8"),
    ("work_count", "<u8"),    # total work done by do_work()
    ("idle_cycles", "<u8"),
    ("counters", "<i8", (PROC_COUNTERS,)),
], 256)


class Verdict(IntEnum):
    OK = 0
    DEAD = 1        # pid gone
    HUNG = 2        # heartbeat stale, pid alive
    IDLE = 3        # heartbeat fresh, cursor still too long
    SLOW_READER = 4 # lag growing
    KILLED = 5      # the watchdog killed it


VERDICT_ROW = _padded([
    ("version", "<u8"),
    ("pid", "<i8"),
    ("role", "S16"),
    ("verdict", "<u4"),       # Verdict
    ("critical", "<u4"),
    ("since_mono", "<i8"),
    ("checked_mono", "<i8"),
    ("heartbeat_age_ns", "<i8"),
    ("halt", "<u8"),          # row 0 only: nonzero = watchdog HALT in force
    ("reason", "S64"),
], 192)


# --------------------------------------------------------------------------- operator commands

class CommandKind(IntEnum):
    """Operator commands (``mmshm halt|resume|pause``) in the ``commands`` table (mmshm.supervisor.commands)."""
    NONE = 0
    HALT = 1       # manual halt: only RESUME lifts it
    RESUME = 2     # a person restarts quoting (risk's manual-resume path), clears pause
    PAUSE = 3      # stop quoting without halting
    UNPAUSE = 4


#: One row (row 0): the latest operator command. Written by short-lived CLI processes,
#: one at a time under the row's claim word; read by risk (and the executor).
COMMAND_ROW = _padded([
    ("version", "<u8"),
    ("seq", "<u8"),           # command number, 1, 2, ...: a reader acts on each new value once
    ("kind", "<u4"),          # CommandKind
    ("_r0", "<u4"),
    ("issued_ts", "<i8"),     # realtime ns
    ("issued_mono", "<i8"),   # monotonic ns
    ("issuer_pid", "<i8"),
    ("reason", "S64"),        # free text (halt reason), UTF-8, NUL-padded
], 128)


# --------------------------------------------------------------------------- quoter signals

#: One row per quoted instrument (row = instrument index), written by the quoter on a
#: timer (``signals`` seqlock table, mmshm.strategy.process); read by risk (cascade
#: trigger, post-mortems), ``mmshm status`` and the exporter. Floats are the quoter's own
#: values (``Quoter.signals()``), so no fixed-point scale is involved.
SIGNAL_ROW = _padded([
    ("version", "<u8"),
    ("instrument", "<u2"),
    ("reason", "<u2"),        # PullReason of the last cycle (0 = quoting)
    ("_r0", "u1", (4,)),
    ("md_seq", "<u8"),        # md sequence of the last target written
    ("updated_mono", "<i8"),  # monotonic ns of this row's write (staleness)
    ("fair_value", "<f8"),    # ticks
    ("sigma_bp", "<f8"),      # EWMA volatility, bp per sqrt(second)
    ("imbalance", "<f8"),     # order-book imbalance in [-1, 1]
    ("leadlag_bp", "<f8"),    # reference venue lead, bp
    ("cascade", "<f8"),       # cascade / falling-knife severity (pull at cascade_pull_at)
    ("res_bp", "<f8"),        # reservation price offset from fair value, bp
    ("half_bp", "<f8"),       # model half-spread, bp
    ("spread_bp", "<f8"),     # quoted best ask - best bid, bp of their mid (NaN: not two-sided)
    ("arrival_a", "<f8"),     # fitted A of lambda(d) = A exp(-k d), 1/s
    ("arrival_k", "<f8"),     # fitted k, 1/bp
], 128)


# --------------------------------------------------------------------------- venue account

class AccountSource(IntEnum):
    """Where an ACCOUNT_ROW's latest figures came from."""
    NONE = 0       # never written
    STREAM = 1     # user-data stream ACCOUNT_UPDATE (wallet balances; no margin figures)
    REST = 2       # GET /fapi/v2/account (balances and margin figures)


#: One row per venue account (row 0: the executor's account), written only by the
#: executor (``account`` seqlock table, mmshm.execution.account); read by risk (equity,
#: margin utilisation), ``mmshm status`` and the exporter. Money in FEE_SCALE units of
#: ``asset``. The stream carries wallet balances only, so the margin figures have their
#: own freshness (``margin_mono``).
ACCOUNT_ROW = _padded([
    ("version", "<u8"),
    ("venue", "<u2"),             # venue id (mmshm.venues registry)
    ("source", "u1"),             # AccountSource of the last write
    ("_r0", "u1", (5,)),
    ("asset", "S8"),              # margin asset of the money fields (e.g. USDT)
    ("wallet_balance", "<i8"),    # FEE_SCALE: deposits + realized PnL - fees (+ funding)
    ("cross_wallet", "<i8"),      # FEE_SCALE: wallet balance less isolated margin
    ("unrealized_pnl", "<i8"),    # FEE_SCALE: the venue's (mark price), as of venue_ts
    ("margin_balance", "<i8"),    # FEE_SCALE: wallet + unrealized (the venue's equity)
    ("initial_margin", "<i8"),    # FEE_SCALE: positions + open orders (REST only, see margin_mono)
    ("maint_margin", "<i8"),      # FEE_SCALE (REST only)
    ("available_balance", "<i8"), # FEE_SCALE (REST only)
    ("transfers", "<i8"),         # FEE_SCALE: cumulative non-PnL balance change seen (deposits, withdrawals, transfers)
    ("venue_ts", "<i8"),          # realtime ns: the venue time the balances reflect
    ("local_ts", "<i8"),          # realtime ns: when they were received
    ("updated_mono", "<i8"),      # monotonic ns of this write (staleness)
    ("margin_mono", "<i8"),       # monotonic ns the margin figures were last refreshed (0 = never)
    ("stream_updates", "<u8"),    # rows written from the stream
    ("rest_updates", "<u8"),      # rows written from REST
    ("drops", "<u8"),             # updates refused as malformed (counted, row untouched)
], 192)


ALL_RECORDS: dict[str, np.dtype] = {
    "MARKET_EVENT": MARKET_EVENT,
    "BOOK_ROW": BOOK_ROW,
    "INSTRUMENT_ROW": INSTRUMENT_ROW,
    "ORDER_EVENT": ORDER_EVENT,
    "TARGET_ROW": TARGET_ROW,
    "CONTROL_ROW": CONTROL_ROW,
    "PROCESS_ROW": PROCESS_ROW,
    "VERDICT_ROW": VERDICT_ROW,
    "COMMAND_ROW": COMMAND_ROW,
    "SIGNAL_ROW": SIGNAL_ROW,
    "ACCOUNT_ROW": ACCOUNT_ROW,
}
