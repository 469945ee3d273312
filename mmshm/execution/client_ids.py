"""Client order ids unique across restarts that carry the md sequence they were priced from.

Binance accepts ``newClientOrderId`` matching ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$``. Ours is
``<prefix><epoch>_<counter>_<md_seq>`` in lowercase base 36:

- ``epoch``: deciseconds since 2024-01-01 when the generator started (34 bits). Two
  executor starts are never within 100 ms of each other (start-up alone takes longer),
  so ids from different runs differ; a counter overflow moves to a fresh epoch.
- ``counter``: per-run counter (30 bits, a billion orders per epoch).
- ``md_seq``: the market-data sequence the order was priced from (64 bits), so a
  post-mortem can find the book the order came from.

The numeric form for ``ORDER_EVENT.client_id`` is ``epoch << 30 | counter`` (unique
across restarts too; md_seq travels in ``ORDER_EVENT.md_seq``). Ids that are not ours
(another tool, the web UI) do not parse: :func:`parse` raises, :func:`try_parse` → None.
"""
from __future__ import annotations

import re
import time
from typing import NamedTuple

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
EPOCH_BITS = 34
COUNTER_BITS = 30
MAX_EPOCH = (1 << EPOCH_BITS) - 1
MAX_COUNTER = (1 << COUNTER_BITS) - 1
MAX_MD_SEQ = (1 << 64) - 1
EPOCH_BASE_S = 1704067200  # 2024-01-01T00:00:00Z
MAX_PREFIX = 8
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class ParsedClientId(NamedTuple):
    epoch: int
    counter: int
    md_seq: int

    @property
    def numeric(self) -> int:
        return (self.epoch << COUNTER_BITS) | self.counter


def _b36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


def epoch_now(now_s: float | None = None) -> int:
    """Deciseconds since 2024-01-01 (the run epoch of a generator started now)."""
    now_s = time.time() if now_s is None else now_s
    e = int((now_s - EPOCH_BASE_S) * 10)
    if not 0 < e <= MAX_EPOCH:
        raise ValueError(f"clock out of range for client ids: {now_s}")
    return e


class ClientIdGenerator:
    """Makes client order ids; one per executor run (see module doc)."""

    def __init__(self, prefix: str = "mm", epoch: int | None = None) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"client id prefix must be 1-{MAX_PREFIX} chars [a-z][a-z0-9]*: {prefix!r}")
        self.prefix = prefix
        self.epoch = epoch_now() if epoch is None else int(epoch)
        if not 0 < self.epoch <= MAX_EPOCH:
            raise ValueError(f"epoch out of range: {self.epoch}")
        self._counter = 0
        self._head = f"{prefix}{_b36(self.epoch)}_"

    def next(self, md_seq: int) -> tuple[str, int]:
        """A new ``(client_id, numeric_id)`` for an order priced from ``md_seq``."""
        if not 0 <= md_seq <= MAX_MD_SEQ:
            raise ValueError(f"md_seq out of range: {md_seq}")
        if self._counter >= MAX_COUNTER:
            # Fresh epoch: strictly later than ours and than now, so still unique.
            self.epoch = max(self.epoch + 1, epoch_now())
            self._counter = 0
            self._head = f"{self.prefix}{_b36(self.epoch)}_"
        self._counter += 1
        cid = f"{self._head}{_b36(self._counter)}_{_b36(md_seq)}"
        return cid, (self.epoch << COUNTER_BITS) | self._counter

    def owns(self, cid: str) -> bool:
        """True if ``cid`` was made by a generator with our prefix (this or an earlier run)."""
        p = try_parse(cid, self.prefix)
        return p is not None


def parse(cid: str, prefix: str = "mm") -> ParsedClientId:
    """``(epoch, counter, md_seq)`` of one of our ids; ValueError if it is not ours."""
    if not CLIENT_ID_RE.match(cid) or not cid.startswith(prefix):
        raise ValueError(f"not an mmshm client id: {cid!r}")
    parts = cid[len(prefix):].split("_")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not an mmshm client id: {cid!r}")
    try:
        epoch, counter, md_seq = (int(p, 36) for p in parts)
    except ValueError:
        raise ValueError(f"not an mmshm client id: {cid!r}") from None
    if any(p != p.lower() for p in parts):
        raise ValueError(f"not an mmshm client id: {cid!r}")
    if not (0 < epoch <= MAX_EPOCH and 0 < counter <= MAX_COUNTER and md_seq <= MAX_MD_SEQ):
        raise ValueError(f"client id field out of range: {cid!r}")
    return ParsedClientId(epoch, counter, md_seq)


def try_parse(cid: str, prefix: str = "mm") -> ParsedClientId | None:
    try:
        return parse(cid, prefix)
    except ValueError:
        return None


def numeric(cid: str, prefix: str = "mm") -> int:
    """The ORDER_EVENT.client_id of one of our ids (0 for a foreign id)."""
    p = try_parse(cid, prefix)
    return 0 if p is None else p.numeric
