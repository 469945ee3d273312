"""The quoter's part of the status line: ``Signals: imb=+0.12 leadlag=+0.8bps cascade=0.10``."""
from __future__ import annotations


def format_signals(sig: dict) -> str:
    """From ``Quoter.signals()`` (or PyQuoter.signals())."""
    return (f"Signals: imb={sig.get('imbalance', 0.0):+.2f} leadlag={sig.get('leadlag_bp', 0.0):+.1f}bps "
            f"cascade={sig.get('cascade', 0.0):.2f} vol={sig.get('sigma_bp', 0.0):.1f}bps/s^0.5")


def quoted_spread_bp(target) -> float | None:
    """Best own ask - best own bid in bp of their mid, from a TARGET_ROW (None if one-sided)."""
    if int(target["n_bids"]) == 0 or int(target["n_asks"]) == 0:
        return None
    b, a = int(target["bid_px"][0]), int(target["ask_px"][0])
    return (a - b) / ((a + b) / 2) * 1e4
