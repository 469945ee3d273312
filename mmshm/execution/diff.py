"""Targets versus working orders → the smallest list of venue actions.

For each side: target levels that a working order already satisfies (price within the
level's tolerance, remaining within ``qty_tol`` lots) are left alone; the remaining
targets and orders are paired best-price-first and each pair becomes one *amend*
(Binance ``PUT /fapi/v1/order`` changes price and quantity of a LIMIT order in one
request, versus two for cancel + new); what is left over becomes places or cancels.
The pull flag of the target row cancels everything.

The price tolerance of a level is the largest of ``px_tol`` ticks, ``tol_bp`` basis points
of its price, and ``tol_frac`` of its distance from the mid of the row's best targets. Why:
a requote for a move far smaller than the quote's own distance from the mid barely changes
its fill probability but costs an order unit at the venue (Binance counts 300 per 10 s and
penalises churn); a level 4 bp out can drift further than one 1 bp out before it matters. Actions are then cut into venue
batches (Binance batchOrders: at most 5 orders per request).

Orders in PENDING_CANCEL are ignored (already going away); orders still PENDING_NEW or
with an amend in flight count as working but are never amended again until the venue
has answered (a second amend on an unacknowledged order is exactly the race the state
machine would have to untangle).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from mmshm.execution.orders import Order
from mmshm.records import OrderStatus as S, Side, TARGET_ROW

TARGET_FLAG_PULL = 1
# plain ints: enum attribute lookups cost more than the comparisons on this path
_WORKING = (int(S.PENDING_NEW), int(S.NEW), int(S.PARTIALLY_FILLED))
_AMENDABLE = (int(S.NEW), int(S.PARTIALLY_FILLED))
_BUY = int(Side.BUY)
#: Binance USD-M batchOrders limit (place and modify); batch cancel takes up to 10 ids.
MAX_BATCH = 5
MAX_CANCEL_BATCH = 10


@dataclass(frozen=True, slots=True)
class Level:
    price: int
    qty: int


@dataclass(frozen=True, slots=True)
class Place:
    instrument: int
    side: Side
    price: int
    qty: int
    md_seq: int


@dataclass(frozen=True, slots=True)
class Amend:
    client_id: str
    instrument: int
    side: Side
    price: int
    qty: int          # new *total* order quantity (already filled + wanted remaining)
    md_seq: int


@dataclass(frozen=True, slots=True)
class Cancel:
    client_id: str
    instrument: int
    side: Side


@dataclass(slots=True)
class Actions:
    places: list[Place] = field(default_factory=list)
    amends: list[Amend] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.places or self.amends or self.cancels)

    @property
    def n_orders(self) -> int:
        """Order-count cost (each place/amend/cancel is one order unit at Binance)."""
        return len(self.places) + len(self.amends) + len(self.cancels)

    def batches(self, max_batch: int = MAX_BATCH, max_cancel_batch: int = MAX_CANCEL_BATCH
                ) -> list[tuple[str, list]]:
        """``[("cancel", [...]), ("amend", [...]), ("place", [...])]`` chunks, cancels first.

        Cancels go first so a place never momentarily doubles our exposure; amends next
        (they keep their slot in the venue's order count), places last.
        """
        out: list[tuple[str, list]] = []
        for name, items, n in (("cancel", self.cancels, max_cancel_batch),
                               ("amend", self.amends, max_batch), ("place", self.places, max_batch)):
            for i in range(0, len(items), n):
                out.append((name, items[i:i + n]))
        return out


def target_levels(row: np.void, side: Side) -> list[Level]:
    """Non-empty target levels of one side of a TARGET_ROW, as given (best first)."""
    # .tolist() once per array: element-wise numpy indexing costs ~1 µs a value
    if side == Side.BUY:
        n, px, q = int(row["n_bids"]), row["bid_px"].tolist(), row["bid_qty"].tolist()
    else:
        n, px, q = int(row["n_asks"]), row["ask_px"].tolist(), row["ask_qty"].tolist()
    return [Level(p, v) for p, v in zip(px[:n], q[:n]) if v > 0 and p > 0]


def _better(side: Side, a: int, b: int) -> bool:
    return a > b if side == Side.BUY else a < b


def level_tolerance(price: int, mid2: int, px_tol: int = 0, tol_bp: float = 0.0, tol_frac: float = 0.0) -> int:
    """Price tolerance (ticks) of a target level at ``price``; ``mid2`` = twice the mid in
    ticks (0 = unknown: no distance term). See the module doc for why it scales."""
    tol = px_tol
    if tol_bp > 0.0:
        tol = max(tol, int(price * tol_bp * 1e-4))
    if tol_frac > 0.0 and mid2 > 0:
        tol = max(tol, int(tol_frac * abs(2 * price - mid2) * 0.5))
    return tol


def diff_side(instrument: int, side: Side, targets: Sequence[Level], working: Iterable[Order],
              md_seq: int, px_tol: int = 0, qty_tol: int = 0, amend: bool = True,
              tol_bp: float = 0.0, tol_frac: float = 0.0, mid2: int = 0) -> Actions:
    """Actions that bring one side's working orders to ``targets`` (see module doc)."""
    acts = Actions()
    live = [o for o in working if o.status in _WORKING]
    sort_key = (lambda p: -p) if side == _BUY else (lambda p: p)
    live.sort(key=lambda o: sort_key(o.price))
    tg = sorted(targets, key=lambda lv: sort_key(lv.price))
    # 1. keep orders that already satisfy a target (closest price wins)
    free = list(live)
    unmatched_t: list[Level] = []
    for lv in tg:
        best = None
        tol = level_tolerance(lv.price, mid2, px_tol, tol_bp, tol_frac) if (tol_bp or tol_frac) else px_tol
        for o in free:
            if abs(o.price - lv.price) <= tol and abs(o.remaining - lv.qty) <= qty_tol:
                if best is None or abs(o.price - lv.price) < abs(best.price - lv.price):
                    best = o
        if best is None:
            unmatched_t.append(lv)
        else:
            free.remove(best)
    # 2. pair leftovers best-first: amend where allowed, else cancel + place
    amendable = [o for o in free if amend and o.status in _AMENDABLE and o.pending_amend is None]
    rest = [o for o in free if o not in amendable]
    for lv in unmatched_t:
        if amendable:
            o = amendable.pop(0)
            acts.amends.append(Amend(o.client_id, instrument, side, lv.price, o.filled_qty + lv.qty, md_seq))
        else:
            acts.places.append(Place(instrument, side, lv.price, lv.qty, md_seq))
    for o in amendable + rest:
        acts.cancels.append(Cancel(o.client_id, instrument, side))
    return acts


def row_mid2(row: np.void) -> int:
    """Twice the mid (ticks) of a TARGET_ROW's best bid and ask targets; one side alone
    gives twice its best price; 0 when the row is empty."""
    nb, na = int(row["n_bids"]), int(row["n_asks"])
    b = int(row["bid_px"][0]) if nb else 0
    a = int(row["ask_px"][0]) if na else 0
    if b and a:
        return a + b
    return 2 * (a or b)


def diff(row: np.void, working: Iterable[Order], px_tol: int = 0, qty_tol: int = 0,
         amend: bool = True, tol_bp: float = 0.0, tol_frac: float = 0.0) -> Actions:
    """Actions for one instrument's TARGET_ROW against its working orders (both sides)."""
    if row.dtype is not TARGET_ROW and row.dtype != TARGET_ROW:
        raise TypeError("diff expects a TARGET_ROW record")
    inst = int(row["instrument"])
    md_seq = int(row["md_seq"])
    mine = [o for o in working if o.instrument == inst]
    out = Actions()
    pull = bool(int(row["flags"]) & TARGET_FLAG_PULL)
    mid2 = row_mid2(row) if (tol_frac and not pull) else 0
    for side in (Side.BUY, Side.SELL):
        orders = [o for o in mine if o.side == side]
        if pull:
            out.cancels.extend(Cancel(o.client_id, inst, side) for o in orders if o.status in _WORKING)
            continue
        a = diff_side(inst, side, target_levels(row, side), orders, md_seq, px_tol, qty_tol, amend,
                      tol_bp, tol_frac, mid2)
        out.places += a.places
        out.amends += a.amends
        out.cancels += a.cancels
    return out


def request_count(actions: Actions, batched: bool = True) -> int:
    """Venue requests needed: batched (≤5 per place/amend batch, ≤10 per cancel) or one each."""
    if not batched:
        return actions.n_orders
    return len(actions.batches())
