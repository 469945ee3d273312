"""The venue's account in shared memory: the executor writes the ``account`` table.

Why: risk sizes limits and measures drawdown, daily loss and margin utilisation from
equity. Its own accounting (a configured starting equity plus the PnL of the fills it
saw) knows nothing of the venue's real balance, funding, deposits or margin. The
executor already holds the only authenticated session, so it publishes the venue's
figures in one seqlock row (``ACCOUNT_ROW``, row 0) that risk reads when fresh.

Two sources, merged into one row:

- user-data stream ``ACCOUNT_UPDATE`` (:meth:`AccountWriter.on_account_update`): wallet
  and cross-wallet balance of the margin asset, the unrealized PnL of positions that
  changed, and the balance change of deposits/withdrawals/transfers (``bc``, reasons in
  :data:`TRANSFER_REASONS`), accumulated in ``transfers`` so risk can tell them from PnL.
  Binance pushes no margin figures on this stream.
- REST ``GET /fapi/v2/account`` (:meth:`on_rest_account`, polled by :meth:`refresh`
  through the session's rate budget): everything, including initial and maintenance
  margin and the available balance (``margin_mono`` records when those were refreshed).

Balances are taken from whichever source reflects the later venue time, so a REST answer
that crossed a stream update in flight cannot roll the wallet back. Money is parsed
straight from the decimal strings to FEE_SCALE integers. A malformed update is a counted
drop (``drops`` by reason, ``last_error``) that leaves the row untouched; nothing here
raises into the executor's loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping

import numpy as np

from mmshm.records import ACCOUNT_ROW, AccountSource
from mmshm.shm import SeqlockTable

log = logging.getLogger("mmshm.execution.account")

ACCOUNT_SEGMENT = "account"
#: ``ACCOUNT_UPDATE.a.m`` reasons whose balance change is money moved in or out, not PnL.
#: FUNDING_FEE, INSURANCE_CLEAR, ADJUSTMENT, ORDER and the options reasons stay PnL.
TRANSFER_REASONS = frozenset({"DEPOSIT", "WITHDRAW", "WITHDRAW_REJECT", "ADMIN_DEPOSIT", "ADMIN_WITHDRAW",
                              "MARGIN_TRANSFER", "ASSET_TRANSFER", "COIN_SWAP_DEPOSIT", "COIN_SWAP_WITHDRAW",
                              "AUTO_EXCHANGE"})
_INT64_MAX = (1 << 63) - 1
#: REST fields per row field: (per-asset entry key, account total key).
_REST_FIELDS = {
    "wallet_balance": ("walletBalance", "totalWalletBalance"),
    "cross_wallet": ("crossWalletBalance", "totalCrossWalletBalance"),
    "unrealized_pnl": ("unrealizedProfit", "totalUnrealizedProfit"),
    "margin_balance": ("marginBalance", "totalMarginBalance"),
    "initial_margin": ("initialMargin", "totalInitialMargin"),
    "maint_margin": ("maintMargin", "totalMaintMargin"),
    "available_balance": ("availableBalance", "availableBalance"),
}


class AccountDataError(ValueError):
    """An account update that cannot be trusted; ``reason`` is the drop counter's key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def money_units(value: Any, what: str) -> int:
    """A venue decimal string in FEE_SCALE units, exact (floor below 1e-8), int64-range checked.

    Venues send money as strings; numbers are accepted only if finite (a float is taken
    by its shortest repr). NaN, infinities, exponents, blanks and None are refused."""
    from mmshm.venues.binance_usdm.trading import fee_units   # the stream's own parser: one rule

    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise AccountDataError(f"bad_{what}", f"{what}={value!r} is not a decimal")
    try:
        units = fee_units(value if isinstance(value, str) else repr(value))
    except ValueError as exc:
        raise AccountDataError(f"bad_{what}", f"{what}={value!r}: {exc}") from None
    if not -_INT64_MAX <= units <= _INT64_MAX:
        raise AccountDataError(f"bad_{what}", f"{what}={value!r} does not fit int64 FEE_SCALE units")
    return units


