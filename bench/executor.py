"""Executor benchmark: target change seen -> order request on the socket; amend vs cancel+new.

    python bench/executor.py [--quick] [--n N] [--frames N]

(a) ``latency``: the real code path of the executor process, in-process, against the
    simulated venue running in its own process (``mmshm venue``, real loopback sockets):
    a TARGET_ROW is written to a real ``targets`` seqlock table; the clock starts when the
    change is seen (as the process loop stamps ``seen_mono``), then seqlock read,
    ``ExecutionSession.on_targets`` (the native order path, ``mmshm._native.orderpath``:
    plan/diff, control-row limits, rate budget, breaker, the request framed in C: HMAC
    signing, JSON, masked WebSocket frame) and the socket
    write; then the state machine and the ORDER_EVENT into a real ``orders`` gated ring. It
    stops when the frame has been written to the socket (``sent_mono`` of the WS API
    client: after the write returned). Each change moves one resting bid, so every sample
    is one ``order.modify``. ``socket_write`` is the time inside that write (the kernel's
    share: on loopback it includes TCP delivery to the local venue and waking it) and
    ``before_socket_write_p50_ns`` our code's share. Runs: ``ws_amend`` against a venue
    sleeping in epoll (the default), ``ws_amend_busy_poll_venue`` against one that
    busy-polls (``mmshm venue --busy-poll``: a remote venue never has to be woken by our
    send), ``ws_amend_spinning_busy_poll_venue`` with our loop never sleeping either (the
    executor's ``idle.executor: busy`` on a core of its own; both cores busy), and
    ``ws_ladder_3x2_amend``: each change moves 3 levels a side (6 amends in one socket
    write; the figure is the change's last request). Peers in the same run:
    ``*_per_request_peer``, the path before the single-write batch (each request framed
    in Python, recorded, then written on its own), the same change over REST
    (``PUT /fapi/v1/order``; clock stops when aiohttp has written the request headers),
    cancel+new over the WebSocket API (the new order's latency),
    ``ws_amend_spinning_busy_poll_venue_general_path_peer`` (the same change through the
    general path the native order path replaced: the plan as Python Actions, then a
    ``WsOrderBatch`` debiting and framing request by request), and
    ``raw_socket_send_peer``: a bare ``send()`` of an order-sized frame after 0.5 ms of
    idling, to a receiver sleeping or busy-polling on the other core (the floor this
    machine puts under any "written to the socket" figure). A ``breakdown`` times the
    parts alone in a tight loop (plan in C against the Python plan it replaced, ORDER_EVENT
    + ring publish, signing + JSON, the whole frame in C against the Python encoder +
    ``websockets`` framing). Round trips are
    sequential (one change in flight at a time).

(b) ``replay``: the BTCUSDT capture through the real feed path (Cython parser + book ->
    BOOK_ROW), the production quoter (native, 3 levels a side, ``fixed`` model) turning
    each book change into targets, and an ``ExecutionSession`` in shadow mode (our orders
    matched locally against the replayed book) counting the venue requests it would send
    (places + amends + cancels) with ``prefer_amend`` on and off. Goal: >= 30% fewer
    requests with amend.

Prints one JSON document. ``--quick``: a few hundred samples and a slice of the capture.
The machine may be shared: figures are what was measured; rerun quiet for real numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAPTURE = REPO.parent / "shared" / "data" / "binance-usdm-btcusdt-20240808.gz"
GOAL_P50_NS = 30_000
GOAL_AMEND_SAVING = 0.30
KEY, SECRET = "mmshm-sim-key", "mmshm-sim-secret"


def pct(ns) -> dict:
    a = np.asarray(ns, dtype=np.int64)
    if not len(a):
        return {"n": 0}
    return {"p50_ns": float(np.percentile(a, 50)), "p99_ns": float(np.percentile(a, 99)),
            "mean_ns": float(a.mean()), "n": int(len(a))}


# ----------------------------------------------------------------------------- (a) latency

def start_venue(cpu: int | None = None, busy_poll: bool = False) -> tuple[subprocess.Popen, int]:
    """``mmshm venue`` with limits high enough for thousands of back-to-back amends, pinned
    to ``cpu`` (another core than ours: a venue woken on our core by our write preempts
    us inside the send syscall, and its work would be counted as ours)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    p = subprocess.Popen([sys.executable, "-m", "mmshm", "venue", "--port", "0", "--market", "none",
                          "--weight-limit", "10000000", "--orders-10s", "10000000", "--orders-1m", "10000000"]
                         + (["--busy-poll"] if busy_poll else []),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=pin)
    line = p.stdout.readline()
    if not line:
        p.kill()
        raise SystemExit("bench/executor.py: the simulated venue did not start")
    return p, int(json.loads(line)["port"])


