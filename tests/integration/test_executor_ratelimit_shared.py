"""Several processes spend one shared rate budget: together they never exceed it."""
from __future__ import annotations

import sys

import pytest

SCRIPT = r"""
import sys, time
from mmshm.execution.ratelimit import Cost, SharedRateBudget
limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 100000},
          {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100000},
          {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 500}]
b = SharedRateBudget(sys.argv[1], margin=0.0, clock=lambda: 10**18, rate_limits=limits)
print("ready", flush=True)
sys.stdin.readline()
n = 0
while b.try_acquire(Cost(1, 1)):
    n += 1
print(n, flush=True)
b.close()
"""


@pytest.mark.timeout(60)
def test_processes_share_one_budget(spawn, instance):
    import subprocess
    procs = [spawn([sys.executable, "-c", SCRIPT, instance], stdin=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        assert p.stdout.readline().strip() == b"ready", p.stderr.read()
    for p in procs:
        p.stdin.write(b"go\n")
        p.stdin.flush()
    counts = [int(p.stdout.readline()) for p in procs]
    assert sum(counts) == 500, counts
