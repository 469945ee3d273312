"""The role list: which processes the supervisor runs, in which order, and how each stops.

One place for the order. Start order follows the data flow so that each process finds
what it reads (feed: md/book/instruments; risk: the control block, so nothing quotes
without limits; quoter: targets; executor: orders; then recorder, watchdog, exporter).
Stop order is the reverse of what matters for money: the executor first (its SIGTERM
path cancels every order, so it gets the longest timeout), then the quoter, the feed,
risk, and the observers; the simulated venue goes last.

A role whose module does not exist yet (``importlib.util.find_spec`` finds nothing) is
reported and skipped, so ``mmshm up`` runs with what is built and picks up new
processes as they land, without editing this list.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Iterable, Sequence

#: Package the per-role programs live in (``procs/<role>.py`` installed as ``mmshm.procs``).
PROCS_PACKAGE = "mmshm.procs"


@dataclass(frozen=True)
class RoleSpec:
    """One supervised role."""

    name: str
    #: Seconds SIGTERM may take before SIGKILL (the executor's cancel-all needs the most).
    stop_timeout_s: float = 10.0
    #: Seconds to wait for the process-table row to reach RUNNING before starting the next role.
    ready_timeout_s: float = 20.0
    #: Giving up on this role (too many restarts) halts trading. Not for the exporter:
    #: losing metrics must not stop a healthy market maker.
    halt_on_give_up: bool = True

    @property
    def module(self) -> str:
        return f"{PROCS_PACKAGE}.{self.name}"


#: Every role, in START order.
ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("feed"),
    RoleSpec("risk"),
    RoleSpec("quoter"),
    RoleSpec("executor", stop_timeout_s=20.0),
    RoleSpec("recorder"),
    RoleSpec("watchdog"),
    RoleSpec("exporter", halt_on_give_up=False),
)

#: STOP order (by name): executor first (cancel-all), then what feeds it.
STOP_ORDER: tuple[str, ...] = ("executor", "quoter", "feed", "risk", "recorder", "watchdog", "exporter")

#: Name of the simulated venue child (not a role of the process table; stopped last).
VENUE = "venue"


def role_spec(name: str) -> RoleSpec:
    for spec in ROLES:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown role {name!r}; known: {', '.join(r.name for r in ROLES)}")


def module_available(spec: RoleSpec) -> bool:
    """True if ``mmshm.procs.<role>`` can be imported (it exists on disk)."""
    try:
        return importlib.util.find_spec(spec.module) is not None
    except (ImportError, ValueError):
        return False


def select_roles(only: Iterable[str] | None = None, skip: Iterable[str] = (),
                 available=module_available) -> tuple[list[RoleSpec], list[RoleSpec]]:
    """(roles to start in start order, roles skipped because their module is missing).

    ``only`` restricts to the named roles, ``skip`` removes some; unknown names raise
    ``KeyError`` (a typo must not silently run a different pipeline).
    """
    names = {r.name for r in ROLES}
    for n in list(only or ()) + list(skip):
        if n not in names:
            raise KeyError(f"unknown role {n!r}; known: {', '.join(r.name for r in ROLES)}")
    wanted = [r for r in ROLES if (only is None or r.name in set(only)) and r.name not in set(skip)]
    run, missing = [], []
    for r in wanted:
        (run if available(r) else missing).append(r)
    return run, missing


def stop_order(names: Sequence[str]) -> list[str]:
    """``names`` sorted by STOP_ORDER (unknown names, e.g. the venue, last in given order)."""
    rank = {n: i for i, n in enumerate(STOP_ORDER)}
    known = sorted((n for n in names if n in rank), key=rank.__getitem__)
    return known + [n for n in names if n not in rank]
