"""Hypothesis: corrupting any validated header field makes attach fail naming that field."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmshm.records import MARKET_EVENT
from mmshm.shm import BroadcastReader, BroadcastWriter, SegmentMismatch

_counter = itertools.count()

FIELDS = {
    "magic": "magic",
    "layout_version": "layout version",
    "kind": "kind",
    "dtype_hash": "dtype hash",
    "record_size": "record size",
    "slot_size": "slot size",
    "capacity": "segment size",      # attach without a capacity: the implied size no longer matches
}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(FIELDS)), delta=st.integers(1, 1000))
def test_any_corrupted_field_is_named(instance, field, delta):
    name = f"h{next(_counter)}"
    w = BroadcastWriter.create(instance, name, MARKET_EVENT, capacity=16)
    try:
        h = w.segment.header
        h[field] = int(h[field]) + delta * (64 if field in ("slot_size", "capacity") else 1)
        with pytest.raises(SegmentMismatch, match=FIELDS[field]):
            BroadcastReader.attach(instance, name, MARKET_EVENT, reader="r")
    finally:
        w.unlink()
        w.close()
