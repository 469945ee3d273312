"""Quote-cycle benchmark: book read -> targets written, native vs pure Python, same run.

    python bench/quoter.py [--quick] [--model fixed|as|glft] [--cycles N]

Measured per cycle, p50/p99 over many cycles, with the book varying every cycle (a
random walk of the mid and sizes, so vol, imbalance and the ladder do real work):

- ``native``: seqlock read of the BOOK_ROW and the two CONTROL_ROWs, the native cycle,
  seqlock write of the TARGET_ROW, timed in C (cython_src/quoter_bench.pyx);
- ``native_cycle_only``: the native cycle on a book already in local memory;
- ``native_step_from_python``: ``Quoter.step(books, control, targets, position)`` called
  from Python (the call procs/quoter.py makes per book event), timed with perf_counter_ns;
- ``native_from_python``: the same steps as separate Python calls (``read_into`` x3 +
  ``Quoter.cycle`` + ``write``), to show what the one-call ``step`` saves;
- ``python`` (the peer): the same steps with ``mmshm.strategy.cycle.PyQuoter``;
- ``event_routing``: what the quoter process does with a batch of md events before it
  requotes (a quoted book top, a trade, a reference book top): ``QuoteEngine.route``
  (one C loop, the process's path) against the per-event Python loop it replaced
  (``on_market_event`` per numpy record), hot and after a 2 ms sleep each time (the
  process is woken from sleep by its doorbell, with cold caches).

Prints one JSON document; ``ratio`` is python p50 / native p50. Goal: native <= 2 us.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import numpy as np

from mmshm.records import BOOK_ROW, CONTROL_ROW, TARGET_ROW, MdStatus
from mmshm.strategy import InstrumentSpec, Model, QuoterParams, native_quoter, row_buffer
from mmshm.strategy.cycle import PyQuoter

GOAL_NS = 2_000


def make_feed(n: int, seed: int = 1) -> np.ndarray:
    """n BOOK_ROWs: a random-walk mid around 600000 ticks, 20 levels a side, random sizes."""
    rng = np.random.default_rng(seed)
    feed = np.zeros(n, dtype=BOOK_ROW)
    mid = 600_000 + np.cumsum(rng.integers(-2, 3, size=n))
    lv = np.arange(20)
    feed["status"] = MdStatus.LIVE
    feed["n_bids"] = feed["n_asks"] = 20
    feed["md_seq"] = np.arange(1, n + 1)
    feed["publish_mono"] = time.monotonic_ns()
    feed["bid_px"] = (mid - 1)[:, None] - lv[None, :]
    feed["ask_px"] = (mid + 1)[:, None] + lv[None, :]
    feed["bid_qty"] = rng.integers(1, 50, size=(n, 20))
    feed["ask_qty"] = rng.integers(1, 50, size=(n, 20))
    return feed


def stats(lat_ns: np.ndarray) -> dict:
    return {"p50_ns": float(np.percentile(lat_ns, 50)), "p99_ns": float(np.percentile(lat_ns, 99)),
            "mean_ns": float(lat_ns.mean()), "n": int(len(lat_ns))}


def controls() -> np.ndarray:
    c = np.zeros(2, dtype=CONTROL_ROW)
    c["limit_scale_bp"] = 10_000
    c[1]["max_position"] = 100
    c[1]["max_order_qty"] = 10
    return c


def run(cycles: int, model: Model) -> dict:
    from mmshm._native import quoter_bench
    from mmshm.shm import SeqlockTable

    params = QuoterParams(model=model, levels=5, level_sizes=(1, 1, 2, 2, 3), max_book_age_ms=0.0)
    spec = InstrumentSpec(min_qty=1, min_notional=5 * 10**8, quote_per_tick_lot=10_000.0)
    feed = make_feed(cycles)
    feed_u8 = feed.view(np.uint8).reshape(cycles, BOOK_ROW.itemsize)
    positions = np.random.default_rng(2).integers(-30, 31, size=cycles).astype(np.int64)
    ctrl = controls()
    instance = f"qbench{os.getpid()}{uuid.uuid4().hex[:6]}"
    books = SeqlockTable.create(instance, "book", BOOK_ROW, 1)
    control = SeqlockTable.create(instance, "control", CONTROL_ROW, 2)
    targets = SeqlockTable.create(instance, "targets", TARGET_ROW, 1)
    try:
        control.write(0, ctrl[0:1])
        control.write(1, ctrl[1:2])
        book, book_b = row_buffer(BOOK_ROW)
        cg, cg_b = row_buffer(CONTROL_ROW)
        ci, ci_b = row_buffer(CONTROL_ROW)
        out, out_b = row_buffer(TARGET_ROW)
        result: dict = {}

        # native, timed in C, including the seqlock reads and the target write
        q = native_quoter(params, spec)
        lat = np.zeros(cycles, dtype=np.int64)
        quoted = quoter_bench.timed_cycles(q, books, control, targets, feed_u8, positions,
                                           book_b, cg_b, ci_b, out_b, lat)
        result["native"] = {**stats(lat), "quoted": int(quoted)}

        # the cycle alone
        q = native_quoter(params, spec)
        cg[0], ci[0] = ctrl[0], ctrl[1]
        lat = np.zeros(cycles, dtype=np.int64)
        quoter_bench.timed_cycles_no_shm(q, feed_u8, positions, cg_b, ci_b, out_b, lat)
        result["native_cycle_only"] = stats(lat)

        # native, one Python call per event (what the process does)
        q = native_quoter(params, spec)
        lat = np.zeros(cycles, dtype=np.int64)
        clock = time.perf_counter_ns
        for i in range(cycles):
            books.write(0, feed[i:i + 1])
            t0 = clock()
            q.step(books, control, targets, int(positions[i]))
            lat[i] = clock() - t0
        result["native_step_from_python"] = stats(lat)

        # native called from Python, step by step
        q = native_quoter(params, spec)
        lat = np.zeros(cycles, dtype=np.int64)
        for i in range(cycles):
            books.write(0, feed[i:i + 1])
            t0 = clock()
            books.read_into(0, book)
            control.read_into(0, cg)
            control.read_into(1, ci)
            q.cycle(book_b, cg_b, ci_b, int(positions[i]), time.monotonic_ns(), out_b)
            targets.write(0, out)
            lat[i] = clock() - t0
        result["native_from_python"] = stats(lat)

        # the peer: the same cycle in pure Python
        pq = PyQuoter(params, spec)
        n_py = max(1, cycles // 10)
        lat = np.zeros(n_py, dtype=np.int64)
        for i in range(n_py):
            books.write(0, feed[i:i + 1])
            t0 = clock()
            b = books.read(0)
            g = control.read(0)
            c = control.read(1)
            pq.cycle(b, g, c, int(positions[i]), time.monotonic_ns(), out[0])
            targets.write(0, out)
            lat[i] = clock() - t0
        result["python"] = stats(lat)
    finally:
        for t in (books, control, targets):
            t.unlink()
            t.close()

    result["event_routing"] = routing(max(300, cycles // 20))
    p50 = result["native"]["p50_ns"]
    return {
        "bench": "quoter_cycle", "model": model.name, "cycles": cycles,
        "figure": {"name": "native p50 ns (book read -> targets written)", "value": p50},
        "peer": {"name": "pure-Python p50 ns", "value": result["python"]["p50_ns"]},
        "ratio": result["python"]["p50_ns"] / p50 if p50 > 0 else None,
        "goal_ns": GOAL_NS, "meets_goal": bool(result["native"]["p99_ns"] <= GOAL_NS),
        "results": result,
    }


def routing(n: int) -> dict:
    """``QuoteEngine.route`` vs the per-event Python loop on a 3-event batch (see the
    module docstring); hot over ``n`` batches and after a 2 ms sleep over 300."""
    from mmshm.records import MARKET_EVENT, MdKind
    from mmshm.strategy.engine import QuoteEngine, Quoting

    params = QuoterParams(model=Model.GLFT, leadlag_weight=0.5)
    eng = QuoteEngine([Quoting(0, params, InstrumentSpec(min_qty=1), reference=1)])
    buf = np.zeros(64, MARKET_EVENT)
    for k, (kind, inst) in enumerate(((MdKind.BOOK_TOP, 0), (MdKind.TRADE, 0), (MdKind.BOOK_TOP, 1))):
        e = buf[k]
        e["kind"], e["instrument"], e["publish_mono"] = kind, inst, 10**9 + k
        e["bid_px"], e["ask_px"], e["trade_px"], e["trade_qty"], e["side"] = 100_000, 100_010, 100_001, 2, 1
    raw, clock = buf.view(np.uint8), time.perf_counter_ns

    def native() -> None:
        eng.route(raw, 3)
        eng.fit_trades()

    def per_event() -> None:
        dirty: dict[int, int] = {}
        for i in range(3):
            inst = eng.on_market_event(buf[i])
            if inst >= 0:
                dirty[inst] = int(buf[i]["publish_mono"])

    out: dict = {}
    for name, fn in (("native", native), ("python_per_event", per_event)):
        lat = np.empty(n, np.int64)
        for i in range(n):
            t0 = clock()
            fn()
            lat[i] = clock() - t0
        cold = np.empty(300, np.int64)
        for i in range(300):
            time.sleep(0.002)
            t0 = clock()
            fn()
            cold[i] = clock() - t0
        out[name] = {"hot": stats(lat), "after_sleep": stats(cold)}
    out["ratio_hot_p50"] = out["python_per_event"]["hot"]["p50_ns"] / max(1, out["native"]["hot"]["p50_ns"])
    out["ratio_after_sleep_p50"] = (out["python_per_event"]["after_sleep"]["p50_ns"]
                                    / max(1, out["native"]["after_sleep"]["p50_ns"]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few thousand cycles (smoke test)")
    ap.add_argument("--cycles", type=int, default=200_000)
    ap.add_argument("--model", choices=["fixed", "as", "glft"], default="glft")
    args = ap.parse_args(argv)
    cycles = 5_000 if args.quick else args.cycles
    model = {"fixed": Model.FIXED, "as": Model.AS, "glft": Model.GLFT}[args.model]
    print(json.dumps(run(cycles, model), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
