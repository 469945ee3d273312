"""Minimal risk / executor processes for the control-CLI tests: ``python control_roles.py risk|executor STATE_DIR``.

Not the real procs (procs/risk.py and procs/executor.py are built separately): these wire
the real pieces the commands contract asks those processes to wire, and nothing else:

- risk: a real ``RiskEngine`` under the agent runner, writing the control table every
  10 ms, SIGUSR1 -> ``engine.halt(MANUAL)`` (``on_halt``), and a ``CommandAgent`` with
  ``risk_command_handler(engine)``.
- executor: the runner (SIGUSR1 latches HALTED in its process row) and a ``CommandAgent``
  with ``executor_command_handler`` (RESUME clears the latch).
"""
from __future__ import annotations

import sys
import time
from fractions import Fraction

from mmshm.agent.base import FunctionAgent
from mmshm.agent.idle import SleepingIdle
from mmshm.agent.runner import run_role
from mmshm.config import instrument_risk_kwargs, load_config, risk_params_kwargs
from mmshm.records import CONTROL_ROW
from mmshm.risk.engine import RiskEngine
from mmshm.risk.params import InstrumentRisk, RiskParams, TriggerCode
from mmshm.shm import SeqlockTable
from mmshm.supervisor.commands import CommandAgent, executor_command_handler, risk_command_handler


def main(role: str, state_dir: str) -> int:
    cfg = load_config(profile="ci", cli_overrides=[f"state_dir={state_dir}"])
    idle = SleepingIdle(2_000_000)
    if role == "executor":
        return run_role("executor", [CommandAgent(cfg.instance, executor_command_handler)], cfg, idle=idle)
    engine = RiskEngine(RiskParams(**risk_params_kwargs(cfg)),
                        [InstrumentRisk(0, "BTCUSDT", Fraction(1, 10), **instrument_risk_kwargs(cfg))])
    control = SeqlockTable.create(cfg.instance, "control", CONTROL_ROW, cfg.segments.control_rows)
    rows = engine.control_rows()
    next_ns = [0]

    def publish() -> int:
        now = time.monotonic_ns()
        if now < next_ns[0]:
            return 0
        next_ns[0] = now + 10_000_000
        engine.evaluate()
        engine.control_rows(rows)
        control.write_batch(0, rows)
        return 1

    publish()
    try:
        return run_role("risk", [FunctionAgent("control", publish),
                                 CommandAgent(cfg.instance, risk_command_handler(engine), interval_s=0.01)],
                        cfg, idle=idle, on_halt=lambda: engine.halt(TriggerCode.MANUAL))
    finally:
        control.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
