"""Segment header: layout, creation errors, attach validation (each field), writer takeover."""
from __future__ import annotations

import os
import stat
import subprocess

import numpy as np
import pytest

from mmshm._native import shm as native
from mmshm.records import MARKET_EVENT, ORDER_EVENT, PROCESS_ROW, dtype_hash
from mmshm.shm import (
    BroadcastReader,
    BroadcastWriter,
    GatedReader,
    GatedWriter,
    SegmentInUse,
    SegmentMismatch,
    SegmentNotFound,
    SeqlockTable,
    ShmError,
    segment_name,
)
from mmshm.shm import segment as S


def dead_pid() -> int:
    """A pid that existed and is gone (a reaped child)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_header_layout_matches_cython_constants():
    assert S.HEADER.itemsize == S.HEADER_SIZE == native.LAYOUT["HEADER_SIZE"]
    assert S.READER.itemsize == S.LINE == native.LAYOUT["LINE"]
    for name in ("OFF_CREATOR_PID", "OFF_EPOCH", "OFF_HEARTBEAT_MONO", "OFF_HEARTBEAT_COUNT",
                 "OFF_CURSOR", "OFF_WRITE_COUNT", "OFF_REFUSED", "OFF_ALARM", "OFF_READERS"):
        assert getattr(S, name) == native.LAYOUT[name], name
    for field in ("pid", "cursor", "gaps", "lost", "epoch_seen", "heartbeat_mono", "polled"):
        assert S.ROFF[field] == native.LAYOUT[field], field
    assert native.LAYOUT["BUSY"] == S.BUSY_BIT
    assert native.LAYOUT["MAX_READERS"] == S.MAX_READERS


def test_writer_and_reader_fields_on_separate_lines():
    def line(off):
        return off // S.LINE

    writer_lines = {line(S.HEADER.fields[f][1]) for f in
                    ("heartbeat_mono", "heartbeat_count", "cursor", "write_count", "refused", "alarm")}
    const_lines = {line(S.HEADER.fields[f][1]) for f in ("magic", "epoch", "dtype_hash", "name", "dtype_name")}
    reader_lines = {line(S.OFF_READERS + i * S.LINE + S.ROFF["cursor"]) for i in range(S.MAX_READERS)}
    assert len(reader_lines) == S.MAX_READERS
    assert not writer_lines & const_lines
    assert not writer_lines & reader_lines
    assert not const_lines & reader_lines


def test_header_written_at_creation(instance):
    w = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=64)
    try:
        h = w.segment.header
        assert int(h["magic"]) == S.MAGIC
        assert int(h["layout_version"]) == S.LAYOUT_VERSION
        assert int(h["kind"]) == S.Kind.BROADCAST
        assert int(h["dtype_hash"]) == dtype_hash(MARKET_EVENT)
        assert int(h["slot_size"]) == 128 and int(h["capacity"]) == 64
        assert int(h["creator_pid"]) == os.getpid() and int(h["epoch"]) == 1
        assert bytes(h["name"]) == b"md" and bytes(h["dtype_name"]) == b"MARKET_EVENT"
        assert int(h["created_ts"]) > 0
        mode = os.stat(f"/dev/shm/mmshm-{instance}-md").st_mode
        assert stat.S_IMODE(mode) == 0o600
        assert w.name == segment_name(instance, "md")
    finally:
        w.unlink()
        w.close()


@pytest.mark.parametrize("bad", ["", "a/b", "x\x00y"])
def test_bad_segment_names(instance, bad):
    with pytest.raises(ValueError):
        BroadcastWriter.create(instance, bad, MARKET_EVENT, capacity=8)
    with pytest.raises(ValueError):
        segment_name(bad, "md")


def test_capacity_not_power_of_two(instance):
    with pytest.raises(ValueError, match="power of two"):
        BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=100)
    with pytest.raises(ValueError, match="power of two"):
        GatedWriter.create(instance, "o", ORDER_EVENT, capacity=3)


def test_record_larger_than_slot(instance):
    with pytest.raises(ValueError, match="larger than the slot"):
        BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8, slot_size=64)


def test_slot_not_multiple_of_64(instance):
    with pytest.raises(ValueError, match="multiple of 64"):
        BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8, slot_size=130)


def test_record_without_seq_first(instance):
    with pytest.raises(ValueError, match="'seq'"):
        BroadcastWriter.create(instance, "md", PROCESS_ROW, capacity=8)
    with pytest.raises(ValueError, match="'version'"):
        SeqlockTable.create(instance, "t", MARKET_EVENT, rows=4)


def test_required_only_on_gated(instance):
    with pytest.raises(ValueError):
        GatedWriter.create(instance, "o", ORDER_EVENT, capacity=8, required=("a", "a"))


def test_attach_missing(instance):
    with pytest.raises(SegmentNotFound):
        BroadcastReader.attach(instance, "nothing", MARKET_EVENT, reader="r")


@pytest.fixture
def md_writer(instance):
    w = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8)
    yield w
    w.close()


def test_attach_kind_mismatch(instance, md_writer):
    with pytest.raises(SegmentMismatch, match="kind mismatch: expected GATED, found BROADCAST"):
        GatedReader.attach(instance, "md", MARKET_EVENT, reader="r")


def test_attach_dtype_hash_mismatch(instance, md_writer):
    with pytest.raises(SegmentMismatch, match="dtype hash mismatch"):
        BroadcastReader.attach(instance, "md", ORDER_EVENT, reader="r")


def test_attach_slot_size_mismatch(instance, md_writer):
    with pytest.raises(SegmentMismatch, match="slot size mismatch: expected 256, found 128"):
        BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="r", slot_size=256)


def test_attach_capacity_mismatch(instance, md_writer):
    with pytest.raises(SegmentMismatch, match="capacity mismatch: expected 16, found 8"):
        BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="r", capacity=16)


def test_attach_magic_mismatch(instance, md_writer):
    md_writer.segment.header["magic"] = 0x1234
    with pytest.raises(SegmentMismatch, match="magic mismatch"):
        BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="r")


def test_attach_layout_version_mismatch(instance, md_writer):
    md_writer.segment.header["layout_version"] = 99
    with pytest.raises(SegmentMismatch, match="layout version mismatch: expected 1, found 99"):
        BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="r")


def test_attach_size_mismatch(instance, md_writer):
    md_writer.segment.header["capacity"] = 1024     # header now claims a larger segment
    with pytest.raises(SegmentMismatch, match="segment size mismatch"):
        BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="r")


def test_attach_table_rows_mismatch(instance):
    t = SeqlockTable.create(instance, "t", PROCESS_ROW, rows=4)
    try:
        with pytest.raises(SegmentMismatch, match="capacity mismatch"):
            SeqlockTable.attach(instance, "t", PROCESS_ROW, rows=5)
    finally:
        t.close()


def test_create_when_writer_alive_raises(instance, md_writer):
    with pytest.raises(SegmentInUse):
        BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8)


def test_takeover_from_dead_writer(instance, md_writer):
    rec = np.zeros(1, MARKET_EVENT)
    for _ in range(5):
        md_writer.publish(rec)
    reader = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="r", start="oldest")
    md_writer.segment.header["creator_pid"] = dead_pid()
    w2 = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8)
    try:
        assert w2.epoch == 2
        assert int(w2.segment.header["creator_pid"]) == os.getpid()
        assert w2.cursor == 6                      # continues monotonically
        assert w2.publish(rec) == 6
        seqs = []
        while (r := reader.poll()) is not None:
            seqs.append(int(r["seq"]))
        assert seqs == [1, 2, 3, 4, 5, 6]           # nothing lost, nothing repeated
        assert reader.gaps == 1 and reader.lost == 0  # the restart is a gap event
        assert reader.epoch == 2
    finally:
        reader.close()
        w2.close()


def test_takeover_continues_past_slot_written_without_cursor(instance, md_writer):
    """A writer killed between storing a slot's seq and advancing the cursor: no seq reused."""
    rec = np.zeros(1, MARKET_EVENT)
    md_writer.publish(rec)
    md_writer.publish(rec)
    md_writer.segment.header["cursor"] = 2       # as if the crash lost the cursor store of seq 2
    md_writer.segment.header["creator_pid"] = dead_pid()
    w2 = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8)
    try:
        assert w2.cursor == 3
    finally:
        w2.close()


