"""64-byte checksummed records for ring property tests: a torn or misplaced record is caught."""
from __future__ import annotations

import numpy as np

REC = np.dtype([("seq", "<u8"), ("k", "<u8"), ("body", "<u8", (5,)), ("check", "<u8")])  # 64 B


def make(k: int) -> np.ndarray:
    """The k-th message (0-based); the ring gives it sequence k + 1."""
    r = np.zeros(1, REC)
    r["k"] = k
    r["body"] = (k * 2654435761) & 0xFFFFFFFF
    r["check"] = k ^ 0xDEADBEEF
    return r


def check_record(r) -> int:
    """The message's k, after checking it is intact and belongs to its sequence."""
    k = int(r["k"])
    assert int(r["check"]) == k ^ 0xDEADBEEF, "torn record"
    assert all(int(b) == (k * 2654435761) & 0xFFFFFFFF for b in r["body"]), "torn record"
    assert int(r["seq"]) == k + 1, "record does not belong to its sequence (slot overwritten)"
    return k
