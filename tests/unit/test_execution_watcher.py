"""RowWatcher (mmshm/execution/watcher.py) and the executor idle/latency plumbing around it."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mmshm.execution.watcher import RowWatcher


def _wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.001)
    return pred()


@pytest.mark.timeout(20)
def test_wakes_once_per_change_and_not_while_unchanged():
    versions = [0, 0]
    wakes = []
    w = RowWatcher(lambda: tuple(versions), lambda: wakes.append(tuple(versions)), 200_000)
    w.start()
    try:
        assert _wait(lambda: len(wakes) == 1)          # the first read counts as a change
        polls = w.polls
        assert _wait(lambda: w.polls >= polls + 5)     # several reads of the same versions...
        assert len(wakes) == 1                         # ...and no further wake
        versions[1] = 2
        assert _wait(lambda: len(wakes) == 2)
        assert wakes[-1] == (0, 2) and w.wakes == 2
    finally:
        w.stop()
    assert not w.alive


@pytest.mark.timeout(20)
def test_wakes_an_asyncio_loop_waiting_on_a_future():
    versions = [1]

    async def main():
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        w = RowWatcher(lambda: versions[0], lambda: loop.call_soon_threadsafe(woken.set), 100_000)
        w.start()
        try:
            await asyncio.wait_for(woken.wait(), 5)     # initial read
            woken.clear()
            threading.Timer(0.05, lambda: versions.__setitem__(0, 2)).start()   # a writer elsewhere
            await asyncio.wait_for(woken.wait(), 5)
            return w.wakes
        finally:
            w.stop()

    assert asyncio.run(main()) == 2


@pytest.mark.timeout(20)
def test_read_errors_are_counted_and_a_closed_loop_ends_the_thread():
    calls = {"n": 0}

    def versions():
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ValueError("segment gone")
        return calls["n"]                               # changes on every read

    def wake():
        raise RuntimeError("Event loop is closed")

    w = RowWatcher(versions, wake, 100_000)
    w.start()
    assert _wait(lambda: not w.alive)
    assert w.errors == 2 and w.wakes == 1


def test_park_is_the_sleep_between_reads():
    slept = []
    w = RowWatcher(lambda: 0, lambda: None, 25_000, sleep=lambda s: (slept.append(s), w.stop()))
    w._running = True
    w._run()                                            # one pass on this thread: read, wake, park
    assert slept == [25_000 / 1e9]
    with pytest.raises(ValueError):
        RowWatcher(lambda: 0, lambda: None, 0)


@pytest.mark.timeout(30)
def test_executor_idle_wait_is_ended_by_a_target_row_version_change(instance):
    """ExecutorService: the idle wait (timed pass 60 s) returns because the target row changed."""
    import numpy as np

    from mmshm.config import load_config
    from mmshm.execution.process import ExecutorService
    from mmshm.records import TARGET_ROW
    from mmshm.shm import SeqlockTable

    cfg = load_config(cli_overrides=[f"instance={instance}", "idle.hot_max_park_ns=100000", "idle.bells=false"],
                      env={})
    targets = SeqlockTable.create(instance, "targets", TARGET_ROW, rows=2)
    svc = ExecutorService(cfg)
    svc.targets, svc.n_inst = targets, 2

    async def main():
        svc._start_watcher()
        try:
            assert svc.watcher is not None and svc.watcher.park_ns == 100_000
            # let the watcher take its first reading, then start a fresh pass (clears the poke)
            await asyncio.wait_for(_until(lambda: svc.watcher.wakes >= 1), 10)
            await asyncio.sleep(0.01)
            svc._poked = False
            wait = asyncio.ensure_future(svc._wait_wake(60.0))
            await asyncio.sleep(0.05)
            assert not wait.done()                       # nothing changed: still parked
            row = np.zeros(1, TARGET_ROW)[0]
            row["instrument"] = 1
            threading.Thread(target=targets.write, args=(1, row)).start()   # "the quoter"
            await asyncio.wait_for(wait, 10)
            assert svc._poked and svc.watcher.wakes >= 2
        finally:
            svc._stop_watcher()

    try:
        asyncio.run(main())
    finally:
        targets.close()
    assert svc.watcher is None


@pytest.mark.timeout(30)
def test_executor_idle_wait_is_ended_by_its_doorbell(instance):
    """ExecutorService with bells: no watcher thread; the idle wait (timed pass 60 s) returns
    because a writer rang the executor's doorbell after writing a target row."""
    import numpy as np

    from mmshm.agent.doorbell import BellRinger
    from mmshm.config import load_config
    from mmshm.execution.process import ExecutorService
    from mmshm.records import TARGET_ROW
    from mmshm.shm import SeqlockTable

    cfg = load_config(cli_overrides=[f"instance={instance}"], env={})
    targets = SeqlockTable.create(instance, "targets", TARGET_ROW, rows=2)
    svc = ExecutorService(cfg)
    svc.targets, svc.n_inst = targets, 2
    ringer = BellRinger(instance, "executor")

    def quoter():
        row = np.zeros(1, TARGET_ROW)[0]
        row["instrument"] = 1
        targets.write(1, row)
        ringer.ring()

    async def main():
        svc._start_watcher()
        try:
            assert svc.watcher is None and svc.bell is not None
            svc._poked = False
            wait = asyncio.ensure_future(svc._wait_wake(60.0))
            await asyncio.sleep(0.05)
            assert not wait.done()                       # nobody rang: still parked
            threading.Thread(target=quoter).start()
            await asyncio.wait_for(wait, 10)
            assert svc._poked and svc.bell.rings == 1 and ringer.rung == 1
        finally:
            svc._stop_watcher()

    try:
        asyncio.run(main())
    finally:
        targets.close()
        ringer.close()
    assert svc.bell is None


async def _until(pred):
    while not pred():
        await asyncio.sleep(0.001)
