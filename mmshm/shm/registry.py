"""What is in /dev/shm: list, inspect and clean mmshm segments (used by `mmshm shm`, the watchdog, start-up).

Everything here maps segments read-only and only reads headers, so it is safe to run
against a live instance; the one thing that writes is ``clean_dead``, which unlinks a
segment only when no live process can still be writing it.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmshm.records import ALL_RECORDS
from mmshm.shm import segment as S


@dataclass
class ReaderInfo:
    slot: int
    name: str
    state: str                 # required | untethered
    pid: int                   # 0 = detached
    alive: bool
    cursor: int
    lag: int                   # writer cursor - reader cursor
    gaps: int
    lost: int
    polled: int
    epoch_seen: int
    heartbeat_age_s: float | None


@dataclass
class SegmentInfo:
    name: str                  # file name in /dev/shm, e.g. mmshm-main-md
    instance: str
    segment: str               # e.g. md
    size: int
    kind: str = "?"
    owner_pid: int = 0
    alive: bool = False        # a process that can write it is alive
    epoch: int = 0
    cursor: int = 0
    write_count: int = 0
    refused: int = 0
    alarm: bool = False
    capacity: int = 0
    slot_size: int = 0
    dtype_name: str = ""
    age_s: float = 0.0
    heartbeat_count: int = 0
    heartbeat_age_s: float | None = None
    row_writers: list[int] = field(default_factory=list)   # seqlock: claimed row pids
    readers: list[ReaderInfo] = field(default_factory=list)
    error: str = ""            # set when the header is unreadable/invalid

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split_name(fname: str, seg_name: str | None) -> tuple[str, str]:
    """('main', 'md') from 'mmshm-main-md'; uses the header's segment name when known (instances may contain '-')."""
    rest = fname[len(S.PREFIX):]
    if seg_name and rest.endswith("-" + seg_name):
        return rest[: -len(seg_name) - 1], seg_name
    inst, _, seg = rest.partition("-")
    return inst, seg


def _age(mono_ns: int, now_mono: int) -> float | None:
    return None if mono_ns <= 0 else max(0.0, (now_mono - mono_ns) / 1e9)


def read_info(fname: str) -> SegmentInfo:
    """Header summary of one /dev/shm file (``error`` set instead of raising on a bad segment)."""
    path = Path(S.SHM_DIR) / fname
    size = path.stat().st_size if path.exists() else 0
    inst, segname = _split_name(fname, None)
    info = SegmentInfo(name=fname, instance=inst, segment=segname, size=size)
    try:
        seg = S._open_existing("/" + fname, writable=False, wait_s=0.0)
    except S.ShmError as e:
        info.error = str(e)
        info.age_s = max(0.0, time.time() - path.stat().st_mtime) if path.exists() else 0.0
        return info
    try:
        h = seg.header
        try:
            S.validate(seg, None, None)
        except S.SegmentMismatch as e:
            info.error = str(e)
        segname = bytes(h["name"]).decode(errors="replace")
        info.instance, info.segment = _split_name(fname, segname)
        kind = int(h["kind"])
        info.kind = S.Kind(kind).name.lower() if kind in S.Kind._value2member_map_ else str(kind)
        info.owner_pid = int(h["creator_pid"])
        info.epoch = int(h["epoch"])
        info.cursor = int(h["cursor"])
        info.write_count = int(h["write_count"])
        info.refused = int(h["refused"])
        info.alarm = bool(int(h["alarm"]))
        info.capacity = int(h["capacity"])
        info.slot_size = int(h["slot_size"])
        info.dtype_name = bytes(h["dtype_name"]).decode(errors="replace")
        info.age_s = max(0.0, (time.time_ns() - int(h["created_ts"])) / 1e9)
        info.heartbeat_count = int(h["heartbeat_count"])
        now = time.monotonic_ns()
        info.heartbeat_age_s = _age(int(h["heartbeat_mono"]), now)
        alive = S.writer_alive(seg)
        if kind == S.Kind.SEQLOCK and not info.error:
            info.row_writers = [int(k) for k in seg.claims() if int(k) > 0]
            alive = alive or any(S.pid_alive(k) for k in info.row_writers)
        info.alive = alive
        if kind in (S.Kind.BROADCAST, S.Kind.GATED):
            for i, r in enumerate(seg.readers):
                st = int(r["state"])
                if st == S.ReaderState.FREE:
                    continue
                pid = int(r["pid"])
                cur = int(r["cursor"])
                info.readers.append(ReaderInfo(
                    slot=i, name=bytes(r["name"]).decode(errors="replace"),
                    state=S.ReaderState(st).name.lower() if st in S.ReaderState._value2member_map_ else str(st),
                    pid=pid, alive=S.pid_alive(pid), cursor=cur, lag=max(0, info.cursor - cur),
                    gaps=int(r["gaps"]), lost=int(r["lost"]), polled=int(r["polled"]),
                    epoch_seen=int(r["epoch_seen"]), heartbeat_age_s=_age(int(r["heartbeat_mono"]), now)))
    finally:
        seg.close()
    return info


