"""Shared-memory transport: broadcast ring, gated ring, seqlock table (see docs/shm.md).

Segments are ``/mmshm-<instance>-<name>`` (mode 0600), created by their single writer and
viewed through numpy structured dtypes from :mod:`mmshm.records`. The classes are Cython
(``mmshm._native.shm``); segment lifetime and the header layout are in
:mod:`mmshm.shm.segment`; listing, cleaning and inspecting in :mod:`mmshm.shm.registry`.
"""
from __future__ import annotations

from mmshm._native.shm import (
    BroadcastReader,
    BroadcastWriter,
    GatedReader,
    GatedWriter,
    SeqlockTable,
)
from mmshm.shm.segment import (
    HEADER,
    READER,
    Kind,
    ReaderState,
    SegmentInUse,
    SegmentMismatch,
    SegmentNotFound,
    SeqlockBusy,
    ShmError,
    segment_name,
)

__all__ = [
    "BroadcastReader", "BroadcastWriter", "GatedReader", "GatedWriter", "SeqlockTable",
    "HEADER", "READER", "Kind", "ReaderState", "SegmentInUse", "SegmentMismatch",
    "SegmentNotFound", "SeqlockBusy", "ShmError", "segment_name",
    "list_segments", "inspect_segment", "clean_dead", "sweep_dead",
]


def __getattr__(name: str):
    # Registry helpers import lazily (psutil, rich are not needed by hot processes).
    if name in ("list_segments", "inspect_segment", "clean_dead", "sweep_dead"):
        from mmshm.shm import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'mmshm.shm' has no attribute {name!r}")
