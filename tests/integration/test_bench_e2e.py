"""Smoke test of bench/e2e.py: one short run with the sleeping idle strategy; only the JSON
shape is checked (benchmarks never assert speed in tests)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_bench_e2e_quick_json_shape():
    env = dict(os.environ, MMSHM_IDLE="sleep")
    res = subprocess.run([sys.executable, str(REPO / "bench" / "e2e.py"), "--quick", "--seconds", "2",
                          "--strategies", "sleep"], capture_output=True, timeout=110, env=env)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    out = json.loads(res.stdout)
    assert out["bench"] == "e2e_tick_to_order" and out["quick"] is True
    run = out["runs"]["sleep"]
    assert set(run) >= {"strategy", "tick_to_order", "stages", "unlinked", "requests_measured_window"}
    assert run["layout"] == "none"
    assert set(run["unlinked"]) == {"no_journal", "md_not_in_ring", "frame_not_stamped", "replanned_row"}
    t2o = run["tick_to_order"]
    assert "n" in t2o and (t2o["n"] == 0 or {"p50_us", "p99_us"} <= set(t2o))
    assert out["peer"]["strategy"] == "poll"
    assert set(out["goal"]) == {"p50_us", "p99_us", "met_p50", "met_p99"}
    assert "ratio_p50_vs_peer" in out
    for key in ("floor_sleeping_wake_chain", "floor_sleeping_wake_chain_20ms"):
        assert out[key]["n"] > 0 and out[key]["p50_us"] > 0


def test_every_layout_places_the_venue_and_every_role():
    spec = importlib.util.spec_from_file_location("bench_e2e", REPO / "bench" / "e2e.py")
    e2e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e2e)
    for name, cpus in e2e.LAYOUTS.items():
        assert set(cpus) == {"venue", *e2e.ROLES}, name
        assert all(c is None or (isinstance(c, int) and c >= 0) for c in cpus.values()), name