def _files(instance: str | None) -> list[str]:
    prefix = f"{S.PREFIX}{instance}-" if instance else S.PREFIX
    try:
        return sorted(n for n in os.listdir(S.SHM_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def list_segments(instance: str | None = None) -> list[SegmentInfo]:
    """Every /dev/shm/mmshm-* segment (of ``instance`` if given) with its header summary."""
    out = []
    for fname in _files(instance):
        try:
            info = read_info(fname)
        except FileNotFoundError:
            continue                     # removed while we listed
        if instance is None or info.instance == instance:
            out.append(info)
    return out


def clean_dead(instance: str | None = None, dry_run: bool = False) -> list[str]:
    """Unlink segments no live process can write (owner and, for tables, every row-writer dead).

    A live writer's segment is never removed. Uninitialised or corrupt files are removed only
    when older than a minute (a creator may be filling a new header right now).
    """
    removed = []
    for info in list_segments(instance):
        if info.alive:
            continue
        if info.owner_pid == 0 and info.age_s < 60:
            continue
        if not dry_run:
            try:
                os.unlink(Path(S.SHM_DIR) / info.name)
            except FileNotFoundError:
                continue
        removed.append(info.name)
    return removed


def sweep_dead(instance: str) -> list[str]:
    """Start-up sweep: remove this instance's segments left behind by dead writers; returns their names."""
    return clean_dead(instance)


def resolve(name: str, instance: str | None = None) -> str:
    """File name of a segment given 'mmshm-main-md', '/mmshm-main-md' or 'md' (+ instance)."""
    name = name.lstrip("/")
    if name.startswith(S.PREFIX):
        return name
    inst = instance or os.environ.get("MMSHM_INSTANCE", "main")
    return S.segment_name(inst, name).lstrip("/")


def _record_dict(rec: np.void) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in rec.dtype.names:
        if n.startswith("_"):
            continue
        v = rec[n]
        if isinstance(v, bytes):
            out[n] = v.rstrip(b"\x00").decode(errors="replace")
        elif isinstance(v, np.ndarray):
            out[n] = v.tolist()
        else:
            out[n] = v.item()
    return out


def inspect_segment(name: str, instance: str | None = None, last: int = 10) -> dict[str, Any]:
    """Header (every field), readers and the last ``last`` records of a ring / all rows of a table."""
    fname = resolve(name, instance)
    info = read_info(fname)
    seg = S._open_existing("/" + fname, writable=False, wait_s=0.0)
    try:
        h = seg.header
        header = {}
        for n in S.HEADER.names:
            if n == "readers":
                continue
            v = h[n]
            header[n] = v.rstrip(b"\x00").decode(errors="replace") if isinstance(v, bytes) else v.item()
        dtype = ALL_RECORDS.get(info.dtype_name)
        records: list[dict[str, Any]] = []
        if dtype is not None and not info.error and dtype.itemsize == int(h["record_size"]):
            data = seg.data(dtype).copy()         # a snapshot; per-record consistency checked below
            if info.kind == "seqlock":
                for i, row in enumerate(data):
                    if int(row["version"]) and not int(row["version"]) & 1:
                        records.append({"row": i, **_record_dict(row)})
            else:
                cap = info.capacity
                lo = max(1, info.cursor - last)
                for s in range(lo, info.cursor):
                    row = data[s & (cap - 1)]
                    if int(row["seq"]) == s:          # skip slots overwritten or being written
                        records.append(_record_dict(row))
        return {"info": info.to_dict(), "header": header, "records": records[-last:] if info.kind != "seqlock" else records}
    finally:
        seg.close()