def control_rows() -> np.ndarray:
    from mmshm.records import CONTROL_ROW
    c = np.zeros(2, CONTROL_ROW)
    c["limit_scale_bp"] = 10_000
    c[1]["max_position"] = 1_000
    c[1]["max_order_qty"] = 100
    return c


async def latency_run(port: int, instance: str, n: int, *, prefer_ws: bool, prefer_amend: bool,
                      profile: bool = False, spin: bool = False, per_request: bool = False,
                      levels: int = 1, general_path: bool = False) -> dict:
    """``spin``: the loop never sleeps between changes (the executor's ``idle.executor:
    busy`` on a core of its own). ``per_request``: the peer path, one request at a time
    (Python framing, a socket write each), as before the single-write batch. ``levels``:
    orders a side moved by each change (the figure is then the change's LAST request)."""
    if spin:
        async def spinner() -> None:
            while True:
                await asyncio.sleep(0)
        spin_task = asyncio.get_running_loop().create_task(spinner())
        try:
            return await latency_run(port, instance, n, prefer_ws=prefer_ws, prefer_amend=prefer_amend,
                                     profile=profile, per_request=per_request, levels=levels,
                                     general_path=general_path)
        finally:
            spin_task.cancel()
    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession, SessionConfig
    from mmshm.instruments import InstrumentTable
    from mmshm.records import ORDER_EVENT, TARGET_ROW, Mode
    from mmshm.shm import GatedWriter, SeqlockTable
    from mmshm.venues.binance_usdm.auth import Signer
    from mmshm.venues.binance_usdm.trading import BinanceTrading, InstrumentIndex, UserStream, local_endpoints

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/exchangeInfo", timeout=10) as r:
        info = json.loads(r.read())
    idx = InstrumentIndex(InstrumentTable.from_binance_exchange_info(info, ["BTCUSDT"]).specs)
    spec = idx.spec(0)
    name = f"o{int(prefer_ws)}{int(prefer_amend)}{int(per_request)}{levels}"
    ring = GatedWriter.create(instance, name, ORDER_EVENT, capacity=1 << 16)   # no required reader: never full
    targets = SeqlockTable.create(instance, f"t{name}", TARGET_ROW, 1)
    ep = local_endpoints("127.0.0.1", port)
    t = BinanceTrading(ep, Signer(KEY, SECRET), idx, prefer_ws=prefer_ws, timeout_s=5.0)
    us = UserStream(ep.ws_stream, t.rest, idx)
    s = ExecutionSession(t, idx, ClientIdGenerator("bn"), ring.try_publish, user_stream=us,
                         config=SessionConfig(deadman=False, prefer_amend=prefer_amend))
    if per_request:
        t.ws_batch = lambda: None                  # the per-request path (REST's, over the WS API here)
        t.ws_session = lambda: None
    if general_path:
        s._native_ws = False                       # the path before the native one: WsOrderBatch
    ctl = control_rows()[1]
    row = np.zeros(1, TARGET_ROW)
    r0 = row[0]
    r0["n_bids"] = r0["n_asks"] = levels if levels > 1 else 0
    r0["n_bids"] = levels
    r0["bid_qty"][:levels] = spec.qty_to_lots("0.010")
    r0["ask_qty"][:levels] = spec.qty_to_lots("0.010")
    bid0, ask0 = spec.price_to_ticks("49000.0"), spec.price_to_ticks("49100.0")
    await s.start()
    prof = None
    try:
        for k in range(n + 20):                    # 20 warm-up changes, not kept
            if k == 20:
                cpu0 = time.thread_time_ns()
                if profile:
                    import cProfile
                    prof = cProfile.Profile()
                    prof.enable()
            r0["md_seq"] = k + 1
            for lv in range(levels):
                r0["bid_px"][lv] = bid0 - 10 * lv + k % 2
                r0["ask_px"][lv] = ask0 + 10 * lv + k % 2
            targets.write(0, row)
            seen = time.monotonic_ns()
            got = targets.read(0)
            await s.on_targets(got, Mode.NORMAL, seen, ctl)
            if k == 19:
                s.latency_ns.clear()
                t.ws.write_ns.clear()
        cpu = time.thread_time_ns() - cpu0
        if prof is not None:
            prof.disable()
        lat = list(s.latency_ns)
        writes = list(t.ws.write_ns) if prefer_ws else []
        c = dict(s.counters)
    finally:
        await s.stop(cancel=True)
        for seg in (ring, targets):
            seg.unlink()
            seg.close()
    per_change = 2 * levels if levels > 1 else 1
    if per_change > 1:                             # the change's last request on the socket
        lat = [max(lat[i:i + per_change]) for i in range(0, len(lat) - per_change + 1, per_change)]
        writes = []
    out = pct(lat)
    if writes:
        # the kernel's share: inside the socket write (loopback TCP delivery to the venue)
        out["socket_write"] = pct(writes)
        out["before_socket_write_p50_ns"] = float(np.percentile(np.asarray(lat) - np.asarray(writes[-len(lat):]), 50))
    # our thread's CPU per target change over the whole round trip (send, answer, user-data
    # events): robust to other load on a shared machine, unlike the wall-clock figures
    out["cpu_per_change_ns"] = cpu / max(1, n)
    out["requests"] = {k: c[k] for k in ("places", "amends", "cancels", "rejects", "not_sent")}
    if prof is not None:
        import pstats
        st = pstats.Stats(prof)
        rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
        out["profile_top_tottime"] = [{"function": f"{Path(f).name}:{line}({fn})", "calls": v[1],
                                       "tottime_us_per_change": round(v[2] / max(1, n) * 1e6, 2)}
                                      for (f, line, fn), v in rows]
    return out


