"""`bench/ring.py --quick` and `mmshm bench ring --quick` run and print the JSON report (shape only, never speed)."""
from __future__ import annotations

import json
import sys

import pytest

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

KEYS_LAT = {"gated_python", "broadcast_python", "gated_batched", "mp_queue", "mp_pipe"}
KEYS_TPUT = {"gated_batched", "broadcast_batched", "gated_python", "mp_queue", "mp_pipe"}


def check_report(report: dict) -> None:
    assert report["benchmark"] == "ring" and report["quick"] is True
    assert report["message_bytes"] == 64
    assert set(report["latency"]) == KEYS_LAT
    for name, stats in report["latency"].items():
        assert stats["n"] > 0, name
        assert 0 < stats["p50_ns"] <= stats["p99_ns"] <= stats["p999_ns"], name
    assert set(report["throughput_msgs_per_s"]) == KEYS_TPUT
    assert all(v > 0 for v in report["throughput_msgs_per_s"].values())
    assert set(report["goals"]) == {"python_p50_le_500ns", "python_p99_le_2us", "p50_100x_below_mp_queue",
                                    "gated_batched_ge_20M_msgs_per_s"}
    assert all(isinstance(v, float) for v in report["ratios"].values())
    # the lossless ring lost nothing, even under load
    assert report["details"]["gated_python_latency"]["lost"] == 0
    assert report["details"]["gated_batched"]["lost"] == 0


@pytest.mark.timeout(60)
def test_bench_ring_script_entry(spawn):
    """bench/ring.py is the same code as `mmshm bench ring` (only its entry is checked: the run is below)."""
    proc = spawn([sys.executable, str(REPO / "bench" / "ring.py"), "--help"], cwd=str(REPO))
    out, err = proc.communicate(timeout=50)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"--quick" in out


@pytest.mark.timeout(120)
def test_bench_ring_quick_cli(spawn, tmp_path):
    target = tmp_path / "ring.json"
    proc = spawn([sys.executable, "-m", "mmshm", "bench", "ring", "--quick", "--out", str(target)])
    out, err = proc.communicate(timeout=110)
    assert proc.returncode == 0, err.decode()[-3000:]
    check_report(json.loads(target.read_text()))
