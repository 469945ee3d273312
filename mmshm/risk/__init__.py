"""Risk: positions and PnL from fills, limits, triggers, modes with re-entry, post-mortems.

Entry point: :class:`mmshm.risk.engine.RiskEngine`; parameters in
:class:`mmshm.risk.params.RiskParams` and :class:`mmshm.risk.params.InstrumentRisk`.
"""
from __future__ import annotations

from mmshm.risk.clock import Clock, SimClock, SystemClock
from mmshm.risk.engine import RiskEngine, instruments_from_rows
from mmshm.risk.modes import FLAG_ALERT, FLAG_PAUSED, FLAG_PULL, HaltController
from mmshm.risk.params import Action, InstrumentRisk, RiskParams, TriggerCode, TriggerSpec
from mmshm.risk.triggers import Breach, Metrics

__all__ = ["Action", "Breach", "Clock", "FLAG_ALERT", "FLAG_PAUSED", "FLAG_PULL", "HaltController",
           "InstrumentRisk", "Metrics", "RiskEngine", "RiskParams", "SimClock", "SystemClock",
           "TriggerCode", "TriggerSpec", "instruments_from_rows"]