def breakdown(n: int) -> dict:
    """The pure-Python parts of the path, without the network (where the time goes)."""
    import orjson

    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.orders import WorkingOrders
    from mmshm.execution.session import ExecutionSession, SessionConfig
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import ORDER_EVENT, TARGET_ROW, Mode, Side
    from mmshm.shm import GatedWriter, SeqlockTable
    from mmshm.venues.binance_usdm.auth import Signer, ws_signed_params
    from mmshm.venues.binance_usdm.trading import InstrumentIndex, modify_params

    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_notional="100")
    idx = InstrumentIndex([spec])
    s = ExecutionSession(None, idx, ClientIdGenerator("bn"), lambda r: True, mode="observe",
                         config=SessionConfig(deadman=False))
    w: WorkingOrders = s.working
    w.new_sent(client_id="x1", cid_num=1, instrument=0, side=Side.BUY, price=490_000, qty=10, md_seq=1, flags=1)
    row = np.zeros(1, TARGET_ROW)[0]
    row["n_bids"], row["bid_qty"][0] = 1, 10
    ctl = control_rows()[1]
    instance = f"xbd{os.getpid()}{uuid.uuid4().hex[:6]}"
    table = SeqlockTable.create(instance, "targets", TARGET_ROW, 1)
    ring = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=1 << 16)
    signer = Signer(KEY, SECRET)
    clock = time.perf_counter_ns
    res: dict = {}
    try:
        table.write(0, row)
        lat = np.zeros(n, np.int64)
        for i in range(n):
            t0 = clock()
            table.read(0)
            lat[i] = clock() - t0
        res["seqlock_read_target"] = pct(lat)
        for name, plan in (("plan_diff_limits", s.plan), ("plan_diff_limits_python_peer", s.plan_py)):
            for i in range(n):
                row["bid_px"][0] = 490_001 + (i % 2)
                t0 = clock()
                plan(row, Mode.NORMAL, ctl)
                lat[i] = clock() - t0
            res[name] = pct(lat)
        res["plan_speedup_over_python"] = res["plan_diff_limits_python_peer"]["p50_ns"] / res["plan_diff_limits"]["p50_ns"]
        for i in range(n):
            t0 = clock()
            out = w.amend_sent("x1", 490_001 + (i % 2), 10)
            for rec in out.records:
                ring.try_publish(rec)
            lat[i] = clock() - t0
        res["state_machine_and_ring_publish"] = pct(lat)
        vms = int(time.time() * 1000)
        for i in range(n):
            t0 = clock()
            p = modify_params("BTCUSDT", "x1", Side.BUY, 490_001 + (i % 2), 10, spec)
            p = ws_signed_params(signer, p, vms + i, 5000)
            orjson.dumps({"id": str(i), "method": "order.modify", "params": p}).decode()
            lat[i] = clock() - t0
        res["params_sign_json"] = pct(lat)
        from websockets.frames import OP_TEXT, Frame
        for i in range(n):
            t0 = clock()
            p = modify_params("BTCUSDT", "x1", Side.BUY, 490_001 + (i % 2), 10, spec)
            p = ws_signed_params(signer, p, vms + i, 5000)
            Frame(OP_TEXT, orjson.dumps({"id": str(i), "method": "order.modify", "params": p})).serialize(
                mask=True, extensions=[])
            lat[i] = clock() - t0
        res["frame_python_peer"] = pct(lat)
        from mmshm._native.wsorder import WsOrderEncoder
        enc = WsOrderEncoder(KEY, *signer.hmac_pads(), 5000)
        enc.add_instrument(0, "BTCUSDT", spec.tick_mantissa, spec.price_exp, spec.lot_mantissa, spec.qty_exp)
        for i in range(n):
            t0 = clock()
            enc.modify(i, 0, "x1", 1, 490_001 + (i % 2), 10, vms + i)
            lat[i] = clock() - t0
        res["frame_native"] = pct(lat)
        res["frame_speedup_over_python"] = res["frame_python_peer"]["p50_ns"] / res["frame_native"]["p50_ns"]
    finally:
        for seg in (table, ring):
            seg.unlink()
            seg.close()
    return res


