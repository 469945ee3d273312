"""A Prometheus custom collector that reads the instance's shared memory at scrape time.

Nothing is copied in the background: every scrape takes one
:class:`mmshm.monitor.snapshot.SnapshotReader` snapshot (process table, segment headers
and reader slots, watchdog verdicts) and reads the ``control`` and ``latency`` tables,
then yields metric families. Process counters are exported generically: every counter
slot a role names in :mod:`mmshm.agent.counters` becomes ``mmshm_proc_<name>{role=...}``,
so a new process (or a new counter) appears without changing the exporter. A name
ending in ``_eN`` holds the value times 10**N (``pnl_e8``): it is exported divided, under
the name without the suffix (``mmshm_proc_pnl``).
"""
from __future__ import annotations

import os
import re
import threading
import time
from typing import Iterator

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily)
from prometheus_client.registry import Collector

from mmshm import __version__
from mmshm.agent.counters import ROLE_COUNTERS
from mmshm.monitor.latency import BUCKET_BOUNDS_S, LATENCY_ROW, LATENCY_SEGMENT, read_histograms
from mmshm.monitor.model import InstanceSnapshot
from mmshm.monitor.snapshot import SnapshotReader
from mmshm.records import CONTROL_ROW
from mmshm.shm import SeqlockTable
from mmshm.shm import segment as segmod

CONTROL_SEGMENT = "control"
_NAME_RE = re.compile(r"[^a-zA-Z0-9_]")


_SCALED_RE = re.compile(r"^(.+)_e([0-9]{1,2})$")


def metric_name(counter: str) -> str:
    """The Prometheus name of a process-table counter (a ``_eN`` scale suffix dropped)."""
    m = _SCALED_RE.match(counter)
    return "mmshm_proc_" + _NAME_RE.sub("_", m.group(1) if m else counter)


