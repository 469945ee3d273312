"""Quoting: fair value, volatility, models, signals, rounding, ladder and the quote cycle.

The production cycle is native (``mmshm._native.quoter.Quoter``, built from
cython_src/quoter.pyx); :class:`mmshm.strategy.cycle.PyQuoter` is the same cycle in
Python, used as the readable specification, the test oracle and the benchmark peer.
"""
from __future__ import annotations

import numpy as np

from mmshm.strategy.params import (CONTROL_FLAG_ALERT, CONTROL_FLAG_PAUSED, CONTROL_FLAG_PULL,
                                   TARGET_FLAG_PULL, TARGET_FLAG_REDUCE_ONLY, TARGET_FLAG_WIDENED,
                                   FairValue, InstrumentSpec, Model, PullReason, QuoterParams)


def row_buffer(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A zeroed 1-element record array and its uint8 view (what ``Quoter.cycle`` takes)."""
    arr = np.zeros(1, dtype=dtype)
    return arr, arr.view(np.uint8)


def native_quoter(params: QuoterParams, spec: InstrumentSpec, instrument: int = 0):
    """The production quoter for one instrument (mmshm._native.quoter.Quoter)."""
    from mmshm._native.quoter import Quoter
    return Quoter(params, spec, instrument)


__all__ = [
    "CONTROL_FLAG_ALERT", "CONTROL_FLAG_PAUSED", "CONTROL_FLAG_PULL", "TARGET_FLAG_PULL",
    "TARGET_FLAG_REDUCE_ONLY", "TARGET_FLAG_WIDENED", "FairValue", "InstrumentSpec", "Model",
    "PullReason", "QuoterParams", "native_quoter", "row_buffer",
]
