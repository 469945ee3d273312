"""Exec wrapper that ties a child's life to the supervisor's: ``python -m mmshm.supervisor.launch PID -- ARGV...``.

Sets ``PR_SET_PDEATHSIG`` (SIGTERM) and then ``execv``s ``ARGV``: the pid stays the same,
so the supervisor's pid is the process-table row's pid, and the death signal survives
the exec. If the supervisor is killed (SIGKILL, OOM) every child gets SIGTERM and runs
its graceful stop (the executor's cancel-all) instead of trading on unsupervised.

Why a wrapper and not ``preexec_fn``: ``preexec_fn`` is unsafe in a process with
threads (the supervisor's log pumps), and the wrapper costs one short interpreter
start per (re)start. ``PID`` closes the race where the supervisor dies before prctl: if
our parent is no longer ``PID``, we exit without starting anything.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` when our parent thread exits (Linux); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m mmshm.supervisor.launch PARENT_PID -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    parent = int(args[0])
    program = args[2:]
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        return 0  # the supervisor died before we could tie ourselves to it: start nothing
    sys.stdout.flush()
    os.execv(program[0], program)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
