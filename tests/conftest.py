"""Fixtures every test tier shares.

Tests run in parallel (pytest-xdist), so every test gets its own mmshm *instance* name and
thus its own shared-memory segment names. Segments and child processes a test creates
are removed at teardown even when the test fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from procutil import SHM_DIR, instance_segments

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the repo (override with MMSHM_SHARED_DATA)."""
    return Path(os.environ.get("MMSHM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"recorded market data not found at {path} (set MMSHM_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def binance_capture(shared_data: Path) -> Path:
    return shared_data / "binance-usdm-btcusdt-20240808.gz"


@pytest.fixture(scope="session")
def hyperliquid_capture(shared_data: Path) -> Path:
    return shared_data / "hyperliquid-btc-20250126.gz"


def remove_instance_segments(instance: str) -> list[str]:
    """Unlink every /dev/shm/mmshm-<instance>-* segment; return the names removed."""
    removed = []
    for name in instance_segments(instance):
        try:
            (SHM_DIR / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


@pytest.fixture
def instance() -> Iterator[str]:
    """A unique instance name; its segments are removed after the test."""
    name = f"t{os.getpid()}{uuid.uuid4().hex[:8]}"
    yield name
    remove_instance_segments(name)


@pytest.fixture
def spawn(instance: str) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start child processes in their own process group; all are killed at teardown.

    ``spawn([...argv], env={...})`` returns the Popen. ``MMSHM_INSTANCE`` is set to the
    test's instance so children use the test's segment names.
    """
    children: list[subprocess.Popen] = []

    def _spawn(argv: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
        full_env = dict(os.environ)
        full_env["MMSHM_INSTANCE"] = instance
        full_env.setdefault("MMSHM_IDLE", "sleep")
        if env:
            full_env.update(env)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen(argv, env=full_env, start_new_session=True, **kw)
        children.append(proc)
        return proc

    yield _spawn
    for proc in children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


PYTHON = sys.executable


@pytest.fixture
def rig(spawn, instance: str, tmp_path: Path):
    """The executor process harness (``tests/e2e/executor_harness.py``: venue, segments,
    executor) with the venue's book seeded; closed after the test, even when it fails."""
    e2e = str(Path(__file__).resolve().parent / "e2e")
    if e2e not in sys.path:
        sys.path.insert(0, e2e)
    from executor_harness import Rig

    r = Rig(spawn, instance, tmp_path)
    r.depth()
    yield r
    r.close()
