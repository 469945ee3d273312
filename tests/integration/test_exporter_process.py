"""The exporter process on an ephemeral port: /metrics, /health and /ready over HTTP,
with a real process (a recorder) and rows written by the test standing in for others."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mmshm.agent.proctable import ProcessTable, VerdictTable
from mmshm.monitor.latency import LatencyRecorder
from mmshm.records import ORDER_EVENT, VERDICT_ROW, ProcState
from mmshm.shm import GatedReader, GatedWriter
from tests.conftest import PYTHON


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start_exporter(spawn, critical: str) -> tuple[object, str]:
    proc = spawn([PYTHON, "-m", "mmshm.procs.exporter", "--profile", "ci", "--critical", critical,
                  "--set", "watchdog.heartbeat_timeout_s=0.5"])
    line = proc.stdout.readline().decode()
    assert "exporter listening on http://127.0.0.1:" in line, (line, proc.stderr.read().decode()[-2000:]
                                                               if proc.poll() is not None else "")
    return proc, line.split("listening on ", 1)[1].strip()


def wait_status(url: str, status: int, timeout: float = 10.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        code, body = get(url)
        if code == status:
            return json.loads(body)
        assert time.monotonic() < end, f"{url}: still {code} {body}"
        time.sleep(0.05)


def metrics(url: str) -> dict:
    code, text = get(url + "/metrics")
    assert code == 200
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.mark.timeout(60)
def test_exporter_serves_metrics_health_and_ready(spawn, instance, tmp_path):
    procs = ProcessTable.open(instance, 8)
    risk = procs.claim("risk", pid=os.getpid())  # a critical role, heartbeated by this test
    risk.set_state(ProcState.RUNNING)
    writer = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=64, required=("risk", "recorder"))
    risk_reader = GatedReader.attach(instance, "orders", ORDER_EVENT, reader="risk")
    lat = LatencyRecorder.open(instance, "quote_to_send")
    recorder = spawn([PYTHON, "-m", "mmshm.procs.recorder", "--profile", "ci", "--db",
                      str(tmp_path / "j.sqlite")])
    try:
        proc, url = start_exporter(spawn, "risk,recorder")
        # Heartbeat risk from here while the recorder (a real process) starts.
        def beat():
            risk.heartbeat(time.monotonic_ns(), 1, 0)
        end = time.monotonic() + 15
        while True:
            beat()
            code, body = get(url + "/ready")
            if code == 200:
                break
            assert time.monotonic() < end, body
            time.sleep(0.05)
        assert json.loads(body)["ready"] is True

        for i in range(5):
            rec = np.zeros(1, ORDER_EVENT)
            rec["client_id"], rec["kind"], rec["status"] = i + 1, 1, 1
            assert writer.try_publish(rec)
        while risk_reader.poll() is not None:
            pass
        for ns in (2_000, 5_000, 9_000):
            lat.record(ns)
        lat.publish()
        end = time.monotonic() + 10
        while True:
            beat()
            m = metrics(url)
            if m.get('mmshm_proc_orders_journaled{"role": "recorder"}') == 5:
                break
            assert time.monotonic() < end, {k: v for k, v in m.items() if "recorder" in k}
            time.sleep(0.05)
        assert m['mmshm_process_state{"pid": "%d", "role": "risk", "row": "%d"}' % (os.getpid(), risk.row)] == 2
        assert m['mmshm_segment_cursor{"kind": "GATED", "segment": "orders"}'] == 6
        assert m['mmshm_reader_lag{"reader": "recorder", "required": "true", "segment": "orders"}'] == 0
        assert m['mmshm_stage_latency_seconds_count{"stage": "quote_to_send"}'] == 3
        assert m['mmshm_stage_latency_seconds_bucket{"le": "8e-06", "stage": "quote_to_send"}'] == 2
        assert m['mmshm_proc_attached{"role": "recorder"}'] == 1
        assert any(k.startswith("mmshm_process_state") and '"exporter"' in k for k in m)

        code, body = get(url + "/health")
        health = json.loads(body)
        assert code == 200 and {"risk", "recorder", "exporter"} <= {p["role"] for p in health["processes"]}

        # A critical row going stale (risk stops heartbeating) flips /ready to 503 with the reason.
        body = wait_status(url + "/ready", 503, timeout=10)
        assert any(r.startswith("risk: heartbeat") for r in body["reasons"]), body

        # HALT from the watchdog's table flips it too, whatever the heartbeats say.
        verdicts = VerdictTable.open_writer(instance)
        try:
            v = np.zeros(1, VERDICT_ROW)
            v["halt"], v["reason"] = 1, b"feed dead"
            verdicts.write(0, v)
            end = time.monotonic() + 10
            while True:
                beat()
                code, body = get(url + "/ready")
                reasons = json.loads(body)["reasons"]
                if code == 503 and reasons == ["watchdog HALT: feed dead"]:
                    break
                assert time.monotonic() < end, (code, body)
                time.sleep(0.05)
            assert metrics(url)["mmshm_watchdog_halt{}"] == 1
            v["halt"] = 0
            verdicts.write(0, v)
            end = time.monotonic() + 10
            while True:
                beat()
                if get(url + "/ready")[0] == 200:
                    break
                assert time.monotonic() < end
                time.sleep(0.05)
        finally:
            verdicts.close()

        # The recorder dying (a critical role here) is reported by /ready.
        recorder.kill()
        recorder.wait(timeout=10)
        end = time.monotonic() + 10
        while True:
            beat()
            code, body = get(url + "/ready")
            if code == 503:
                break
            assert time.monotonic() < end
            time.sleep(0.05)
        assert any(r.startswith("recorder:") for r in json.loads(body)["reasons"]), body
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        lat.close()
        risk_reader.close()
        writer.unlink()
        writer.close()
        procs.close()


@pytest.mark.timeout(30)
def test_exporter_ready_names_a_missing_critical_role(spawn, instance):
    # The exporter itself creates the process table when it starts (it has a row), so
    # /health is 200 as soon as it listens, and /ready names the missing critical role.
    proc, url = start_exporter(spawn, "feed")
    code, body = get(url + "/health")
    assert code == 200
    code, body = get(url + "/ready")
    assert code == 503 and json.loads(body)["reasons"] == ["feed: no process"]
    assert get(url + "/nope")[0] == 404
    proc.terminate()
    assert proc.wait(timeout=10) == 0
