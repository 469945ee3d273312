"""Risk's view of the venue account: which equity and which margin figures to trust.

The executor publishes the venue's balances and margins in the ``account`` table
(``ACCOUNT_ROW``, mmshm.execution.account). This module turns that row into the figures
risk uses, and holds the rules for switching between sources. ``RiskEngine`` owns one
:class:`VenueAccount` and consults it for equity and margin.

Equity. With a fresh row, equity is the venue's margin balance brought forward to now:
the venue's wallet balance (deposits, realized PnL, fees, funding: everything settled),
plus the net PnL of fills risk has applied that the wallet did not include yet (fills
with a venue time after the row's), plus risk's own unrealized PnL marked live to the
book. Why not the row's ``margin_balance`` as is: Binance pushes no unrealized PnL
while prices move, so between REST polls it is seconds old, and the drawdown trigger
runs every few milliseconds; the wallet part is what only the venue knows, the mark part
is what risk knows best. Both agree at the moment of the row up to mark-vs-mid.

Implemented by re-basing: ``equity = base + own realized net + own unrealized`` as before,
and each fresh row sets ``base`` so the formula gives the figure above. So when the row
goes stale (executor down, stream and REST silent for ``account_max_age_s``), equity
simply keeps moving with risk's own PnL from the last venue anchor ("venue_stale"): no
jump back to the configured equity. Before any venue figure, the anchor is the configured
equity ("config"), as before this table existed.

No fake drawdown on switching (the rule):

1. The FIRST venue anchor of a process re-bases the configured assumption. High-water
   mark and day-start equity move by the same amount as equity, as if the venue's
   balance had been known from the start: drawdown and daily PnL in money are unchanged
   by the switch (a config of 10 000 against a venue balance of 2 000 is not an 80%
   drawdown; one of 2 000 against 10 000 does not raise the high-water mark to 10 000
   either). Losses risk saw before the switch stay counted.
2. Later anchors move equity like PnL: HWM is not shifted, so funding, fees or fills the
   venue booked and risk missed count toward drawdown and daily loss (they are real).
3. Money moved in or out (``transfers``: deposits, withdrawals, transfers, from the
   stream's balance change ``bc``) shifts HWM and day-start equity by the same amount:
   a withdrawal is not a loss, a deposit not a gain.

Margin. With fresh REST margin figures (``margin_mono`` within ``account_max_age_s``),
margin utilisation is the venue's total initial margin / equity and the maintenance
ratio the venue's maintenance margin / equity; otherwise both come from risk's own
estimate (notional / configured leverage, notional x maintenance rate).
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from mmshm.records import FEE_SCALE, AccountSource

log = logging.getLogger("mmshm.risk")

NS = 1_000_000_000

#: Equity sources (snapshot / post-mortem ``equity_source``).
CONFIG = "config"               # configured equity + own PnL (no venue figure yet)
VENUE = "venue"                 # fresh venue wallet + own PnL since + own unrealized
VENUE_STALE = "venue_stale"     # last venue anchor + own PnL since (row older than the max age)
#: Margin sources (``margin_source``).
MARGIN_VENUE = "venue"
MARGIN_OWN = "own"


@dataclass(frozen=True)
class AccountFigures:
    """The fields of one ACCOUNT_ROW risk uses (money in FEE_SCALE units of ``asset``)."""
    version: int
    source: AccountSource
    asset: str
    wallet: int
    margin_balance: int
    unrealized: int
    initial_margin: int
    maint_margin: int
    available: int
    transfers: int
    venue_ts: int
    local_ts: int
    updated_mono: int
    margin_mono: int

    @classmethod
    def from_row(cls, row) -> "AccountFigures | None":
        """None for a row never written (version 0 or source NONE)."""
        v = int(row["version"])
        src = int(row["source"])
        if not v or src not in AccountSource._value2member_map_ or src == AccountSource.NONE:
            return None
        return cls(version=v, source=AccountSource(src),
                   asset=bytes(row["asset"]).split(b"\0", 1)[0].decode("ascii", "replace"),
                   wallet=int(row["wallet_balance"]), margin_balance=int(row["margin_balance"]),
                   unrealized=int(row["unrealized_pnl"]), initial_margin=int(row["initial_margin"]),
                   maint_margin=int(row["maint_margin"]), available=int(row["available_balance"]),
                   transfers=int(row["transfers"]), venue_ts=int(row["venue_ts"]), local_ts=int(row["local_ts"]),
                   updated_mono=int(row["updated_mono"]), margin_mono=int(row["margin_mono"]))

    def as_dict(self, now_mono: int) -> dict:
        """For post-mortems and snapshots: money in quote units (floats), ages in seconds."""
        return {"source": self.source.name, "asset": self.asset,
                "wallet_balance": self.wallet / FEE_SCALE, "margin_balance": self.margin_balance / FEE_SCALE,
                "unrealized_pnl": self.unrealized / FEE_SCALE, "initial_margin": self.initial_margin / FEE_SCALE,
                "maint_margin": self.maint_margin / FEE_SCALE, "available_balance": self.available / FEE_SCALE,
                "transfers": self.transfers / FEE_SCALE, "venue_ts": self.venue_ts,
                "age_s": (now_mono - self.updated_mono) / NS,
                "margin_age_s": (now_mono - self.margin_mono) / NS if self.margin_mono else None}


class VenueAccount:
    """The latest account row, the fills the venue's wallet may not include yet, and the
    equity/margin source decisions. Single-threaded, driven by RiskEngine."""

    def __init__(self, max_age_s: float, asset: str | None = None, pending_capacity: int = 1 << 16) -> None:
        self.max_age_ns = int(max_age_s * NS)
        self.asset = asset                      # expected margin asset (None: accept any)
        self.figures: AccountFigures | None = None
        self.anchored = False                   # a venue figure has re-based equity in this process
        self.last_transfers: int | None = None
        self.pending: deque[tuple[int, int]] = deque(maxlen=pending_capacity)   # (venue ts, net PnL)
        self.anchors = 0
        self.ignored: dict[str, int] = {}

    def _ignore(self, why: str) -> None:
        n = self.ignored[why] = self.ignored.get(why, 0) + 1
        if n == 1 or n % 1000 == 0:
            log.error("risk: account row ignored", extra={"why": why, "count": n})

    def on_fill(self, venue_ts: int, net: int) -> None:
        """A fill risk applied (net = realized - fee, FEE_SCALE): not in the wallet until a
        row with a venue time at or after ``venue_ts`` arrives."""
        self.pending.append((venue_ts, net))

    def accept(self, row) -> AccountFigures | None:
        """Validate a row; the figures if risk may use them (None: ignored, counted)."""
        f = AccountFigures.from_row(row)
        if f is None:
            return None
        if self.asset and f.asset != self.asset:
            self._ignore(f"asset_{f.asset or 'none'}")
            return None
        if self.figures is not None and f.version == self.figures.version:
            return None
        return f

    def pending_after(self, venue_ts: int) -> int:
        """Net PnL of applied fills the wallet at ``venue_ts`` does not include; forgets
        the ones it does (fills without a venue time count as included)."""
        if any(ts <= venue_ts for ts, _ in self.pending):
            self.pending = deque(((ts, net) for ts, net in self.pending if ts > venue_ts), maxlen=self.pending.maxlen)
        return sum(net for _, net in self.pending)

    def fresh(self, now_mono: int) -> bool:
        f = self.figures
        return f is not None and self.max_age_ns > 0 and now_mono - f.updated_mono <= self.max_age_ns

    def margin_fresh(self, now_mono: int) -> bool:
        f = self.figures
        return (f is not None and f.margin_mono > 0 and self.max_age_ns > 0
                and now_mono - f.margin_mono <= self.max_age_ns)

    def equity_source(self, now_mono: int) -> str:
        if self.fresh(now_mono) and self.anchored:
            return VENUE
        return VENUE_STALE if self.anchored else CONFIG

    def margins(self, now_mono: int) -> tuple[Fraction, Fraction] | None:
        """(initial, maintenance) margin from the venue, or None to use risk's own estimate."""
        if not self.margin_fresh(now_mono):
            return None
        return Fraction(self.figures.initial_margin), Fraction(self.figures.maint_margin)


__all__ = ["AccountFigures", "CONFIG", "MARGIN_OWN", "MARGIN_VENUE", "VENUE", "VENUE_STALE", "VenueAccount"]
