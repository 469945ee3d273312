"""Smoke test of bench/executor.py --quick: runs it (a venue process, the executor path,
the capture replay) and checks the JSON shape only. No speed is asserted."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, REPO


@pytest.mark.timeout(120)
def test_bench_executor_quick_json_shape(binance_capture: Path):
    out = subprocess.run([PYTHON, str(REPO / "bench" / "executor.py"), "--quick", "--n", "30",
                          "--capture", str(binance_capture)], capture_output=True, timeout=110)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    d = json.loads(out.stdout)
    lat = d["latency"]
    for path in ("ws_amend", "rest_amend", "ws_cancel_new"):
        assert {"p50_ns", "p99_ns", "n", "cpu_per_change_ns", "requests"} <= set(lat[path])
        assert lat[path]["n"] > 0 and lat[path]["requests"]["rejects"] == 0
    assert isinstance(lat["ratio_rest_over_ws_p50"], float) and isinstance(lat["goal_met"], bool)
    assert {"plan_diff_limits", "params_sign_json", "state_machine_and_ring_publish"} <= set(d["breakdown"])
    assert d["profile_ws_amend"]["profile_top_tottime"]
    rp = d["replay"]
    assert rp["target_changes"] > 0 and rp["amend"]["requests"] > 0 and rp["cancel_new"]["requests"] > 0
    assert {"ratio_amend_over_cancel_new", "saving", "goal_met"} <= set(rp)
