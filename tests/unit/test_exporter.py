"""The exporter's collector, /health and /ready decisions, and the latency histograms,
over real segments created in the test; metrics parsed back with prometheus_client."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mmshm.agent.counters import counter_index, register_counters
from mmshm.agent.proctable import ProcessTable, VerdictTable
from mmshm.exporter import SharedMemoryCollector, metric_name
from mmshm.exporter import health as hc
from mmshm.monitor.latency import (BUCKET_BOUNDS_S, LATENCY_BUCKETS, LatencyRecorder, bucket_of, open_table,
                                   read_histograms)
from mmshm.records import CONTROL_ROW, ORDER_EVENT, VERDICT_ROW, Mode, ProcState
from mmshm.shm import GatedReader, GatedWriter, SeqlockTable


def _third_pid() -> int:
    """A live pid other than ours and our parent's (one process-table row per pid)."""
    return 1


def scrape(collector) -> dict:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    text = generate_latest(reg).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = fam
    return out


def sample(fams, family, name=None, **labels):
    fam = fams[family]
    for s in fam.samples:
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError(f"{family} {name} {labels} not in {fam.samples}")


@pytest.fixture
def world(instance):
    """A process table with executor and risk rows, an orders ring with a lagging reader."""
    procs = ProcessTable.open(instance, 8)
    ex = procs.claim("executor", pid=os.getpid())
    risk = procs.claim("risk", pid=os.getppid(), cpu=1)  # one row per pid: another live pid
    ex.counters[counter_index("executor", "fills")] = 47
    ex.counters[counter_index("executor", "rejects")] = 3
    ex.counters[15] = 99  # an unnamed slot: not exported
    ex.set_state(ProcState.RUNNING)
    register_counters("scaled", ("pnl_e8",))
    scaled = procs.claim("scaled", pid=_third_pid())
    scaled.counters[0] = -1_250_000_000
    scaled.set_state(ProcState.RUNNING)
    risk.set_state(ProcState.RUNNING)
    w = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=16, required=("risk", "recorder"))
    r = GatedReader.attach(instance, "orders", ORDER_EVENT, reader="risk")
    rec = np.zeros(1, ORDER_EVENT)
    for _ in range(16):
        assert w.try_publish(rec)
    assert not w.try_publish(rec)          # recorder absent: refused
    for _ in range(10):
        r.poll()
    yield {"procs": procs, "ex": ex, "risk": risk, "writer": w, "reader": r}
    r.close()
    w.unlink()
    w.close()
    procs.close()


def test_collector_exports_processes_counters_and_segments(instance, world):
    col = SharedMemoryCollector(instance)
    try:
        f = scrape(col)
    finally:
        col.close()
    assert sample(f, "mmshm_process_state", role="executor") == int(ProcState.RUNNING)
    assert sample(f, "mmshm_process_alive", role="risk") == 1
    assert sample(f, "mmshm_process_cpu", role="risk") == 1
    assert 0 <= sample(f, "mmshm_process_heartbeat_age_seconds", role="executor") < 60
    assert sample(f, "mmshm_process_work", "mmshm_process_work_total", role="executor") == 0
    # Counters named by the role become mmshm_proc_<name>{role}.
    assert sample(f, "mmshm_proc_fills", role="executor") == 47
    assert sample(f, "mmshm_proc_rejects", role="executor") == 3
    assert "mmshm_proc_c15" not in f
    assert metric_name("a-b.c") == "mmshm_proc_a_b_c"
    assert sample(f, "mmshm_proc_pnl", role="scaled") == pytest.approx(-12.5)
    assert metric_name("pnl_e8") == "mmshm_proc_pnl" and metric_name("e8") == "mmshm_proc_e8"
    # Segments and readers.
    assert sample(f, "mmshm_segment_cursor", segment="orders") == 17
    assert sample(f, "mmshm_segment_refused", "mmshm_segment_refused_total", segment="orders") == 1
    assert sample(f, "mmshm_segment_alarm", segment="orders") == 1
    assert sample(f, "mmshm_segment_epoch", segment="orders") == 1
    assert sample(f, "mmshm_reader_lag", segment="orders", reader="risk") == 6
    assert sample(f, "mmshm_reader_lag", segment="orders", reader="recorder") == 16
    assert sample(f, "mmshm_reader_polled", "mmshm_reader_polled_total", reader="risk") == 10
    assert sample(f, "mmshm_watchdog_halt") == 0
    assert sample(f, "mmshm_exporter_read_errors") == 0
    assert col.scrapes == 1
    info = f["mmshm_info"].samples[0]
    assert info.labels["mmshm_instance"] == instance and info.value == 1


