"""Cross-process ring benchmark: one-way latency and throughput vs multiprocessing.Queue/Pipe.

Shared by ``bench/ring.py`` and ``mmshm bench ring``. Writer and reader run in separate
processes pinned to different cores (when two are allowed) and busy-spin. Latency is
one-way: the writer stamps CLOCK_MONOTONIC ns into the 64-byte payload right before
publishing; the reader stamps right after the record arrives. Messages are paced (an
interval longer than each transport's latency) so the figure is latency, not queueing.
Every transport is measured in the same run so the ratios compare like with like.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import platform
import struct
import time
from typing import Any

import numpy as np

MSG = np.dtype([("seq", "<u8"), ("t_mono", "<i8"), ("k", "<u8"), ("pad", "<u8", (5,))])  # 64 bytes
_STAMP = struct.Struct("<qQ")        # t_mono, k at byte offset 8
# Latency runs send in chunks with a pause between them, so neither busy-spinning process
# runs for more than ~0.1 s at a time: under --rt the kernel's RT throttling
# (sched_rt_runtime_us, 0.95 s per second) would otherwise stall both for ~50 ms.
CHUNK = 4096
CHUNK_PAUSE_S = 0.15
# forkserver: children fork from one clean, pre-imported server (fast start, no inherited threads).
_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(["numpy", "mmshm.shm", "mmshm.shm.ringbench"])


def _pin(cpu: int | None) -> None:
    """Pin to ``cpu``; with MMSHM_BENCH_RT=1 also run SCHED_FIFO (needs CAP_SYS_NICE).

    Real-time priority keeps other load on a shared machine from preempting the busy-spinning
    processes, so the figure is the transport's latency rather than the scheduler's. The
    kernel's RT throttling (sched_rt_runtime_us) still leaves other tasks a share.
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if os.environ.get("MMSHM_BENCH_RT") == "1":
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


def _spin_until(t_ns: int) -> None:
    now = time.monotonic_ns
    while now() < t_ns:
        pass


def _stats(lat: np.ndarray) -> dict[str, float]:
    if len(lat) == 0:
        return {"n": 0}
    q = np.percentile(lat, [50, 99, 99.9])
    return {"n": int(len(lat)), "p50_ns": float(q[0]), "p99_ns": float(q[1]), "p999_ns": float(q[2]),
            "mean_ns": float(lat.mean()), "min_ns": float(lat.min()), "max_ns": float(lat.max())}


# --------------------------------------------------------------------------- ring workers

def _ring_writer(kind: str, instance: str, mode: str, n: int, interval_ns: int, batch: int, cpu: int | None,
                 ready: Any, go: Any, result: Any) -> None:
    from mmshm.shm import BroadcastWriter, GatedWriter

    _pin(cpu)
    if kind == "gated":
        w = GatedWriter.create(instance, "bench", MSG, capacity=1 << 16, required=("bench",))
        publish = w.try_publish_bytes
    else:
        w = BroadcastWriter.create(instance, "bench", MSG, capacity=1 << 16)
        publish = w.publish_bytes
    ready.set()
    go.wait()
    mono = time.monotonic_ns
    refused = 0
    if mode == "latency":
        buf = bytearray(MSG.itemsize)
        pack = _STAMP.pack_into
        t_next = mono() + 1_000_000
        for k in range(n):
            if k and k % CHUNK == 0:
                time.sleep(CHUNK_PAUSE_S)      # let the reader nap too (RT throttling, shared cores)
                t_next = mono() + interval_ns
            _spin_until(t_next)
            t_next += interval_ns
            pack(buf, 8, mono(), k)
            while publish(buf) is False:        # gated ring full: count and retry
                refused += 1
            if k % 1024 == 0:
                w.heartbeat()
    elif mode == "python":                     # per-message Python calls, as fast as possible
        buf = bytearray(MSG.itemsize)
        for k in range(n):
            while publish(buf) is False:
                refused += 1
    else:                                       # batched: Cython loop inside publish_batch
        arr = np.zeros(batch, MSG)
        arr["k"] = np.arange(batch)
        sent = 0
        while sent < n:
            arr["t_mono"] = mono()
            m = w.publish_batch(arr[: min(batch, n - sent)])
            if m == 0:
                refused += 1
            sent += m
    result.put({"refused": refused})
    # stay alive (segment owner) until the reader has finished
    go.wait()
    w.close()


