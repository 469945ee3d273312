"""The kernel timer slack of the calling thread (``prctl(PR_SET_TIMERSLACK)``).

Why: Linux may fire a sleeping thread's timer up to its *timer slack* late (50 us by
default) so that wake-ups can be batched. A hot role that parks 50 us between polls (the
quoter's backoff, the executor's targets watcher) then wakes every ~130 us on a 2-core VM;
with 1 us of slack the same park wakes after ~80 us (``time.sleep(50e-6)``, p50, measured
on this machine), which is that much sooner to see a new book or target.

The slack is per thread and a new thread inherits its creator's, so the hot roles set it
first thing in the process, before any thread starts. systemd's ``TimerSlackNSec=`` does
the same for a whole unit; this keeps ``mmshm up`` and the units alike.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("mmshm.agent.timerslack")

PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def timer_slack_ns() -> int:
    """The calling thread's timer slack in ns."""
    return int(_libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0))


def set_timer_slack(ns: int) -> int:
    """Set the calling thread's timer slack to ``ns`` (> 0) and return the previous value.

    Raises ``ValueError`` for ``ns <= 0`` (0 would mean "the process default" to the
    kernel, not "none") and ``OSError`` when the kernel refuses.
    """
    if ns <= 0:
        raise ValueError(f"timer slack must be > 0 ns, got {ns}")
    before = timer_slack_ns()
    if _libc.prctl(PR_SET_TIMERSLACK, int(ns), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_TIMERSLACK, {ns}) failed")
    return before


def apply_timer_slack(role: str, ns: int) -> None:
    """For a hot role's process start: set the slack (``ns`` 0 leaves the kernel's); a
    refusal is logged, never fatal (the role only reacts a little later)."""
    if ns <= 0:
        return
    try:
        before = set_timer_slack(ns)
    except OSError as exc:
        log.warning("timer slack not set", extra={"role": role, "timer_slack_ns": ns, "error": str(exc)})
        return
    log.info("timer slack set", extra={"role": role, "timer_slack_ns": ns, "was_ns": before})


__all__ = ["apply_timer_slack", "set_timer_slack", "timer_slack_ns"]