def raw_send_peer(n: int, busy_peer: bool, cpu: int | None, peer_cpu: int | None) -> dict:
    """What one ``send()`` of an order-sized frame costs on this machine when the process
    has done other work since its last send (as the executor has: a round trip per change):
    loopback TCP, the receiver on the other core sleeping in ``recv`` or busy-polling.
    Nothing of ours runs: this is the floor under "request written to the socket"."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    pid = os.fork()
    if pid == 0:                                 # the receiver
        try:
            if peer_cpu is not None:
                os.sched_setaffinity(0, {peer_cpu})
            conn, _ = srv.accept()
            conn.setblocking(not busy_peer)
            while True:
                try:
                    if not conn.recv(65536):
                        break
                except BlockingIOError:
                    continue
        finally:
            os._exit(0)
    try:
        c = socket.create_connection(srv.getsockname())
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = b"x" * 420
        lat = np.zeros(n, np.int64)
        for i in range(n):
            time.sleep(0.0005)                   # a round trip's worth of other work
            t0 = time.monotonic_ns()
            c.send(frame)
            lat[i] = time.monotonic_ns() - t0
        c.close()
    finally:
        os.waitpid(pid, 0)
        srv.close()
    return pct(lat)


# ----------------------------------------------------------------------------- (b) replay

def replay_targets(capture: Path, max_frames: int | None) -> tuple[list, list, dict]:
    """(book rows, target rows) at every quoter output that differs from the previous one."""
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import BOOK_ROW, CONTROL_ROW, MARKET_EVENT, TARGET_ROW
    from mmshm.shm import BroadcastWriter, SeqlockTable
    from mmshm.strategy import InstrumentSpec as QSpec, Model, QuoterParams, native_quoter, row_buffer
    from mmshm.venues.binance_usdm.marketdata import BinanceUsdmBook
    from mmshm.venues.capture import load_capture

    stamps, frames = load_capture(capture)
    if max_frames:
        stamps, frames = stamps[:max_frames], frames[:max_frames]
    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_qty="0.001",
                                        min_notional="100")
    instance = f"xrp{os.getpid()}{uuid.uuid4().hex[:6]}"
    ring = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=1 << 16)
    table = SeqlockTable.create(instance, "book", BOOK_ROW, rows=1)
    books, targets = [], []
    try:
        md = BinanceUsdmBook(spec, 0)
        md.bind_output(ring, table)
        params = QuoterParams(model=Model.FIXED, levels=3, level_sizes=(2, 2, 4), half_spread_bp=1.0,
                              level_spacing_bp=0.5, max_book_age_ms=0.0, vol_warmup_s=0.0)
        q = native_quoter(params, QSpec.from_instrument_row(spec.to_row(0)[0]))
        book, book_b = row_buffer(BOOK_ROW)
        cg, cg_b = row_buffer(CONTROL_ROW)
        ci, ci_b = row_buffer(CONTROL_ROW)
        out, out_b = row_buffer(TARGET_ROW)
        c = control_rows()
        cg[0], ci[0] = c[0], c[1]
        last_v = table.version(0)
        prev = None
        keys = ("n_bids", "n_asks", "bid_px", "bid_qty", "ask_px", "ask_qty", "flags")
        n_books = 0
        for ts, fr in zip(stamps, frames):
            md.on_frame(fr, ts)
            v = table.version(0)
            if v == last_v:
                continue
            last_v = v
            table.read_into(0, book)
            n_books += 1
            q.cycle(book_b, cg_b, ci_b, 0, ts, out_b)
            cur = tuple(out[0][k].tobytes() if hasattr(out[0][k], "tobytes") else int(out[0][k]) for k in keys)
            if cur != prev:
                prev = cur
                books.append(book[0].copy())
                targets.append(out[0].copy())
    finally:
        for seg in (ring, table):
            seg.unlink()
            seg.close()
    return books, targets, {"frames": len(frames), "book_changes": n_books, "target_changes": len(targets)}


async def count_requests(books: list, targets: list, prefer_amend: bool) -> dict:
    from mmshm.execution.client_ids import ClientIdGenerator
    from mmshm.execution.session import ExecutionSession, SessionConfig
    from mmshm.instruments import InstrumentSpec
    from mmshm.records import Mode
    from mmshm.venues.binance_usdm.trading import ExchangeEnv, InstrumentIndex

    spec = InstrumentSpec.from_decimals("BTCUSDT", "binance-usdm", "0.1", "0.001", min_qty="0.001",
                                        min_notional="100", maker_fee_ppm=200, taker_fee_ppm=500)
    idx = InstrumentIndex([spec])
    s = ExecutionSession(None, idx, ClientIdGenerator("rp"), lambda r: True, mode=ExchangeEnv.SHADOW,
                         config=SessionConfig(deadman=False, prefer_amend=prefer_amend))
    await s.start()
    ctl = control_rows()[1]
    ctl["max_position"] = 10**9
    for b, t in zip(books, targets):
        s.shadow.on_book_row(b)
        await s.on_targets(t, Mode.NORMAL, 0, ctl)
    c = s.counters
    total = c["places"] + c["amends"] + c["cancels"]
    await s.stop(cancel=False)
    return {"requests": total, "places": c["places"], "amends": c["amends"], "cancels": c["cancels"],
            "rejects": c["rejects"], "position_lots": int(s.working.position.get(0, 0))}


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 100 samples, 5k capture frames")
    ap.add_argument("--n", type=int, default=0, help="latency samples per path (default 2000; 100 with --quick)")
    ap.add_argument("--frames", type=int, default=0, help="capture frames replayed (0 = all)")
    ap.add_argument("--capture", default=str(DEFAULT_CAPTURE))
    ap.add_argument("--cpu", type=int, default=-1, help="pin the benchmark to this CPU (-1: the last allowed; "
                    "the venue gets the first); -2 = no pinning")
    args = ap.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    my_cpu = venue_cpu = None
    if args.cpu != -2 and len(cpus) >= 2:
        my_cpu = cpus[-1] if args.cpu < 0 else args.cpu
        venue_cpu = next(c for c in cpus if c != my_cpu)
        os.sched_setaffinity(0, {my_cpu})
    n = args.n or (100 if args.quick else 2000)
    frames = 5_000 if args.quick else (args.frames or None)

    import uvloop

    result: dict = {"benchmark": "executor", "quick": args.quick, "goal_p50_ns": GOAL_P50_NS,
                    "cpu": my_cpu, "venue_cpu": venue_cpu, "loadavg_1m": os.getloadavg()[0]}
    instance = f"xb{os.getpid()}{uuid.uuid4().hex[:6]}"

    def on_fresh_venue(busy_poll: bool = False, **kw) -> dict:
        # a fresh venue per run: each run starts with empty venue-side rate windows
        venue, port = start_venue(venue_cpu, busy_poll)
        try:
            return uvloop.run(latency_run(port, instance, **kw))
        finally:
            venue.terminate()
            try:
                venue.wait(timeout=10)
            except subprocess.TimeoutExpired:
                venue.kill()

    short = max(50, n // 4)
    result["latency"] = {
        "ws_amend": on_fresh_venue(n=n, prefer_ws=True, prefer_amend=True),
        "ws_amend_per_request_peer": on_fresh_venue(n=n, prefer_ws=True, prefer_amend=True, per_request=True),
        "ws_amend_busy_poll_venue": on_fresh_venue(busy_poll=True, n=n, prefer_ws=True, prefer_amend=True),
        "ws_amend_spinning_busy_poll_venue": on_fresh_venue(busy_poll=True, n=n, prefer_ws=True,
                                                            prefer_amend=True, spin=True),
        "ws_amend_spinning_busy_poll_venue_general_path_peer": on_fresh_venue(
            busy_poll=True, n=n, prefer_ws=True, prefer_amend=True, spin=True, general_path=True),
        "ws_ladder_3x2_amend": on_fresh_venue(n=short, prefer_ws=True, prefer_amend=True, levels=3),
        "ws_ladder_3x2_amend_per_request_peer": on_fresh_venue(n=short, prefer_ws=True, prefer_amend=True,
                                                               levels=3, per_request=True),
        "rest_amend": on_fresh_venue(n=short, prefer_ws=False, prefer_amend=True),
        "ws_cancel_new": on_fresh_venue(n=short, prefer_ws=True, prefer_amend=False),
    }
    result["profile_ws_amend"] = on_fresh_venue(n=short, prefer_ws=True, prefer_amend=True, profile=True)
    lat = result["latency"]
    result["latency"]["ratio_rest_over_ws_p50"] = lat["rest_amend"]["p50_ns"] / lat["ws_amend"]["p50_ns"]
    result["latency"]["ratio_per_request_peer_over_ws_p50"] = (lat["ws_amend_per_request_peer"]["p50_ns"]
                                                               / lat["ws_amend"]["p50_ns"])
    result["latency"]["ratio_ladder_per_request_peer_over_batch_p50"] = (
        lat["ws_ladder_3x2_amend_per_request_peer"]["p50_ns"] / lat["ws_ladder_3x2_amend"]["p50_ns"])
    result["latency"]["ratio_general_path_peer_over_native_spinning_busy_poll_p50"] = (
        lat["ws_amend_spinning_busy_poll_venue_general_path_peer"]["p50_ns"]
        / lat["ws_amend_spinning_busy_poll_venue"]["p50_ns"])
    result["latency"]["goal_met"] = lat["ws_amend"]["p50_ns"] <= GOAL_P50_NS
    result["latency"]["goal_met_spinning_busy_poll_venue"] = (
        lat["ws_amend_spinning_busy_poll_venue"]["p50_ns"] <= GOAL_P50_NS)
    result["raw_socket_send_peer"] = {
        "receiver_sleeping": raw_send_peer(short, False, my_cpu, venue_cpu),
        "receiver_busy_polling": raw_send_peer(short, True, my_cpu, venue_cpu),
    }
    result["breakdown"] = breakdown(2_000 if args.quick else 20_000)

    books, targets, info = replay_targets(Path(args.capture), frames)
    amend = asyncio.run(count_requests(books, targets, True))
    cancel_new = asyncio.run(count_requests(books, targets, False))
    saving = 1 - amend["requests"] / cancel_new["requests"] if cancel_new["requests"] else 0.0
    result["replay"] = {**info, "amend": amend, "cancel_new": cancel_new,
                        "ratio_amend_over_cancel_new": amend["requests"] / max(1, cancel_new["requests"]),
                        "saving": saving, "goal_saving": GOAL_AMEND_SAVING, "goal_met": saving >= GOAL_AMEND_SAVING}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