def _ring_reader(kind: str, instance: str, mode: str, n: int, batch: int, cpu: int | None,
                 writer_ready: Any, ready: Any, result: Any) -> None:
    from mmshm.shm import BroadcastReader, GatedReader

    _pin(cpu)
    writer_ready.wait()
    cls = GatedReader if kind == "gated" else BroadcastReader
    r = cls.attach(instance, "bench", MSG, reader="bench")
    ready.set()
    mono = time.monotonic_ns
    got = 0
    t_first = t_last = 0
    if mode == "latency":
        lat = np.zeros(n, dtype=np.int64)
        buf = bytearray(MSG.itemsize)
        poll = r.poll_into
        unpack = _STAMP.unpack_from
        while got + r.lost < n:                # a lapped broadcast reader counts what it lost
            if poll(buf):
                t1 = mono()
                lat[got] = t1 - unpack(buf, 8)[0]
                got += 1
                if got % CHUNK == 0:
                    time.sleep(CHUNK_PAUSE_S / 3)  # the writer pauses longer: we spin again before it resumes
        out = {"lat": lat[:got]}
    elif mode == "python":
        buf = bytearray(MSG.itemsize)
        poll = r.poll_into
        while not poll(buf):
            pass
        t_first = mono()
        got = 1
        while got + r.lost < n:
            if poll(buf):
                got += 1
        t_last = mono()
        out = {"elapsed_ns": t_last - t_first, "n": n - 1}
    else:
        arr = np.zeros(batch, MSG)
        lat_samples = []
        while got + r.lost < n:
            m = r.poll_batch(arr)
            if m:
                t1 = mono()
                if got == 0:
                    t_first = t1
                    first_m = m
                got += m
                lat_samples.append(t1 - int(arr["t_mono"][m - 1]))
        t_last = mono()
        out = {"elapsed_ns": t_last - t_first, "n": n - first_m, "lat": np.array(lat_samples, dtype=np.int64)}
    out.update(gaps=r.gaps, lost=r.lost)
    r.close()
    result.put(out)


def run_ring(kind: str, mode: str, n: int, cpus: tuple[int | None, int | None], interval_ns: int = 20_000,
             batch: int = 4096) -> dict[str, Any]:
    """One writer/reader pair over a fresh ring; returns the reader's measurements."""
    instance = f"bench{os.getpid()}x{time.monotonic_ns() % 1_000_000}"
    wready, rready, go = _CTX.Event(), _CTX.Event(), _CTX.Event()
    wres, rres = _CTX.Queue(), _CTX.Queue()
    wp = _CTX.Process(target=_ring_writer, args=(kind, instance, mode, n, interval_ns, batch, cpus[0], wready, go, wres))
    rp = _CTX.Process(target=_ring_reader, args=(kind, instance, mode, n, batch, cpus[1], wready, rready, rres))
    wp.start()
    rp.start()
    try:
        if not rready.wait(30):
            raise RuntimeError("ring reader did not start")
        go.set()
        out = rres.get(timeout=120)
        out.update(wres.get(timeout=30))
        return out
    finally:
        for p in (rp, wp):
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        from mmshm.shm.registry import _files
        from mmshm.shm.segment import SHM_DIR

        for f in _files(instance):
            try:
                os.unlink(os.path.join(SHM_DIR, f))
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------- peers

def _peer_writer(kind: str, chan: Any, mode: str, n: int, interval_ns: int, cpu: int | None, go: Any) -> None:
    _pin(cpu)
    send = chan.put if kind == "queue" else chan.send_bytes
    mono = time.monotonic_ns
    go.wait()
    if mode == "latency":
        # Pace by sleeping, not spinning: mp.Queue sends from a feeder thread on this same
        # (pinned) CPU, which a spinning main thread would starve. The stamp is taken right
        # before send, so the pacing method does not enter the measured latency.
        for k in range(n):
            time.sleep(interval_ns / 1e9)
            send(_STAMP.pack(mono(), k) + bytes(MSG.itemsize - 16))
    else:
        payload = bytes(MSG.itemsize)
        for _ in range(n):
            send(payload)


def _peer_reader(kind: str, chan: Any, mode: str, n: int, cpu: int | None, ready: Any, result: Any) -> None:
    _pin(cpu)
    recv = chan.get if kind == "queue" else chan.recv_bytes
    mono = time.monotonic_ns
    ready.set()
    if mode == "latency":
        lat = np.zeros(n, dtype=np.int64)
        for i in range(n):
            b = recv()
            lat[i] = mono() - _STAMP.unpack_from(b, 0)[0]
        result.put({"lat": lat})
    else:
        recv()
        t0 = mono()
        for _ in range(n - 1):
            recv()
        result.put({"elapsed_ns": mono() - t0, "n": n - 1})


def run_peer(kind: str, mode: str, n: int, cpus: tuple[int | None, int | None], interval_ns: int = 200_000) -> dict[str, Any]:
    """multiprocessing.Queue ("queue") or Pipe ("pipe") between two pinned processes."""
    if kind == "queue":
        chan_w = chan_r = _CTX.Queue()
    else:
        chan_r, chan_w = _CTX.Pipe(duplex=False)
    ready, go, res = _CTX.Event(), _CTX.Event(), _CTX.Queue()
    rp = _CTX.Process(target=_peer_reader, args=(kind, chan_r, mode, n, cpus[1], ready, res))
    wp = _CTX.Process(target=_peer_writer, args=(kind, chan_w, mode, n, interval_ns, cpus[0], go))
    rp.start()
    wp.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("peer reader did not start")
        go.set()
        return res.get(timeout=120)
    finally:
        for p in (wp, rp):
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


# --------------------------------------------------------------------------- driver

