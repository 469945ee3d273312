"""Risk's part of the status line: ``Risk: dd=0.3% margin=15% kill=OK``."""
from __future__ import annotations


def format_risk(snapshot: dict) -> str:
    """From ``RiskEngine.snapshot()``."""
    return (f"Risk: dd={snapshot['drawdown'] * 100:.1f}% margin={snapshot['margin_utilisation'] * 100:.0f}% "
            f"kill={snapshot['kill']}")
