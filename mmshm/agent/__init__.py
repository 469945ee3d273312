"""The agent runtime every mmshm process runs in (DESIGN.md section 4).

Agents (``do_work() -> int``) run in a duty cycle with an idle strategy, pinned to a CPU,
heartbeating into the shared process table, driven by signals and speaking sd_notify.
Processes call :func:`run_agents` (or :func:`run_role` with a loaded config).

Names are imported lazily so that light users (pinning, sd_notify) do not map shared
memory or import numpy.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Agent": "base", "CompositeAgent": "base", "FunctionAgent": "base",
    "IdleStrategy": "idle", "BackoffIdle": "idle", "BusySpinIdle": "idle", "NoOpIdle": "idle",
    "SleepingIdle": "idle", "SpinThenYieldIdle": "idle", "make_idle": "idle",
    "PinningError": "pinning", "allowed_cpus": "pinning", "pin_current_process": "pinning",
    "ProcessSlot": "proctable", "ProcessTable": "proctable", "VerdictTable": "proctable",
    "read_halt": "proctable",
    "AgentRunner": "runner", "default_instance": "runner", "run_agents": "runner", "run_role": "runner",
    "SdNotifier": "sdnotify", "SignalFlags": "signals",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmshm.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mmshm.agent.{module}"), name)
