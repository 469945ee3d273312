"""Supervision: the watchdog's rules and actions, and the snapshots `mmshm status` shows.

- ``policy``: ``WatchdogPolicy`` (timeouts per role, critical roles, kill signal, interval).
- ``snapshot``: reads the process table, every segment header and the verdicts table.
- ``classify``: OK / DEAD / HUNG / IDLE / SLOW_READER from successive snapshots.
- ``watchdog``: kills HUNG processes, raises HALT, writes and logs verdicts.
"""
from mmshm.monitor.policy import WatchdogPolicy, parse_signal

__all__ = ["WatchdogPolicy", "parse_signal"]
