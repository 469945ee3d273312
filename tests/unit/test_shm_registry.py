"""Segment registry and `mmshm shm ls|clean|inspect`: listing, lag, dead-owner cleaning, inspection."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmshm.cli import main
from mmshm.records import MARKET_EVENT, ORDER_EVENT, PROCESS_ROW
from mmshm.shm import BroadcastReader, BroadcastWriter, GatedWriter, SeqlockTable
from mmshm.shm.registry import clean_dead, inspect_segment, list_segments, resolve, sweep_dead


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture
def segments(instance):
    w = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8)
    r = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="quoter")
    g = GatedWriter.create(instance, "orders", ORDER_EVENT, capacity=4, required=("risk", "recorder"))
    t = SeqlockTable.create_or_attach(instance, "procs", PROCESS_ROW, rows=4)
    rec = np.zeros(1, MARKET_EVENT)
    for i in range(5):
        rec["md_seq"] = i
        w.publish(rec)
    r.poll()
    w.heartbeat()
    yield w, r, g, t
    for o in (w, r, g, t):
        o.close()


def test_list_segments(instance, segments):
    infos = {i.segment: i for i in list_segments(instance)}
    assert set(infos) == {"md", "orders", "procs"}
    md = infos["md"]
    assert md.kind == "broadcast" and md.alive and md.owner_pid == os.getpid()
    assert md.epoch == 1 and md.cursor == 6 and md.instance == instance
    assert md.heartbeat_count == 1 and md.heartbeat_age_s is not None
    (q,) = md.readers
    assert q.name == "quoter" and q.lag == 4 and q.alive and q.state == "untethered"
    orders = infos["orders"]
    assert [r.name for r in orders.readers] == ["risk", "recorder"]
    assert all(r.state == "required" and r.pid == 0 for r in orders.readers)
    assert infos["procs"].kind == "seqlock" and infos["procs"].dtype_name == "PROCESS_ROW"


def test_clean_never_removes_alive(instance, segments):
    assert clean_dead(instance) == []
    assert len(list_segments(instance)) == 3


def test_clean_removes_dead_owner(instance, segments):
    w, r, g, t = segments
    w.segment.header["creator_pid"] = dead_pid()
    g.segment.header["creator_pid"] = dead_pid()
    assert clean_dead(instance, dry_run=True) == sorted([f"mmshm-{instance}-md", f"mmshm-{instance}-orders"])
    assert Path(f"/dev/shm/mmshm-{instance}-md").exists()
    assert sweep_dead(instance) == sorted([f"mmshm-{instance}-md", f"mmshm-{instance}-orders"])
    assert [i.segment for i in list_segments(instance)] == ["procs"]


def test_table_kept_while_a_row_writer_lives(instance, segments):
    _, _, _, t = segments
    t.claim_row()                                    # this process writes a row
    t.segment.header["creator_pid"] = dead_pid()     # the creator is gone
    assert f"mmshm-{instance}-procs" not in clean_dead(instance)
    t.release_row(0)
    assert f"mmshm-{instance}-procs" in clean_dead(instance)


def test_inspect(instance, segments):
    data = inspect_segment("md", instance, last=3)
    assert data["header"]["name"] == "md" and data["header"]["dtype_name"] == "MARKET_EVENT"
    assert [r["seq"] for r in data["records"]] == [3, 4, 5]
    assert [r["md_seq"] for r in data["records"]] == [2, 3, 4]
    assert resolve(f"/mmshm-{instance}-md") == f"mmshm-{instance}-md"
    _, _, _, t = segments
    row = np.zeros(1, PROCESS_ROW)
    row["pid"] = 77
    row["role"] = b"feed"
    t.write(2, row)
    tdata = inspect_segment(f"mmshm-{instance}-procs")
    assert [(r["row"], r["pid"], r["role"]) for r in tdata["records"]] == [(2, 77, "feed")]


def test_cli_ls_json(instance, segments, capsys):
    assert main(["shm", "ls", "--instance", instance, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {o["segment"] for o in out} == {"md", "orders", "procs"}


def test_cli_ls_table_and_inspect(instance, segments, capsys):
    assert main(["shm", "ls", "--instance", instance]) == 0
    assert main(["shm", "inspect", "md", "--instance", instance, "-n", "2"]) == 0
    assert main(["shm", "inspect", "md", "--instance", instance, "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out.strip().splitlines()[-1])
    assert data["info"]["segment"] == "md"
    assert main(["shm", "inspect", "nothing", "--instance", instance]) == 1


def test_cli_clean_json(instance, segments, capsys):
    w = segments[0]
    w.segment.header["creator_pid"] = dead_pid()
    assert main(["shm", "clean", "--instance", instance, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [f"mmshm-{instance}-md"]
