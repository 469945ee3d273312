"""Doorbells (mmshm.agent.doorbell): a ring wakes the consumer; nothing lost, nothing raised."""
from __future__ import annotations

import threading

import pytest

from mmshm.agent.doorbell import BellInUse, BellRinger, Bells, Doorbell, bell_address
from mmshm.agent.idle import BackoffIdle

pytestmark = pytest.mark.timeout(30)


def test_address_is_abstract_and_per_instance_and_role(instance):
    a = bell_address(instance, "quoter")
    assert a.startswith(b"\0") and instance.encode() in a and a.endswith(b".quoter")
    assert a != bell_address(instance, "executor")
    assert a != bell_address(instance + "x", "quoter")
    with pytest.raises(ValueError, match="too long"):
        bell_address("i" * 120, "quoter")
    with pytest.raises(ValueError, match="instance and a role"):
        bell_address("", "quoter")


def test_ring_wakes_a_wait_and_is_drained(instance):
    with Doorbell(instance, "quoter") as bell:
        ringer = BellRinger(instance, "quoter")
        try:
            assert bell.wait(0.001) is False         # nothing rung: the timeout
            ringer.ring()
            ringer.ring()
            assert bell.wait(5.0) is True            # pending rings: at once, all drained
            assert bell.rings == 2 and bell.drain() == 0
            assert ringer.counts() == {"rung": 2, "absent": 0, "coalesced": 0, "errors": 0}
        finally:
            ringer.close()


def test_a_ring_from_another_thread_ends_a_sleeping_wait(instance):
    bells = Bells(instance, ["executor"])
    with Doorbell(instance, "executor") as bell:
        t = threading.Timer(0.05, bells.ring)
        t.start()
        try:
            assert bell.wait(60.0) is True           # returned because of the ring, not the 60 s
            assert bell.waits == 1 and bell.wakes == 1
        finally:
            t.join()
            bells.close()
    assert bells.counts() == {"executor": {"rung": 1, "absent": 0, "coalesced": 0, "errors": 0}}


def test_no_listener_is_counted_not_raised(instance):
    ringer = BellRinger(instance, "quoter")
    try:
        ringer.ring()
        assert ringer.absent == 1 and ringer.rung == 0
        with Doorbell(instance, "quoter") as bell:   # the consumer comes up: rings arrive
            ringer.ring()
            assert bell.drain() == 1
        ringer.ring()                                 # and goes away again
        assert ringer.absent == 2 and ringer.rung == 1
    finally:
        ringer.close()


def test_a_full_queue_coalesces_rings(instance):
    """A consumer that does not drain (busy elsewhere) costs its producers nothing but a
    counted ``coalesced``; one drain takes them all and the next wait sleeps again."""
    ringer = BellRinger(instance, "quoter")
    try:
        with Doorbell(instance, "quoter") as bell:
            for _ in range(10_000):
                ringer.ring()
            assert ringer.coalesced > 0 and ringer.rung + ringer.coalesced == 10_000
            assert bell.drain() == ringer.rung
            assert bell.wait(0.001) is False
    finally:
        ringer.close()


def test_second_consumer_of_a_role_is_refused(instance):
    with Doorbell(instance, "executor"):
        with pytest.raises(BellInUse, match="already bound"):
            Doorbell(instance, "executor")
    with Doorbell(instance, "executor"):             # freed on close
        pass


def test_backoff_idle_parks_on_the_bell(instance):
    """The sleep strategy with a bell: spins and yields as before, then waits on the bell
    for the park (no sleep call), and a pending ring makes that park return at once."""
    slept: list[float] = []
    with Doorbell(instance, "quoter") as bell:
        idle = BackoffIdle(max_spins=1, max_yields=1, min_park_ns=1_000_000, max_park_ns=4_000_000,
                           sleep=slept.append, bell=bell)
        ringer = BellRinger(instance, "quoter")
        try:
            idle.idle(0)                              # spin
            idle.idle(0)                              # yield
            ringer.ring()
            idle.idle(0)                              # park: the ring is pending -> returns at once
            assert bell.rings == 1 and bell.waits == 0
            idle.idle(0)                              # park: nothing pending -> waits out 2 ms
            assert bell.waits == 1 and bell.wakes == 0
            assert slept == [] and idle.parks == 2 and idle.park_ns == 4_000_000
            idle.idle(1)                              # work resets the backoff
            assert idle.park_ns == 1_000_000 and idle.spins == 0
        finally:
            ringer.close()


def test_no_ring_is_lost_between_a_look_and_a_park(instance):
    """The protocol every consumer follows (look for work, then park on the bell): a
    producer publishing and ringing at any moment is always seen, by the look or because
    the park returns. 2000 values; the consumer's park is 60 s, so a lost ring would hang
    the test (its timeout), not pass it."""
    n = 2000
    box = {"value": 0}
    seen: list[int] = []
    with Doorbell(instance, "quoter") as bell:
        ringer = BellRinger(instance, "quoter")

        def producer():
            for i in range(1, n + 1):
                box["value"] = i
                ringer.ring()

        idle = BackoffIdle(max_spins=0, max_yields=0, min_park_ns=60 * 10**9, max_park_ns=60 * 10**9,
                           bell=bell)
        t = threading.Thread(target=producer)
        t.start()
        try:
            last = 0
            while last < n:
                v = box["value"]                      # the look
                work = int(v != last)
                if work:
                    seen.append(v)
                    last = v
                idle.idle(work)
        finally:
            t.join()
            ringer.close()
    assert seen[-1] == n and seen == sorted(set(seen))


def test_a_signal_ends_a_park_on_the_doorbell(instance):
    """Python retries a poll a signal interrupted (PEP 475): the runner's signal flags ring
    the process's own bell, so SIGTERM is acted on at once, not after the park."""
    import os
    import signal

    from mmshm.agent import signals as sig
    from mmshm.agent.runner import AgentRunner

    class Idle:
        def do_work(self) -> int:
            return 0

    with Doorbell(instance, "quoter") as bell:
        idle = BackoffIdle(max_spins=0, max_yields=0, min_park_ns=60 * 10**9, max_park_ns=60 * 10**9, bell=bell)
        runner = AgentRunner([Idle()], idle, role="quoter")
        assert runner.flags.wake == bell.ring_self
        previous = sig.install(runner.flags)
        try:
            t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR2))
            t.start()
            assert bell.wait(60.0) is True           # ended by the handler's ring, not the 60 s
            t.join()
            assert runner.flags.paused
        finally:
            sig.restore(previous)