def test_takeover_validates_layout(instance, md_writer):
    md_writer.segment.header["creator_pid"] = dead_pid()
    with pytest.raises(SegmentMismatch, match="dtype hash"):
        BroadcastWriter.create(instance, "md", np.dtype([("seq", "<u8"), ("x", "<i8", (15,))]), capacity=8)


def test_reader_slot_registry(instance, md_writer):
    a = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="a")
    b = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="b")
    try:
        readers = md_writer.segment.readers
        names = {bytes(r["name"]).decode(): int(r["pid"]) for r in readers if int(r["state"])}
        assert names == {"a": os.getpid(), "b": os.getpid()}
        with pytest.raises(ShmError, match="already attached"):
            BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="a")
    finally:
        a.close()
        b.close()
    assert all(int(r["state"]) == 0 for r in md_writer.segment.readers)


def test_reader_slot_of_dead_process_is_reused(instance, md_writer):
    a = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="a")
    md_writer.segment.readers[a.slot]["pid"] = dead_pid()
    b = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="a")
    assert b.slot == a.slot
    b.close()


def test_all_reader_slots_in_use(instance, md_writer):
    readers = [BroadcastReader.attach(instance, "md", MARKET_EVENT, reader=f"r{i}") for i in range(S.MAX_READERS)]
    try:
        with pytest.raises(ShmError, match="no free reader slot"):
            BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="extra")
    finally:
        for r in readers:
            r.close()


def test_closed_objects_raise(instance, md_writer):
    r = BroadcastReader.attach(instance, "md", MARKET_EVENT, reader="a")
    r.close()
    r.close()
    with pytest.raises(ShmError, match="closed"):
        r.poll()
    md_writer.close()
    with pytest.raises(ShmError):
        md_writer.publish(np.zeros(1, MARKET_EVENT))


def test_publish_wrong_record_type(instance, md_writer):
    with pytest.raises(TypeError):
        md_writer.publish(np.zeros(1, ORDER_EVENT))
    with pytest.raises(TypeError):
        md_writer.publish(np.zeros(3, MARKET_EVENT))
    with pytest.raises(ValueError):
        md_writer.publish(b"short")
    with pytest.raises(TypeError):
        md_writer.publish(42)


def test_reused_pid_is_not_the_writer(instance, md_writer):
    """The creator pid now belongs to a process started after the segment: treat the writer as dead."""
    p = subprocess.Popen(["sleep", "30"])
    try:
        h = md_writer.segment.header
        h["created_ts"] = 1_000_000_000            # segment "created" in 1970
        h["creator_pid"] = p.pid                   # a live, unrelated process with that pid now
        assert not S.writer_alive(md_writer.segment)
        w2 = BroadcastWriter.create(instance, "md", MARKET_EVENT, capacity=8)
        assert w2.epoch == 2 and S.writer_alive(w2.segment)
        w2.close()
    finally:
        p.kill()
        p.wait()


def test_constructor_is_not_the_api():
    with pytest.raises(TypeError, match="create"):
        BroadcastWriter()