def _cpus() -> tuple[int | None, int | None, str]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        return allowed[0], allowed[1], f"writer on cpu {allowed[0]}, reader on cpu {allowed[1]}"
    return allowed[0], allowed[0], f"only cpu {allowed[0]} allowed: writer and reader share it"


def run(quick: bool = False, rt: bool = False) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready report (``rt``: SCHED_FIFO workers)."""
    if rt:
        os.environ["MMSHM_BENCH_RT"] = "1"      # read by the workers (before the forkserver starts)
    cw, cr, pin_note = _cpus()
    cpus = (cw, cr)
    if quick:
        n_lat, n_peer_lat, n_py, n_batch, n_peer_tp = 3_000, 400, 100_000, 2_000_000, 10_000
    else:
        n_lat, n_peer_lat, n_py, n_batch, n_peer_tp = 100_000, 5_000, 2_000_000, 50_000_000, 200_000
    t_start = time.monotonic()
    lat: dict[str, Any] = {}
    tput: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    warm = lambda a: a[len(a) // 10:]          # drop the first 10% (page faults, caches)

    for kind in ("gated", "broadcast"):
        res = run_ring(kind, "latency", n_lat, cpus)
        lat[f"{kind}_python"] = _stats(warm(res["lat"]))
        extra[f"{kind}_python_latency"] = {"gaps": res["gaps"], "lost": res["lost"], "refused": res["refused"]}
    res = run_ring("gated", "batched", n_batch, cpus)
    lat["gated_batched"] = _stats(warm(res["lat"]))
    lat["gated_batched"]["note"] = "per batch of 4096: last record's publish stamp to poll_batch return"
    tput["gated_batched"] = res["n"] / (res["elapsed_ns"] / 1e9)
    extra["gated_batched"] = {"gaps": res["gaps"], "lost": res["lost"], "refused_batches": res["refused"]}
    res = run_ring("broadcast", "batched", n_batch, cpus)
    tput["broadcast_batched"] = res["n"] / (res["elapsed_ns"] / 1e9)
    extra["broadcast_batched"] = {"gaps": res["gaps"], "lost": res["lost"]}
    res = run_ring("gated", "python", n_py, cpus)
    tput["gated_python"] = res["n"] / (res["elapsed_ns"] / 1e9)
    for peer in ("queue", "pipe"):
        res = run_peer(peer, "latency", n_peer_lat, cpus)
        lat[f"mp_{peer}"] = _stats(warm(res["lat"]))
        res = run_peer(peer, "throughput", n_peer_tp, cpus)
        tput[f"mp_{peer}"] = res["n"] / (res["elapsed_ns"] / 1e9)

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else float("inf")

    ring_p50 = lat["gated_python"]["p50_ns"]
    ratios = {
        "mp_queue_p50_over_gated_python_p50": ratio(lat["mp_queue"]["p50_ns"], ring_p50),
        "mp_pipe_p50_over_gated_python_p50": ratio(lat["mp_pipe"]["p50_ns"], ring_p50),
        "mp_queue_p50_over_broadcast_python_p50": ratio(lat["mp_queue"]["p50_ns"], lat["broadcast_python"]["p50_ns"]),
        "gated_batched_over_mp_queue_throughput": ratio(tput["gated_batched"], tput["mp_queue"]),
        "gated_batched_over_mp_pipe_throughput": ratio(tput["gated_batched"], tput["mp_pipe"]),
        "gated_python_over_mp_pipe_throughput": ratio(tput["gated_python"], tput["mp_pipe"]),
    }
    goals = {
        "python_p50_le_500ns": ring_p50 <= 500,
        "python_p99_le_2us": lat["gated_python"]["p99_ns"] <= 2000,
        "p50_100x_below_mp_queue": ratios["mp_queue_p50_over_gated_python_p50"] >= 100,
        "gated_batched_ge_20M_msgs_per_s": tput["gated_batched"] >= 20e6,
    }
    return {
        "benchmark": "ring",
        "quick": quick,
        "realtime": rt,
        "message_bytes": MSG.itemsize,
        "machine": {"cpus": os.cpu_count(), "allowed": sorted(os.sched_getaffinity(0)), "pinning": pin_note,
                    "loadavg": os.getloadavg(), "python": platform.python_version()},
        "method": {"latency": "one-way, CLOCK_MONOTONIC stamped in payload; paced 20us (rings, in chunks of "
                              f"{CHUNK} with {CHUNK_PAUSE_S}s pauses) / 200us (peers, sleep-paced); "
                              "first 10% dropped; busy-spin reader (peers block in recv/get)",
                   "python": "per-message Python calls: try_publish_bytes/publish_bytes + poll_into(bytearray)",
                   "batched": "publish_batch/poll_batch of 4096 records (Cython nogil loops)"},
        "latency": lat,
        "throughput_msgs_per_s": {k: round(v) for k, v in tput.items()},
        "ratios": ratios,
        "goals": goals,
        "details": extra,
        "elapsed_s": round(time.monotonic() - t_start, 2),
    }
