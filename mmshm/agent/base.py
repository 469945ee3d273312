"""The Agent protocol (Aeron's Agent): a unit of work the runner calls in a duty cycle.

An agent never blocks and never sleeps: ``do_work()`` does what is ready now and returns
how much it did, so the runner's idle strategy can decide whether to spin, yield or sleep.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable


@runtime_checkable
class Agent(Protocol):
    """One duty-cycle participant. ``name`` appears in logs and the STATUS line."""

    name: str

    def on_start(self) -> None:
        """Called once, in the runner's process, before the first ``do_work``."""

    def do_work(self) -> int:
        """Do what is ready without blocking; return the amount of work done (0 = idle)."""

    def on_close(self) -> None:
        """Called once when the runner stops, after the stop hook; release resources."""


class CompositeAgent:
    """Several agents run as one: started in order, closed in reverse order.

    ``do_work`` calls every agent each cycle and returns the summed work, so a process with
    a reader agent and a writer agent idles only when both had nothing to do. If one
    agent's ``on_start`` fails, the agents already started are closed before re-raising.
    """

    def __init__(self, agents: Sequence[Agent], name: str | None = None) -> None:
        if not agents:
            raise ValueError("CompositeAgent needs at least one agent")
        self.agents: tuple[Agent, ...] = tuple(agents)
        self.name = name or "+".join(a.name for a in self.agents)
        self._started: list[Agent] = []

    def bind_runner(self, runner) -> None:
        """Forward the runner to every agent that wants it (see ``AgentRunner``)."""
        for agent in self.agents:
            bind = getattr(agent, "bind_runner", None)
            if bind is not None:
                bind(runner)

    def on_start(self) -> None:
        for agent in self.agents:
            try:
                agent.on_start()
            except BaseException:
                self._close_started()
                raise
            self._started.append(agent)

    def do_work(self) -> int:
        work = 0
        for agent in self.agents:
            work += agent.do_work()
        return work

    def on_close(self) -> None:
        self._close_started()

    def _close_started(self) -> None:
        """Close every started agent in reverse order; the first error is re-raised last."""
        error: BaseException | None = None
        while self._started:
            agent = self._started.pop()
            try:
                agent.on_close()
            except BaseException as exc:  # keep closing the others
                error = error or exc
        if error is not None:
            raise error


class FunctionAgent:
    """An agent from plain callables: handy for small procs and tests."""

    def __init__(self, name: str, work, on_start=None, on_close=None) -> None:
        self.name = name
        self._work = work
        self._on_start = on_start
        self._on_close = on_close

    def on_start(self) -> None:
        if self._on_start is not None:
            self._on_start()

    def do_work(self) -> int:
        return int(self._work() or 0)

    def on_close(self) -> None:
        if self._on_close is not None:
            self._on_close()
