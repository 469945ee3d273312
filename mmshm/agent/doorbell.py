"""Doorbells: a producer wakes a sleeping consumer the moment it has published.

WHY: the shared-memory rings and tables are lock-free and have no way to wake anyone, so a
consumer that sleeps between polls (the ``sleep`` idle strategy, the one that suits a
machine with fewer cores than processes) finds a new row only at its next poll. Measured
on the 2-core box: with 50 us parks each hop of tick -> quote -> order cost ~40-130 us on
average and the parks alone took ~30% of a core per hot process. A doorbell turns those
polls into a wake-up: the consumer sleeps in the kernel on its bell and the producer rings
it right after publishing, so a hop costs one scheduler wake-up (~20-40 us on this VM),
and an idle process costs nothing.

A bell is an abstract-namespace Unix datagram socket named after the instance and the
consumer's role (``\\0mmshm.<instance>.bell.<role>``): no file to clean up, gone with the
process, unique per instance (so per test). The data path stays the shared memory; a
ring carries no data, only "look now".

- The consumer (:class:`Doorbell`) binds the name. A duty-cycle process waits in
  :meth:`Doorbell.wait`; an asyncio process puts :meth:`Doorbell.fileno` in its loop
  (``add_reader``) and drains in the callback.
- Producers (:class:`BellRinger`) send one byte after they published. No listener (the
  consumer is down, or spins and never sleeps): ``sendto`` fails at once and the ring is
  counted as ``absent``. The consumer's queue full: it has rings pending already and the
  ring is counted as ``coalesced``.

No wake-up is lost as long as the consumer drains its bell BEFORE it looks for work and
sleeps only on an empty bell: a publish after the look leaves a datagram that makes the
sleep return at once; one before the look is seen by the look (at worst one spare pass).
The abstract namespace belongs to the network namespace: every role of an instance must
share one (the systemd units do not use ``PrivateNetwork=``). A bell that is never rung
only costs latency: every consumer still wakes on its own timeout.
"""
from __future__ import annotations

import errno
import os
import select
import socket

#: Roles that sleep on a bell: the latency-critical consumers of the tick-to-order path.
BELL_ROLES: tuple[str, ...] = ("quoter", "executor")

# Small receive buffer: a handful of pending rings says as much as a thousand.
_RCVBUF = 4096


def bell_address(instance: str, role: str) -> bytes:
    """The abstract socket address of ``role``'s bell in ``instance`` (leading NUL)."""
    if not instance or not role:
        raise ValueError(f"a bell needs an instance and a role, got {instance!r}, {role!r}")
    name = f"\0mmshm.{instance}.bell.{role}".encode()
    if len(name) > 107:                           # sun_path is 108 bytes
        raise ValueError(f"bell name too long for a Unix socket ({len(name)} > 107 bytes): "
                         f"shorten the instance name {instance!r}")
    return name


class BellInUse(RuntimeError):
    """Another live process already listens on this role's bell (a second consumer)."""


class Doorbell:
    """The consumer's end: bound to its role's name; wait on it, drain it, close it."""

    def __init__(self, instance: str, role: str) -> None:
        self.address = bell_address(instance, role)
        self.role = role
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind(self.address)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise BellInUse(f"the {role} bell of instance {instance!r} is already bound: "
                                "is another process of this role running?") from exc
            raise
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self.rings = 0        # datagrams drained (observability)
        self.waits = 0        # sleeps taken in wait()
        self.wakes = 0        # waits ended by a ring (the rest timed out)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> int:
        """Read every pending ring; how many there were. Call before looking for work."""
        n = 0
        recv = os.read
        fd = self._fd
        while True:
            try:
                recv(fd, 64)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            n += 1
        self.rings += n
        return n

    def wait(self, timeout_s: float) -> bool:
        """Sleep until rung or ``timeout_s`` passed (ms resolution, rounded up); True if rung.

        Drains what woke it, so the caller's next look for work is the one the ring asked
        for. Returns at once if a ring is already pending.
        """
        if self.drain():
            return True
        self.waits += 1
        ms = max(1, int(timeout_s * 1000.0 + 0.999)) if timeout_s > 0 else 0
        if self._poll.poll(ms):                   # EINTR is retried by Python (PEP 475)
            self.wakes += 1
            self.drain()
            return True
        return False

    def ring_self(self) -> None:
        """Ring our own bell (a signal handler's way to end :meth:`wait` at once)."""
        try:
            self._sock.sendto(b"\1", self.address)
        except (OSError, AttributeError):           # full (already rung) or closed
            pass

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None  # type: ignore[assignment]

    def __enter__(self) -> "Doorbell":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BellRinger:
    """A producer's end for one consumer role: ``ring()`` after publishing. Never raises
    for a consumer that is absent or already rung; a ring is one ``sendto`` (~2 us)."""

    __slots__ = ("address", "role", "_sock", "rung", "absent", "coalesced", "errors")

    def __init__(self, instance: str, role: str) -> None:
        self.address = bell_address(instance, role)
        self.role = role
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.rung = 0          # rings delivered
        self.absent = 0        # nobody listening (consumer down, or spinning without a bell)
        self.coalesced = 0     # the consumer's queue was full: rings already pending
        self.errors = 0        # anything else (counted, never raised on the publish path)

    def ring(self) -> None:
        try:
            self._sock.sendto(b"\1", self.address)
            self.rung += 1
        except BlockingIOError:
            self.coalesced += 1
        except (ConnectionRefusedError, FileNotFoundError):
            self.absent += 1
        except OSError:
            self.errors += 1

    def counts(self) -> dict[str, int]:
        return {"rung": self.rung, "absent": self.absent, "coalesced": self.coalesced,
                "errors": self.errors}

    def close(self) -> None:
        self._sock.close()


class Bells:
    """The rings one producer sends: ``ring()`` rings every consumer role it was given."""

    def __init__(self, instance: str, roles: tuple[str, ...] | list[str]) -> None:
        self.ringers = [BellRinger(instance, r) for r in roles]

    def ring(self) -> None:
        for r in self.ringers:
            r.ring()

    def counts(self) -> dict[str, dict[str, int]]:
        return {r.role: r.counts() for r in self.ringers}

    def close(self) -> None:
        for r in self.ringers:
            r.close()
