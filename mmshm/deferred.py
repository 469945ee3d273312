"""An awaitable that starts its coroutine only when awaited.

Why: the executor writes a target change's requests first and awaits their answers
afterwards (``ExecutionSession.send_targets``), so the answer handling is created before
anything awaits it. Were it a coroutine object, one that is never awaited (its task was
cancelled by a halt before it ran) would leave a "coroutine was never awaited" warning
and, nested inside another, could not even be closed. A :class:`Deferred` holds only the
function and its arguments until it is awaited: nothing to close, nothing left behind
(an answer nobody waits for is settled by the pending-timeout query, as before).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Generator, Generic, TypeVar

T = TypeVar("T")


class Deferred(Generic[T]):
    """``await Deferred(fn, *args)`` is ``await fn(*args)``; ``fn(*args)`` is called then."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Awaitable[T]], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __await__(self) -> Generator[Any, None, T]:
        return self.fn(*self.args).__await__()

    def __repr__(self) -> str:
        return f"Deferred({getattr(self.fn, '__qualname__', self.fn)!r})"
