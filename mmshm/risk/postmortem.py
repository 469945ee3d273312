"""Post-mortem JSON for every halt: what fired, the numbers, and the state around it.

Written atomically (temp file + rename) so a reader never sees half a file; the name sorts
by time: ``halt-<UTC time>-<trigger>.json``.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def utc_iso(realtime_ns: int) -> str:
    dt = datetime.fromtimestamp(realtime_ns / 1e9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(realtime_ns // 1000) % 1_000_000:06d}Z"


def _default(o: Any):
    if hasattr(o, "as_dict"):
        return o.as_dict()
    if hasattr(o, "numerator") and hasattr(o, "denominator"):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_postmortem(directory: Path, realtime_ns: int, trigger: str, doc: dict) -> Path:
    """Write ``doc`` (plus time and trigger) as JSON under ``directory``; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = utc_iso(realtime_ns).replace(":", "").replace("-", "")
    path = directory / f"halt-{stamp}-{trigger}.json"
    n = 1
    while path.exists():
        path = directory / f"halt-{stamp}-{trigger}-{n}.json"
        n += 1
    body = {"time": utc_iso(realtime_ns), "time_ns": realtime_ns, "trigger": trigger, **doc}
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(body, f, indent=2, sort_keys=True, default=_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