def counter_scale(counter: str) -> float:
    """Divisor of a counter: ``pnl_e8`` holds the value x 1e8, so it is exported / 1e8."""
    m = _SCALED_RE.match(counter)
    return 10.0 ** int(m.group(2)) if m else 1.0


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class SharedMemoryCollector(Collector):
    """Yields mmshm's metric families from shared memory on every ``collect()``.

    Thread-safe (a lock serialises scrapes: the snapshot reader keeps mappings between
    scrapes). ``last_snapshot`` is the snapshot of the latest scrape (used by /health).
    """

    def __init__(self, instance: str, pid_reuse_tolerance_s: float = 2.0) -> None:
        self.instance = instance
        self._reader = SnapshotReader(instance, pid_reuse_tolerance_s)
        self._lock = threading.Lock()
        self._control: SeqlockTable | None = None
        self._latency: SeqlockTable | None = None
        self.scrapes = 0
        self.errors = 0
        self.last_scrape_ns = 0

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> InstanceSnapshot:
        with self._lock:
            return self._reader.take()

    def global_mode(self) -> int | None:
        """Mode of the control block's global row, or None without a control block."""
        with self._lock:
            table = self._table("_control", CONTROL_SEGMENT, CONTROL_ROW)
            if table is None:
                return None
            row = table.read(0)
            return int(row["mode"]) if int(row["version"]) else None

    def _table(self, attr: str, name: str, dtype) -> SeqlockTable | None:
        """Attach lazily; drop the mapping when the segment is gone or replaced."""
        table = getattr(self, attr)
        path = f"{segmod.SHM_DIR}/{segmod.PREFIX}{self.instance}-{name}"
        try:
            ino = os.stat(path).st_ino
        except OSError:
            ino = 0
        if table is not None and (ino == 0 or ino != getattr(self, attr + "_ino", -1)):
            table.close()
            table = None
            setattr(self, attr, None)
        if table is None and ino:
            try:
                table = SeqlockTable.attach(self.instance, name, dtype)
            except (segmod.ShmError, ValueError):
                return None
            setattr(self, attr, table)
            setattr(self, attr + "_ino", ino)
        return table

    def close(self) -> None:
        with self._lock:
            self._reader.close()
            for attr in ("_control", "_latency"):
                t = getattr(self, attr)
                if t is not None:
                    t.close()
                    setattr(self, attr, None)

    # ------------------------------------------------------------------ collect
    def collect(self) -> Iterator:
        t0 = time.perf_counter_ns()
        with self._lock:
            snap = self._reader.take()
            try:
                control = self._table("_control", CONTROL_SEGMENT, CONTROL_ROW)
                control_rows = control.read_all() if control is not None else None
            except Exception as exc:  # a table torn down under us: report, keep the rest
                snap.errors.append(f"control: {exc}")
                control_rows = None
            try:
                latency = self._table("_latency", LATENCY_SEGMENT, LATENCY_ROW)
                hists = read_histograms(latency) if latency is not None else []
            except Exception as exc:
                snap.errors.append(f"latency: {exc}")
                hists = []
        self.scrapes += 1
        self.errors += len(snap.errors)
        # "instance" is Prometheus's own target label: ours is mmshm_instance.
        info = InfoMetricFamily("mmshm", "mmshm instance served by this exporter")
        info.add_metric([], {"mmshm_instance": self.instance, "version": __version__})
        yield info
        yield from self._process_metrics(snap)
        yield from self._segment_metrics(snap)
        yield from self._watchdog_metrics(snap)
        yield from self._account_metrics(snap)
        if control_rows is not None:
            yield from self._control_metrics(control_rows)
        yield from self._latency_metrics(hists)
        g = GaugeMetricFamily("mmshm_exporter_read_errors", "errors reading shared memory in this scrape")
        g.add_metric([], len(snap.errors))
        yield g
        self.last_scrape_ns = time.perf_counter_ns() - t0
        g = GaugeMetricFamily("mmshm_exporter_scrape_seconds", "time to read shared memory for this scrape")
        g.add_metric([], self.last_scrape_ns / 1e9)
        yield g

    def _process_metrics(self, snap: InstanceSnapshot) -> Iterator:
        labels = ["role", "pid", "row"]
        age = GaugeMetricFamily("mmshm_process_heartbeat_age_seconds", "time since the process's last heartbeat",
                                labels=labels)
        state = GaugeMetricFamily("mmshm_process_state", "ProcState (1 starting, 2 running, 3 paused, "
                                  "4 stopping, 5 stopped, 6 halted)", labels=labels)
        alive = GaugeMetricFamily("mmshm_process_alive", "1 if the row's pid is alive", labels=labels)
        cpu = GaugeMetricFamily("mmshm_process_cpu", "pinned CPU (-1 = not pinned)", labels=labels)
        work = CounterMetricFamily("mmshm_process_work", "work units done by do_work()", labels=labels)
        idle = CounterMetricFamily("mmshm_process_idle_cycles", "duty cycles without work", labels=labels)
        beats = CounterMetricFamily("mmshm_process_heartbeats", "heartbeats written", labels=labels)
        info = InfoMetricFamily("mmshm_process", "process row", labels=labels)
        named: dict[str, GaugeMetricFamily] = {}
        for p in snap.processes:
            lv = [p.role, str(p.pid), str(p.row)]
            if p.heartbeat_mono > 0:
                age.add_metric(lv, max(0, snap.taken_mono - p.heartbeat_mono) / 1e9)
            state.add_metric(lv, int(p.state))
            alive.add_metric(lv, 1 if p.alive else 0)
            cpu.add_metric(lv, p.cpu)
            work.add_metric(lv, p.work_count)
            idle.add_metric(lv, p.idle_cycles)
            beats.add_metric(lv, p.heartbeat_count)
            info.add_metric(lv, {"state": p.state.name})
            names = ROLE_COUNTERS.get(p.role, ())
            for name, value in p.counters.items():
                if name not in names:
                    continue  # unnamed slots (c<N>) mean nothing outside their process
                mname = metric_name(name)
                fam = named.get(mname)
                if fam is None:
                    fam = named[mname] = GaugeMetricFamily(
                        mname, f"process-table counter {name!r} (mmshm.agent.counters)", labels=["role"])
                scale = counter_scale(name)
                fam.add_metric([p.role], value / scale if scale != 1.0 else value)
        yield from (age, state, alive, cpu, work, idle, beats, info)
        yield from named.values()

    def _segment_metrics(self, snap: InstanceSnapshot) -> Iterator:
        sl = ["segment", "kind"]
        cursor = GaugeMetricFamily("mmshm_segment_cursor", "next sequence the writer publishes (rings)", labels=sl)
        writes = CounterMetricFamily("mmshm_segment_writes", "records published / rows written", labels=sl)
        refused = CounterMetricFamily("mmshm_segment_refused", "publishes refused because the gated ring was full",
                                      labels=sl)
        alarm = GaugeMetricFamily("mmshm_segment_alarm", "1 once a gated ring refused a publish", labels=sl)
        epoch = GaugeMetricFamily("mmshm_segment_epoch", "writer epoch (+1 per takeover)", labels=sl)
        walive = GaugeMetricFamily("mmshm_segment_writer_alive", "1 if the creating writer's pid is alive",
                                   labels=sl)
        hb = GaugeMetricFamily("mmshm_segment_heartbeat_age_seconds", "time since the writer's heartbeat",
                               labels=sl)
        rl = ["segment", "reader", "required"]
        lag = GaugeMetricFamily("mmshm_reader_lag", "messages published but not yet read", labels=rl)
        gaps = CounterMetricFamily("mmshm_reader_gaps", "gap events (lapped, writer restarted)", labels=rl)
        lost = CounterMetricFamily("mmshm_reader_lost", "messages skipped over by gaps", labels=rl)
        polled = CounterMetricFamily("mmshm_reader_polled", "messages read", labels=rl)
        ralive = GaugeMetricFamily("mmshm_reader_alive", "1 if the reader's pid is alive", labels=rl)
        for s in snap.segments:
            lv = [s.name, s.kind]
            if s.kind != "SEQLOCK":
                cursor.add_metric(lv, s.cursor)
            writes.add_metric(lv, s.write_count)
            if s.kind == "GATED":
                refused.add_metric(lv, s.refused)
                alarm.add_metric(lv, 1 if s.alarm else 0)
            epoch.add_metric(lv, s.epoch)
            walive.add_metric(lv, 1 if s.creator_alive else 0)
            if s.heartbeat_mono > 0:
                hb.add_metric(lv, max(0, snap.taken_mono - s.heartbeat_mono) / 1e9)
            for r in s.readers:
                rv = [s.name, r.name, "true" if r.required else "false"]
                lag.add_metric(rv, r.lag)
                gaps.add_metric(rv, r.gaps)
                lost.add_metric(rv, r.lost)
                polled.add_metric(rv, r.polled)
                ralive.add_metric(rv, 1 if r.alive else 0)
        yield from (cursor, writes, refused, alarm, epoch, walive, hb, lag, gaps, lost, polled, ralive)

    def _watchdog_metrics(self, snap: InstanceSnapshot) -> Iterator:
        halt = GaugeMetricFamily("mmshm_watchdog_halt", "1 while the watchdog's HALT is in force")
        halt.add_metric([], 1 if snap.halt else 0)
        yield halt
        if snap.watchdog_checked_mono > 0:
            g = GaugeMetricFamily("mmshm_watchdog_check_age_seconds", "time since the watchdog's last check")
            g.add_metric([], max(0, snap.taken_mono - snap.watchdog_checked_mono) / 1e9)
            yield g
        v = GaugeMetricFamily("mmshm_watchdog_verdict", "Verdict per process (0 ok, 1 dead, 2 hung, 3 idle, "
                              "4 slow reader, 5 killed)", labels=["role", "pid", "critical"])
        for x in snap.verdicts:
            v.add_metric([x.role, str(x.pid), "true" if x.critical else "false"], int(x.verdict))
        yield v

    def _account_metrics(self, snap: InstanceSnapshot) -> Iterator:
        """The venue account the executor publishes (``account`` table), in asset units."""
        a = snap.account
        if a is None:
            return
        for name, value, doc in (
                ("wallet", a.wallet, "wallet balance"), ("margin_balance", a.margin_balance, "margin balance "
                 "(wallet + unrealized: the venue's equity)"), ("unrealized_pnl", a.unrealized_pnl, "unrealized PnL"),
                ("initial_margin", a.initial_margin, "initial margin (positions + open orders; REST figures)"),
                ("maint_margin", a.maint_margin, "maintenance margin (REST figures)"),
                ("available", a.available, "available balance (REST figures)")):
            g = GaugeMetricFamily(f"mmshm_account_{name}", f"venue account: {doc}", labels=["asset"])
            g.add_metric([a.asset], value)
            yield g
        age = GaugeMetricFamily("mmshm_account_age_seconds", "time since the venue account row was written",
                                labels=["asset", "source"])
        age.add_metric([a.asset, a.source], max(0, snap.taken_mono - a.updated_mono) / 1e9)
        yield age
        drops = CounterMetricFamily("mmshm_account_drops", "venue account updates refused as malformed",
                                    labels=["asset"])
        drops.add_metric([a.asset], a.drops)
        yield drops

    def _control_metrics(self, rows) -> Iterator:
        mode = GaugeMetricFamily("mmshm_mode", "risk mode (0 normal, 1 widen, 2 reduce-only, 3 halt, 4 flatten)",
                                 labels=["scope"])
        paused = GaugeMetricFamily("mmshm_paused", "1 while quoting is paused", labels=["scope"])
        scale = GaugeMetricFamily("mmshm_limit_scale_ratio", "limits multiplier (1 = 100%)", labels=["scope"])
        pos = GaugeMetricFamily("mmshm_control_position_lots", "risk's position, lots", labels=["instrument"])
        maxpos = GaugeMetricFamily("mmshm_control_max_position_lots", "max position, lots", labels=["instrument"])
        for i, r in enumerate(rows):
            if int(r["version"]) == 0:
                continue
            scope = "global" if i == 0 else str(i - 1)
            mode.add_metric([scope], int(r["mode"]))
            paused.add_metric([scope], int(r["flags"]) & 1)
            scale.add_metric([scope], int(r["limit_scale_bp"]) / 1e4)
            if i > 0:
                pos.add_metric([scope], int(r["position"]))
                maxpos.add_metric([scope], int(r["max_position"]))
        yield from (mode, paused, scale, pos, maxpos)

    def _latency_metrics(self, hists: list[dict]) -> Iterator:
        fam = HistogramMetricFamily("mmshm_stage_latency_seconds", "per-stage latency (log2 µs buckets)",
                                    labels=["stage"])
        for h in hists:
            cum = 0
            buckets = []
            for bound, n in zip(BUCKET_BOUNDS_S, h["buckets"]):
                cum += n
                buckets.append((_le(bound), cum))
            fam.add_metric([h["stage"]], buckets, h["sum_s"])
        yield fam
        mx = GaugeMetricFamily("mmshm_stage_latency_max_seconds", "largest latency seen per stage",
                               labels=["stage"])
        for h in hists:
            mx.add_metric([h["stage"]], h["max_s"])
        yield mx
