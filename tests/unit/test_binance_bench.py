"""bench/feed.py --quick runs and prints the JSON it promises (shape only, never speed)."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import PYTHON, REPO


@pytest.mark.timeout(120)
def test_feed_bench_quick_shape():
    out = subprocess.run([PYTHON, str(REPO / "bench" / "feed.py"), "--quick"], capture_output=True, timeout=110)
    assert out.returncode == 0, out.stderr.decode()
    d = json.loads(out.stdout)
    assert d["bench"] == "feed" and d["quick"] is True and d["messages"] == 20_000
    for k in ("ours", "json_loads_dict", "orjson_dict"):
        assert d[k]["msgs_per_s"] > 0
    assert d["ratio_vs_json_loads"] > 0 and d["ratio_vs_orjson"] > 0
    for k in ("all", "published_events", "depth", "bookTicker", "trade"):
        assert {"count", "p50_ns", "p99_ns"} <= set(d["latency"][k])
    assert set(d["goals"]) == {"msgs_per_s_ge_1e6", "ratio_vs_json_loads_ge_15", "p50_le_2us"}
