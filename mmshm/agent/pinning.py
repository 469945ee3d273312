"""Pin the current process to one CPU and prove it took.

``sched_setaffinity`` silently means nothing if a cgroup/cpuset or systemd's CPUAffinity
does not include the CPU, and pinning is exactly what a busy-spinning process must not
get wrong, so the result is read back and any mismatch is a ``PinningError`` that names
the CPU and the set the process is allowed to use.
"""
from __future__ import annotations

import os


class PinningError(RuntimeError):
    """The process could not be pinned to ``cpu``; ``allowed`` is the set it may use."""

    def __init__(self, cpu: object, allowed: frozenset[int], detail: str) -> None:
        self.cpu = cpu
        self.allowed = allowed
        super().__init__(f"cannot pin to CPU {cpu!r}: {detail} (allowed CPUs: {format_cpus(allowed)})")


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    """``{0,1,2,5}`` -> ``"0-2,5"`` (the cpuset list format of /proc and systemd)."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out) or "none"


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may currently run on."""
    return frozenset(os.sched_getaffinity(0))


def _thread_ids() -> list[int]:
    """Every thread of this process (affinity is per thread on Linux)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # pragma: no cover - /proc not mounted
        return [0]


def pin_current_process(cpu: int, all_threads: bool = True) -> frozenset[int]:
    """Pin every thread of this process (or, with ``all_threads=False``, only the calling
    thread) to ``cpu``; return the verified affinity ``{cpu}``.

    Threads started later inherit the calling thread's mask. Raises ``PinningError`` when
    ``cpu`` is not an int >= 0, not in the allowed set, refused by the kernel, or not what
    reads back.
    """
    allowed = allowed_cpus()
    if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
        raise PinningError(cpu, allowed, "CPU must be an integer >= 0")
    if cpu not in allowed:
        raise PinningError(cpu, allowed, "CPU is not in this process's allowed set")
    for tid in (_thread_ids() if all_threads else [0]):
        try:
            os.sched_setaffinity(tid, {cpu})
        except ProcessLookupError:
            continue  # the thread ended meanwhile
        except OSError as exc:
            raise PinningError(cpu, allowed, f"sched_setaffinity failed: {exc.strerror}") from exc
    got = frozenset(os.sched_getaffinity(0))
    if got != {cpu}:
        raise PinningError(cpu, allowed, f"affinity reads back as {format_cpus(got)}")
    return got