def test_control_block_and_watchdog_verdicts(instance, world):
    control = SeqlockTable.create(instance, "control", CONTROL_ROW, 3)
    verdicts = VerdictTable.open_writer(instance)
    try:
        row = np.zeros(1, CONTROL_ROW)
        row["mode"], row["limit_scale_bp"], row["flags"] = int(Mode.WIDEN), 5000, 1
        control.write(0, row)
        row["mode"], row["position"], row["max_position"] = int(Mode.NORMAL), -12, 100
        control.write(1, row)
        v = np.zeros(1, VERDICT_ROW)
        v["halt"], v["reason"], v["checked_mono"] = 1, b"feed dead", time.monotonic_ns()
        verdicts.write(0, v)
        v2 = np.zeros(1, VERDICT_ROW)
        v2["pid"], v2["role"], v2["verdict"], v2["critical"] = os.getppid(), b"risk", 2, 1
        verdicts.write(1 + world["risk"].row, v2)
        col = SharedMemoryCollector(instance)
        try:
            f = scrape(col)
            assert col.global_mode() == int(Mode.WIDEN)
        finally:
            col.close()
        assert sample(f, "mmshm_mode", scope="global") == int(Mode.WIDEN)
        assert sample(f, "mmshm_paused", scope="global") == 1
        assert sample(f, "mmshm_limit_scale_ratio", scope="global") == 0.5
        assert sample(f, "mmshm_control_position_lots", instrument="0") == -12
        assert sample(f, "mmshm_control_max_position_lots", instrument="0") == 100
        assert sample(f, "mmshm_watchdog_halt") == 1
        assert sample(f, "mmshm_watchdog_verdict", role="risk", critical="true") == 2
    finally:
        control.unlink()
        control.close()
        verdicts.table.unlink()
        verdicts.close()


def test_venue_account_gauges(instance):
    """The executor's ``account`` row is exported in the margin asset's units."""
    from mmshm.execution.account import AccountWriter

    acct = AccountWriter.create(instance, venue=1, asset="USDT")
    try:
        col = SharedMemoryCollector(instance)
        try:
            assert "mmshm_account_wallet" not in scrape(col)            # never written: nothing exported
            assert acct.on_rest_account({"totalWalletBalance": "1000.5", "totalUnrealizedProfit": "-2.5",
                                         "totalMarginBalance": "998", "totalInitialMargin": "40",
                                         "totalMaintMargin": "4", "availableBalance": "958",
                                         "totalCrossWalletBalance": "1000.5", "assets": []})
            f = scrape(col)
        finally:
            col.close()
        assert sample(f, "mmshm_account_wallet", asset="USDT") == 1000.5
        assert sample(f, "mmshm_account_margin_balance", asset="USDT") == 998
        assert sample(f, "mmshm_account_initial_margin", asset="USDT") == 40
        assert sample(f, "mmshm_account_age_seconds", asset="USDT", source="REST") >= 0
        assert sample(f, "mmshm_account_drops", "mmshm_account_drops_total", asset="USDT") == 0
    finally:
        acct.close(unlink=True)


