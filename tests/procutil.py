"""Helpers for tests that start processes: an instance's segments, and whether a pid is gone."""
from __future__ import annotations

import os
from pathlib import Path

SHM_DIR = Path("/dev/shm")


def instance_segments(instance: str) -> list[str]:
    """Names of every /dev/shm/mmshm-<instance>-* segment, sorted."""
    return sorted(p.name for p in SHM_DIR.glob(f"mmshm-{instance}-*"))


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs; a zombie is gone for our purposes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