def _ms_to_ns(value: Any) -> int:
    """A venue millisecond time as realtime ns (0 when absent or not a sane integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return 0
    try:
        ms = int(value)
    except ValueError:
        return 0
    return ms * 1_000_000 if 0 < ms < 1 << 50 else 0


def parse_rest_account(body: Any, asset: str) -> tuple[dict[str, int], int, dict[str, int]]:
    """``GET /fapi/v2/account`` (or v3) → (row fields in FEE_SCALE, venue time ns, unrealized per symbol).

    Single-asset mode reads the ``assets`` entry of ``asset`` (the margin asset of our
    instruments), falling back to the account totals when it is absent; multi-assets mode
    (``multiAssetsMargin``) reads the totals, which are what the venue margins against.
    Raises :class:`AccountDataError` on anything missing or malformed."""
    if not isinstance(body, Mapping):
        raise AccountDataError("rest_not_object", f"account answer is {type(body).__name__}, not an object")
    if "code" in body and "totalWalletBalance" not in body:
        raise AccountDataError("rest_error", f"venue error {body.get('code')}: {str(body.get('msg'))[:120]}")
    entry: Mapping | None = None
    assets = body.get("assets")
    if body.get("multiAssetsMargin") is not True and isinstance(assets, list):
        entry = next((a for a in assets if isinstance(a, Mapping) and a.get("asset") == asset), None)
    out: dict[str, int] = {}
    for field, (asset_key, total_key) in _REST_FIELDS.items():
        src, key = (entry, asset_key) if entry is not None else (body, total_key)
        if key not in src:
            raise AccountDataError(f"rest_missing_{key}", f"account answer has no {key}")
        out[field] = money_units(src[key], key)
    for field in ("initial_margin", "maint_margin"):
        if out[field] < 0:
            raise AccountDataError(f"rest_negative_{field}", f"{field} {out[field]} < 0")
    venue_ts = _ms_to_ns(entry.get("updateTime")) if entry is not None else 0
    upnl: dict[str, int] = {}
    positions = body.get("positions")
    if isinstance(positions, list):
        for p in positions:
            if isinstance(p, Mapping) and isinstance(p.get("symbol"), str) and "unrealizedProfit" in p:
                try:
                    upnl[p["symbol"]] = money_units(p["unrealizedProfit"], "unrealizedProfit")
                except AccountDataError:
                    upnl.clear()          # a partial map would mis-net later stream updates
                    break
    return out, venue_ts, upnl


class AccountWriter:
    """Single writer of one ``account`` row; see the module docstring.

    ``create(instance, venue=..., asset=...)`` creates the table (or takes it over from a
    dead executor, continuing its counters and ``transfers``). Feed it with
    :meth:`on_account_update` (every ``AccountUpdate`` of the user stream) and run
    :meth:`refresh` as a task with the session's REST client.
    """

    def __init__(self, table: SeqlockTable, *, row: int = 0, venue: int = 0, asset: str = "USDT",
                 owner: bool = True, interval_s: float = 5.0, max_interval_s: float = 60.0,
                 reserve_weight: int = 100, mono: Callable[[], int] = time.monotonic_ns,
                 realtime: Callable[[], int] = time.time_ns) -> None:
        if not 0 <= row < table.rows:
            raise ValueError(f"row {row} outside the account table ({table.rows} rows)")
        if not asset or len(asset.encode()) > ACCOUNT_ROW["asset"].itemsize:
            raise ValueError(f"margin asset {asset!r} does not fit ACCOUNT_ROW.asset")
        if interval_s <= 0 or max_interval_s < interval_s:
            raise ValueError("need 0 < interval_s <= max_interval_s")
        self.table = table
        self.row = row
        self.owner = owner
        self.asset = asset
        self.interval_s = interval_s
        self.max_interval_s = max_interval_s
        self.reserve_weight = reserve_weight
        self._mono = mono
        self._realtime = realtime
        self._rec = np.zeros(1, dtype=ACCOUNT_ROW)
        prev = table.read(row)
        if int(prev["version"]) and bytes(prev["asset"]).rstrip(b"\0").decode(errors="replace") == asset:
            self._rec[0] = prev                  # take-over: keep figures, counters and the transfer sum
        r = self._rec[0]
        r["venue"], r["asset"] = venue, asset.encode()
        self._upnl: dict[str, int] = {}          # venue unrealized per symbol (REST, then stream updates)
        self.drops: dict[str, int] = {}
        self.counters = {"stream_updates": 0, "rest_updates": 0, "rest_polls": 0, "rest_failures": 0,
                         "rest_deferred": 0, "stream_foreign": 0, "stream_older": 0, "rest_older": 0}
        self.last_error = ""

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, instance: str, *, venue: int = 0, asset: str = "USDT", rows: int = 1, row: int = 0,
               **kw: Any) -> "AccountWriter":
        """Create the ``account`` table as its single writer (take over a dead writer's)."""
        return cls(SeqlockTable.create(instance, ACCOUNT_SEGMENT, ACCOUNT_ROW, rows), row=row, venue=venue,
                   asset=asset, owner=True, **kw)

    def close(self, unlink: bool = False) -> None:
        """Leave the row for readers by default: its age tells them it went stale."""
        if unlink and self.owner:
            self.table.unlink()
        self.table.close()

    def read(self) -> np.void:
        """The row as last written (our copy: no seqlock read needed by the writer)."""
        return self._rec[0].copy()

    # ------------------------------------------------------------------ drops
    def _drop(self, reason: str, detail: str) -> bool:
        n = self.drops[reason] = self.drops.get(reason, 0) + 1
        self._rec[0]["drops"] += 1
        self.table.write(self.row, self._rec)    # the count only: source and freshness untouched
        self.last_error = detail
        if n == 1 or n % 1000 == 0:
            log.warning("account update dropped", extra={"reason": reason, "detail": detail[:200], "count": n})
        return False

    def _write(self, source: AccountSource) -> None:
        r = self._rec[0]
        r["source"] = int(source)
        r["updated_mono"] = self._mono()
        self.table.write(self.row, self._rec)

    # ------------------------------------------------------------------ stream
    def on_account_update(self, ev: Any) -> bool:
        """One user-stream ``AccountUpdate`` (mmshm.venues.binance_usdm.trading) → the row.

        Returns True if the row was written. Balances of other assets are ignored; a
        balance whose ``wb`` the message did not carry, or values outside int64, drop
        the whole update (counted)."""
        from mmshm.venues.binance_usdm.trading import AccountUpdate

        if not isinstance(ev, AccountUpdate):
            return self._drop("stream_not_account_update", f"{type(ev).__name__} is not an AccountUpdate")
        try:
            bal = None
            for b in ev.balances:
                if b.asset == self.asset:
                    bal = b
            wallet = cross = change = None
            if bal is not None:
                if "wb" in bal.missing:
                    raise AccountDataError("stream_missing_wb", f"{self.asset} balance without wb")
                wallet = _checked(bal.wallet, "wb")
                cross = wallet if "cw" in bal.missing else _checked(bal.cross_wallet, "cw")
                change = None if "bc" in bal.missing else _checked(bal.change, "bc")
            ups = [(p.symbol, _checked(p.unrealized_pnl, "up")) for p in ev.positions]
            local_ts = int(ev.local_ts) or self._realtime()
            venue_ts = int(ev.trans_ts or ev.event_ts) or local_ts   # no venue time: when we saw it
        except AccountDataError as exc:
            return self._drop(exc.reason, str(exc))
        except (AttributeError, TypeError, ValueError) as exc:
            return self._drop("stream_malformed", f"{type(exc).__name__}: {exc}")
        if bal is None and not ups:
            self.counters["stream_foreign"] += 1    # another asset moved (e.g. BNB): not ours
            return False
        r = self._rec[0]
        if bal is not None and str(ev.reason) in TRANSFER_REASONS:
            moved = change if change is not None else (wallet - int(r["wallet_balance"]) if int(r["version"]) else 0)
            r["transfers"] = int(r["transfers"]) + moved
            log.warning("account: balance moved in/out (not PnL)", extra={"reason": str(ev.reason), "amount": moved,
                                                                          "asset": self.asset})
        newer = venue_ts >= int(r["venue_ts"])
        if not newer:
            self.counters["stream_older"] += 1      # the row already reflects a later venue time
        else:
            unrealized = int(r["unrealized_pnl"])
            for sym, up in ups:
                unrealized += up - self._upnl.get(sym, 0)
                self._upnl[sym] = up
            if bal is not None:
                r["wallet_balance"], r["cross_wallet"] = wallet, cross
            r["unrealized_pnl"] = unrealized
            r["margin_balance"] = int(r["wallet_balance"]) + unrealized
            r["venue_ts"] = venue_ts
            r["local_ts"] = local_ts
        r["stream_updates"] += 1
        self.counters["stream_updates"] += 1
        self._write(AccountSource.STREAM)
        return True

    # ------------------------------------------------------------------ REST
    def on_rest_account(self, body: Any, *, venue_now_ns: int = 0, local_ts: int = 0) -> bool:
        """A ``GET /fapi/v2/account`` answer (parsed JSON) → the row; True if written.

        ``venue_now_ns`` (the venue's clock when the answer was read) stands in for the
        balance's venue time when the answer carries no ``updateTime``."""
        try:
            vals, venue_ts, upnl = parse_rest_account(body, self.asset)
        except AccountDataError as exc:
            return self._drop(exc.reason, str(exc))
        now_r = local_ts or self._realtime()
        venue_ts = venue_ts or venue_now_ns or now_r
        r = self._rec[0]
        if venue_ts >= int(r["venue_ts"]):
            for k in ("wallet_balance", "cross_wallet", "unrealized_pnl", "margin_balance"):
                r[k] = vals[k]
            r["venue_ts"], r["local_ts"] = venue_ts, now_r
            if upnl:
                self._upnl = upnl
        else:
            self.counters["rest_older"] += 1        # a stream update overtook this answer: keep its balances
        for k in ("initial_margin", "maint_margin", "available_balance"):
            r[k] = vals[k]
        r["margin_mono"] = self._mono()
        r["rest_updates"] += 1
        self.counters["rest_updates"] += 1
        self._write(AccountSource.REST)
        return True

    async def poll_once(self, rest: Any) -> bool:
        """One ``GET /fapi/v2/account`` through ``rest`` (the session's BinanceRest: its
        shared rate budget and breaker). Skipped while the weight budget is short of
        ``reserve_weight`` (orders come first). True if the row was written."""
        from mmshm.execution.ratelimit import B_WEIGHT_1M
        from mmshm.venues.binance_usdm.trading import BinanceError

        budget = getattr(rest, "budget", None)
        if budget is not None and self.reserve_weight > 0:
            try:
                short = budget.headroom(B_WEIGHT_1M) < self.reserve_weight
            except Exception:  # noqa: BLE001 - an unconfigured budget does not stop the poll
                short = False
            if short:
                self.counters["rest_deferred"] += 1
                return False
        self.counters["rest_polls"] += 1
        try:
            body = await rest.account()
        except BinanceError as exc:          # NotSent (budget/breaker), venue errors, lost answers
            self.counters["rest_failures"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        except (asyncio.TimeoutError, OSError) as exc:
            self.counters["rest_failures"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        clock = getattr(rest, "clock", None)
        venue_now = clock.venue_ms() * 1_000_000 if clock is not None else 0
        return self.on_rest_account(body, venue_now_ns=venue_now)

    async def refresh(self, rest: Any, interval_s: float | None = None) -> None:
        """Poll the account every ``interval_s`` until cancelled; failures back off
        (doubling, up to ``max_interval_s``) so a broken endpoint costs little weight."""
        base = interval_s or self.interval_s
        delay = base
        while True:
            try:
                ok = await self.poll_once(rest)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the poller must outlive any one bad answer
                ok = False
                self.counters["rest_failures"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("account poll failed")
            delay = base if ok else min(delay * 2, self.max_interval_s)
            await asyncio.sleep(delay)


def _checked(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise AccountDataError(f"stream_bad_{what}", f"{what}={v!r} is not an integer amount")
    if not -_INT64_MAX <= v <= _INT64_MAX:
        raise AccountDataError(f"stream_bad_{what}", f"{what}={v} does not fit int64")
    return v


class AccountTable:
    """Reader side of the ``account`` table (risk, status, exporter)."""

    def __init__(self, table: SeqlockTable) -> None:
        self.table = table

    @classmethod
    def attach(cls, instance: str) -> "AccountTable":
        return cls(SeqlockTable.attach(instance, ACCOUNT_SEGMENT, ACCOUNT_ROW))

    @property
    def rows(self) -> int:
        return int(self.table.rows)

    def version(self, row: int = 0) -> int:
        return int(self.table.version(row))

    def read(self, row: int = 0) -> np.void | None:
        """The row (None if never written). SeqlockBusy if the writer is mid-write too long."""
        rec = self.table.read(row)
        return rec if int(rec["version"]) else None

    def close(self) -> None:
        self.table.close()


__all__ = ["ACCOUNT_SEGMENT", "AccountDataError", "AccountTable", "AccountWriter", "TRANSFER_REASONS",
           "money_units", "parse_rest_account"]
