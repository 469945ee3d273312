"""Duty-cycle overhead of the agent runner, as JSON.

Figures (ns per cycle, single process, no pinning, a few hundred thousand cycles):

- ``runner_cycle_ns``: AgentRunner with a trivial agent, busy-spin idle, heartbeat into a
  real process-table row every cycle (flags check, do_work, clock, heartbeat, idle).
- peer ``bare_loop_ns``: the same do_work/clock calls in a plain Python loop, no runtime.
- ``heartbeat_native_ns`` vs peer ``heartbeat_python_ns``: the row write alone, through
  the Cython RowHeartbeat vs numpy field stores + ``SeqlockTable.write`` from Python.

Run: ``python bench/agent_cycle.py [--cycles N]``. Keep it short on shared machines.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300_000)
    args = ap.parse_args()
    n = args.cycles

    from mmshm.agent.base import FunctionAgent
    from mmshm.agent.idle import BusySpinIdle
    from mmshm.agent.proctable import ProcessTable
    from mmshm.agent.runner import AgentRunner
    from mmshm.agent.sdnotify import SdNotifier
    from mmshm.records import PROCESS_ROW

    instance = f"bench{os.getpid()}{uuid.uuid4().hex[:6]}"
    table = ProcessTable.open(instance)
    try:
        count = [0]
        runner_box = []

        def work() -> int:
            count[0] += 1
            if count[0] >= n:
                runner_box[0].request_stop()
            return count[0] & 1

        runner = AgentRunner(FunctionAgent("bench", work), BusySpinIdle(), role="bench", proc_table=table,
                             notifier=SdNotifier({}), install_signals=False)
        runner_box.append(runner)
        t0 = time.perf_counter_ns()
        runner.run()
        runner_ns = (time.perf_counter_ns() - t0) / n

        count[0] = 0
        clock = time.monotonic_ns
        t0 = time.perf_counter_ns()
        for _ in range(n):
            work()
            clock()
        bare_ns = (time.perf_counter_ns() - t0) / n

        slot = table.claim("bench")
        beat = slot.heartbeat
        t0 = time.perf_counter_ns()
        for i in range(n):
            beat(i, i, i)
        native_ns = (time.perf_counter_ns() - t0) / n

        rec = np.zeros(1, dtype=PROCESS_ROW)
        write = table.table.write
        row = slot.row
        t0 = time.perf_counter_ns()
        for i in range(n):
            r = rec[0]
            r["heartbeat_mono"] = i
            r["heartbeat_count"] = i
            r["work_count"] = i
            r["idle_cycles"] = i
            write(row, rec)
        python_ns = (time.perf_counter_ns() - t0) / n
        slot.release()
    finally:
        table.table.unlink()
        table.close()

    print(json.dumps({
        "cycles": n,
        "runner_cycle_ns": round(runner_ns, 1),
        "peer_bare_loop_ns": round(bare_ns, 1),
        "runner_overhead_ratio": round(runner_ns / bare_ns, 2),
        "heartbeat_native_ns": round(native_ns, 1),
        "peer_heartbeat_python_ns": round(python_ns, 1),
        "heartbeat_speedup": round(python_ns / native_ns, 2),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