def test_latency_histograms_in_shared_memory(instance):
    assert [bucket_of(x) for x in (0, 999, 1000, 1999, 2000, 3999, 4000, 10**12)] == [0, 0, 1, 1, 2, 2, 3,
                                                                                      LATENCY_BUCKETS - 1]
    from mmshm._native.latency import bucket_index
    for ns in (0, 1, 999, 1000, 1999, 2000, 3999, 4000, 123_456_789, 10**12, -5):
        assert bucket_index(ns, LATENCY_BUCKETS) == bucket_of(ns), ns
    rec = LatencyRecorder.open(instance, "send_to_ack")
    custom = LatencyRecorder.open(instance, "my_stage")
    try:
        for ns in (500, 1_500, 3_000, 3_500, 250_000):
            rec.record(ns)
        rec.record_many(np.array([500, 1_500, 3_000, 3_500, 250_000]))
        rec.publish()
        custom.record(10)
        custom.publish()
        h = {x["stage"]: x for x in read_histograms(rec.table)}
        assert h["send_to_ack"]["count"] == 10 and h["send_to_ack"]["buckets"][:3] == [2, 2, 4]
        assert h["send_to_ack"]["buckets"][bucket_of(250_000)] == 2
        assert h["my_stage"]["count"] == 1
        col = SharedMemoryCollector(instance)
        try:
            f = scrape(col)
        finally:
            col.close()
        fam = f["mmshm_stage_latency_seconds"]
        buckets = {s.labels["le"]: s.value for s in fam.samples
                   if s.name.endswith("_bucket") and s.labels["stage"] == "send_to_ack"}
        assert buckets["1e-06"] == 2 and buckets["2e-06"] == 4 and buckets["4e-06"] == 8
        assert buckets["+Inf"] == 10 and len(buckets) == LATENCY_BUCKETS
        assert sample(f, "mmshm_stage_latency_seconds", "mmshm_stage_latency_seconds_count",
                      stage="send_to_ack") == 10
        assert sample(f, "mmshm_stage_latency_seconds", "mmshm_stage_latency_seconds_sum",
                      stage="send_to_ack") == pytest.approx(2 * 258_500e-9)
        assert sample(f, "mmshm_stage_latency_max_seconds", stage="send_to_ack") == pytest.approx(250e-6)
        assert BUCKET_BOUNDS_S[-1] == float("inf")
    finally:
        rec.close()
        custom.close()
    # A restarted stage owner continues the counts (Prometheus counters never go back).
    again = LatencyRecorder.open(instance, "send_to_ack")
    assert again.count == 10
    again.close()
    with pytest.raises(ValueError):
        LatencyRecorder.open(instance, "bad name!")
    open_table(instance).close()


def test_ready_and_health_decisions(instance, world):
    col = SharedMemoryCollector(instance)
    try:
        snap = col.snapshot()
    finally:
        col.close()
    ok = hc.ready(snap, True, ("executor", "risk"), {}, 5.0)
    assert ok.ok and ok.status == 200
    missing = hc.ready(snap, True, ("feed", "risk"), {}, 5.0)
    assert missing.status == 503 and missing.body["reasons"] == ["feed: no process"]
    stale = hc.ready(snap, True, ("risk",), {"risk": 1e-9}, 5.0)
    assert stale.status == 503 and "heartbeat" in stale.body["reasons"][0]
    snap.halt, snap.halt_reason = True, "feed dead"
    halted = hc.ready(snap, True, ("risk",), {}, 5.0, global_mode=int(Mode.FLATTEN))
    assert halted.body["reasons"] == ["watchdog HALT: feed dead", "risk mode FLATTEN"]
    h = hc.health(snap, True)
    assert h.status == 200 and {p["role"] for p in h.body["processes"]} == {"executor", "risk", "scaled"}
    assert hc.health(snap, False).status == 503
    assert hc.ready(snap, False, (), {}, 1.0).body["reasons"][0] == "process table not found"
