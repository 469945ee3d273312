"""Segments: creating, attaching, validating and taking over /dev/shm/mmshm-* segments.

This module owns the header layout (one 4096-byte header per segment, declared as the
numpy dtype ``HEADER``) and everything that happens once per segment lifetime: creation
with ``O_CREAT|O_EXCL`` and mode 0600, attach-time validation, writer takeover after a
crash, and the reader-slot registry. The per-message hot paths live in Cython
(``cython_src/shm.pyx``); they reach the header through the byte offsets exported here
(``OFF_*``), which the tests check against ``HEADER``.

Header layout (every line is 128 bytes; writer fields and reader fields never share one):

- bytes 0..255 (lines 0-1), constant after creation except on writer takeover: magic,
  layout version, kind, dtype hash, slot size, capacity, sizes, creator pid, epoch, ...
  Readers load ``epoch`` on every poll; it is written only on takeover, so the line
  stays shared-clean in the steady state.
- bytes 256..383 (line 2), writer-owned: heartbeat, cursor, write count, refused, alarm.
- bytes 512.. (lines 4..19), one 128-byte line per reader slot, each owned by its reader
  (the writer only reads them, to gate).
"""
from __future__ import annotations

import mmap
import os
import time
from enum import IntEnum
from typing import Iterable

import numpy as np
import posix_ipc

from mmshm.records import dtype_hash

MAGIC = 0x4745_5348_4D53_4D4D  # b"MMSHMSEG" little-endian
LAYOUT_VERSION = 1
HEADER_SIZE = 4096
LINE = 128
MAX_READERS = 16
READER_NAME_LEN = 32
#: Bit set in a slot's seq while the writer is rewriting the slot (low bits: the seq being written).
BUSY_BIT = 1 << 63
SHM_DIR = "/dev/shm"
PREFIX = "mmshm-"


class Kind(IntEnum):
    BROADCAST = 1
    GATED = 2
    SEQLOCK = 3


class ReaderState(IntEnum):
    FREE = 0
    REQUIRED = 1      # the writer gates on it (reserved at creation, survives the reader)
    UNTETHERED = 2    # lossy reader, counted gaps


class ShmError(Exception):
    """Any shared-memory segment error."""


class SegmentMismatch(ShmError):
    """Attach found a segment whose layout differs from what the caller expects."""


class SegmentInUse(ShmError):
    """create() found the segment owned by a live writer."""


class SegmentNotFound(ShmError):
    """attach() found no such segment."""


class SeqlockBusy(ShmError):
    """A seqlock row could not be read consistently within the retry budget."""


def _dtype(fields: list[tuple], itemsize: int) -> np.dtype:
    """A dtype with explicit offsets: (name, format, offset) or (name, format, shape, offset)."""
    return np.dtype({
        "names": [f[0] for f in fields],
        "formats": [f[1] if len(f) == 3 else (f[1], f[2]) for f in fields],
        "offsets": [f[-1] for f in fields],
        "itemsize": itemsize,
    })


#: One reader slot (its own 128-byte line).
READER = _dtype([
    ("state", "<u4", 0),          # ReaderState
    ("flags", "<u4", 4),
    ("pid", "<i8", 8),            # attached process, 0 = detached; claimed by CAS
    ("cursor", "<u8", 16),        # next sequence this reader will read
    ("gaps", "<u8", 24),          # gap events (lapped, writer restarted)
    ("lost", "<u8", 32),          # messages skipped over by gaps
    ("epoch_seen", "<u8", 40),    # writer epoch the reader last synced to
    ("heartbeat_mono", "<i8", 48),
    ("polled", "<u8", 56),        # messages read
    ("attached_ts", "<i8", 64),   # realtime ns of the last attach
    ("name", f"S{READER_NAME_LEN}", 72),
], LINE)

HEADER = _dtype([
    # line 0-1: constant after creation (epoch/creator_pid change only on takeover)
    ("magic", "<u8", 0),          # stored last at creation (release): attachers see a full header
    ("layout_version", "<u4", 8),
    ("kind", "<u4", 12),
    ("dtype_hash", "<u8", 16),
    ("slot_size", "<u8", 24),
    ("capacity", "<u8", 32),      # ring slots (power of two) or table rows
    ("segment_size", "<u8", 40),
    ("data_offset", "<u8", 48),
    ("creator_pid", "<i8", 56),
    ("epoch", "<u8", 64),         # 1 at creation, +1 per writer takeover
    ("created_ts", "<i8", 72),    # realtime ns
    ("n_readers", "<u4", 80),
    ("n_required", "<u4", 84),
    ("record_size", "<u8", 88),
    ("takeover_ts", "<i8", 96),   # realtime ns of the last takeover (0 = never)
    ("name", "S64", 128),
    ("dtype_name", "S32", 192),
    # line 2: writer-owned
    ("heartbeat_mono", "<i8", 256),
    ("heartbeat_count", "<u8", 264),
    ("cursor", "<u8", 272),       # next sequence the writer will publish (rings)
    ("write_count", "<u8", 280),  # messages published by this segment's writers
    ("refused", "<u8", 288),      # gated: publishes refused because the ring was full
    ("alarm", "<u8", 296),        # gated: nonzero once a publish was refused (full)
    # lines 4..19: reader slots
    ("readers", READER, (MAX_READERS,), 512),
], HEADER_SIZE)

# Byte offsets the Cython hot paths use (checked against HEADER by the tests).
OFF_EPOCH = HEADER.fields["epoch"][1]
OFF_CREATOR_PID = HEADER.fields["creator_pid"][1]
OFF_HEARTBEAT_MONO = HEADER.fields["heartbeat_mono"][1]
OFF_HEARTBEAT_COUNT = HEADER.fields["heartbeat_count"][1]
OFF_CURSOR = HEADER.fields["cursor"][1]
OFF_WRITE_COUNT = HEADER.fields["write_count"][1]
OFF_REFUSED = HEADER.fields["refused"][1]
OFF_ALARM = HEADER.fields["alarm"][1]
OFF_READERS = HEADER.fields["readers"][1]
ROFF = {name: READER.fields[name][1] for name in READER.names}


def segment_name(instance: str, name: str) -> str:
    """The POSIX name ``/mmshm-<instance>-<name>`` (ValueError on an unusable part)."""
    for what, part in (("instance", instance), ("segment name", name)):
        if not isinstance(part, str) or not part:
            raise ValueError(f"{what} must be a non-empty string, got {part!r}")
        if "/" in part or "\x00" in part:
            raise ValueError(f"{what} {part!r} must not contain '/' or NUL")
    full = f"/{PREFIX}{instance}-{name}"
    if len(full) > 200:
        raise ValueError(f"segment name {full!r} is too long ({len(full)} > 200)")
    return full


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (zombies count as dead: they will never write again)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def writer_alive(seg: "Segment") -> bool:
    """Is the segment's creator pid a live process that is really its writer?

    Guards against pid reuse: a live process that started after the pid was recorded in
    the header (creation or last takeover) cannot be the writer.
    """
    h = seg.header
    pid = int(h["creator_pid"])
    if not pid_alive(pid):
        return False
    since_ns = max(int(h["created_ts"]), int(h["takeover_ts"]))
    try:
        import psutil

        started = psutil.Process(pid).create_time()
    except Exception:
        return True
    return started <= since_ns / 1e9 + 1.0


def default_slot_size(dtype: np.dtype) -> int:
    return (dtype.itemsize + 63) // 64 * 64


def _check_layout_args(kind: Kind, dtype: np.dtype, capacity: int, slot_size: int | None) -> int:
    """Validate creation arguments; return the slot size. Raises ValueError naming the problem."""
    dtype = np.dtype(dtype)
    if dtype.names is None:
        raise ValueError(f"record dtype must be structured, got {dtype}")
    first = "version" if kind == Kind.SEQLOCK else "seq"
    if dtype.names[0] != first or dtype.fields[first][0] != np.dtype("<u8") or dtype.fields[first][1] != 0:
        raise ValueError(f"record dtype must start with a uint64 {first!r} field at offset 0 "
                         f"(first field is {dtype.names[0]!r})")
    if not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    if kind != Kind.SEQLOCK and capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two, got {capacity}")
    if slot_size is None:
        slot_size = default_slot_size(dtype)
    if slot_size <= 0 or slot_size % 64:
        raise ValueError(f"slot size must be a positive multiple of 64 bytes, got {slot_size}")
    if dtype.itemsize > slot_size:
        raise ValueError(f"record of {dtype.itemsize} bytes is larger than the slot ({slot_size} bytes)")
    return int(slot_size)


def _data_offset(kind: Kind, capacity: int) -> int:
    """Rings start their slots right after the header; tables put a row-claim array first."""
    if kind == Kind.SEQLOCK:
        return HEADER_SIZE + (capacity * 8 + LINE - 1) // LINE * LINE
    return HEADER_SIZE


def _segment_size(kind: Kind, capacity: int, slot_size: int) -> int:
    size = _data_offset(kind, capacity) + capacity * slot_size
    return (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


def _dtype_name(dtype: np.dtype) -> str:
    """The records.py name of ``dtype`` if it is one of them, else a short description."""
    from mmshm.records import ALL_RECORDS

    for name, dt in ALL_RECORDS.items():
        if dt == dtype:
            return name
    return f"dtype{dtype.itemsize}"


class Segment:
    """An mmap'd segment: the mapping, a numpy view of its header, and its raw base address.

    Owns the mapping; ``close()`` drops the numpy views and unmaps. Hot code gets
    ``address`` and must not outlive the Segment.
    """

    def __init__(self, posix_name: str, mm: mmap.mmap, size: int, writable: bool = True):
        self.posix_name = posix_name
        self.name = posix_name.lstrip("/")
        self._mm = mm
        self.size = size
        self.writable = writable
        self._bytes = np.frombuffer(mm, dtype=np.uint8)
        self.header = self._bytes[:HEADER_SIZE].view(HEADER)[0]  # np.void view into the mapping
        self.address = int(self._bytes.__array_interface__["data"][0])

    # --- convenience views
    @property
    def readers(self) -> np.ndarray:
        return self._bytes[OFF_READERS:OFF_READERS + MAX_READERS * LINE].view(READER)

    def data(self, dtype: np.dtype) -> np.ndarray:
        """The slots/rows as a 1-D array of ``dtype`` (strided by the slot size): a live view."""
        h = self.header
        cap, slot, off = int(h["capacity"]), int(h["slot_size"]), int(h["data_offset"])
        raw = self._bytes[off:off + cap * slot]
        if slot == dtype.itemsize:
            return raw.view(dtype)
        return np.ndarray((cap,), dtype=dtype, buffer=raw, strides=(slot,))

    def claims(self) -> np.ndarray:
        """Seqlock tables: the per-row claim words (0 = unclaimed)."""
        cap = int(self.header["capacity"])
        return self._bytes[HEADER_SIZE:HEADER_SIZE + cap * 8].view("<u8")

    def close(self) -> None:
        if self._mm is None:
            return
        self.header = None
        self._bytes = None
        mm, self._mm = self._mm, None
        try:
            mm.close()
        except BufferError:
            # A view handed out to a caller is still alive: leave the mapping to the GC.
            pass

    def unlink(self) -> None:
        try:
            posix_ipc.unlink_shared_memory(self.posix_name)
        except posix_ipc.ExistentialError:
            pass

    def __repr__(self) -> str:
        return f"Segment({self.posix_name!r}, size={self.size})"


def _map(posix_name: str, size: int, fd: int, writable: bool = True) -> Segment:
    """Map the segment. Writers and readers (writable) prefault every page (MAP_POPULATE)
    so the hot path never takes a page fault on the first pass through the ring; read-only
    inspection maps lazily."""
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if writable else 0)
    mm = mmap.mmap(fd, size, flags=flags, prot=prot)
    return Segment(posix_name, mm, size, writable)


def _open_existing(posix_name: str, writable: bool = True, wait_s: float = 1.0) -> Segment:
    """Open and map an existing segment, waiting briefly for a creator still initialising it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            shm = posix_ipc.SharedMemory(posix_name, 0, read_only=not writable)
        except posix_ipc.ExistentialError:
            raise SegmentNotFound(f"no shared-memory segment {posix_name}") from None
        try:
            size = os.fstat(shm.fd).st_size
            if size >= HEADER_SIZE:
                seg = _map(posix_name, size, shm.fd, writable)
                if _magic(seg) == MAGIC:
                    return seg
                if _magic(seg) != 0:
                    found = _magic(seg)
                    seg.close()
                    raise SegmentMismatch(f"{posix_name}: magic mismatch: expected 0x{MAGIC:016x}, found 0x{found:016x}")
                seg.close()
        finally:
            shm.close_fd()
        if time.monotonic() > deadline:
            raise SegmentMismatch(f"{posix_name}: segment is not initialised (size or magic still 0 after {wait_s}s)")
        time.sleep(0.005)


def _magic(seg: Segment) -> int:
    from mmshm._native.shm import load_u64

    return load_u64(seg.address)


def validate(seg: Segment, kind: Kind | None, dtype: np.dtype | None, slot_size: int | None = None,
             capacity: int | None = None) -> None:
    """Check the header against what the caller expects; SegmentMismatch names the first field that differs."""
    h = seg.header
    checks: list[tuple[str, int, int, str]] = [
        ("magic", MAGIC, int(h["magic"]), "0x{:016x}"),
        ("layout version", LAYOUT_VERSION, int(h["layout_version"]), "{}"),
    ]
    if kind is not None:
        checks.append(("kind", int(kind), int(h["kind"]), "{}"))
    if dtype is not None:
        checks.append(("dtype hash", dtype_hash(np.dtype(dtype)), int(h["dtype_hash"]), "0x{:016x}"))
        checks.append(("record size", np.dtype(dtype).itemsize, int(h["record_size"]), "{}"))
        if slot_size is None:
            slot_size = default_slot_size(np.dtype(dtype))
    if slot_size is not None:
        checks.append(("slot size", int(slot_size), int(h["slot_size"]), "{}"))
    if capacity is not None:
        checks.append(("capacity", int(capacity), int(h["capacity"]), "{}"))
    cap, slot, kind_found = int(h["capacity"]), int(h["slot_size"]), int(h["kind"])
    try:
        expected_size = _segment_size(Kind(kind_found), cap, slot)
    except ValueError:
        expected_size = -1
    checks.append(("segment size", expected_size, seg.size, "{}"))
    for field, expected, found, fmt in checks:
        if expected != found:
            if field == "kind":
                exp_s, found_s = Kind(expected).name, (Kind(found).name if found in Kind._value2member_map_ else str(found))
            else:
                exp_s, found_s = fmt.format(expected), fmt.format(found)
            raise SegmentMismatch(f"{seg.posix_name}: {field} mismatch: expected {exp_s}, found {found_s}")


def create(instance: str, name: str, kind: Kind, dtype: np.dtype, capacity: int,
           slot_size: int | None = None, required: Iterable[str] = ()) -> Segment:
    """Create (or take over from a dead writer) the segment ``/mmshm-<instance>-<name>``.

    A new segment is zero-filled by ftruncate; the header is filled in and ``magic`` is
    stored last with release so an attacher never sees a half-written header. If the
    segment exists and its creator pid is alive, SegmentInUse; if that pid is dead, the
    layout is validated, the caller becomes the creator, the epoch is bumped and the
    cursor continues past every sequence already in the ring (readers keep their mapping).
    """
    dtype = np.dtype(dtype)
    posix_name = segment_name(instance, name)
    slot_size = _check_layout_args(kind, dtype, capacity, slot_size)
    required = tuple(required)
    _check_reader_names(required)
    if kind != Kind.GATED and required:
        raise ValueError("required readers exist only on gated rings")
    seg = _create_exclusive(posix_name, name, kind, dtype, capacity, slot_size, required)
    if seg is None:
        return _takeover(posix_name, kind, dtype, capacity, slot_size, required)
    return seg


def _create_exclusive(posix_name: str, name: str, kind: Kind, dtype: np.dtype, capacity: int,
                      slot_size: int, required: tuple[str, ...]) -> Segment | None:
    """Create, map and publish a new segment; None if ``posix_name`` already exists.

    A new segment is zero-filled by ftruncate; ``magic`` is stored last, with release,
    so an attacher never sees a half-written header.
    """
    from mmshm._native.shm import store_release_u64

    size = _segment_size(kind, capacity, slot_size)
    try:
        shm = posix_ipc.SharedMemory(posix_name, posix_ipc.O_CREX, mode=0o600, size=size)
    except posix_ipc.ExistentialError:
        return None
    try:
        seg = _map(posix_name, size, shm.fd)
    except BaseException:
        posix_ipc.unlink_shared_memory(posix_name)
        raise
    finally:
        shm.close_fd()
    _fill_header(seg, kind, dtype, capacity, slot_size, size, name, required)
    store_release_u64(seg.address, MAGIC)
    return seg


def _fill_header(seg: Segment, kind: Kind, dtype: np.dtype, capacity: int, slot_size: int, size: int,
                 name: str, required: tuple[str, ...]) -> None:
    """Fill a fresh (zeroed) header; the caller stores ``magic`` last, with release."""
    h = seg.header
    h["layout_version"] = LAYOUT_VERSION
    h["kind"] = int(kind)
    h["dtype_hash"] = dtype_hash(dtype)
    h["slot_size"] = slot_size
    h["capacity"] = capacity
    h["segment_size"] = size
    h["data_offset"] = _data_offset(kind, capacity)
    h["creator_pid"] = os.getpid()
    h["epoch"] = 1
    h["created_ts"] = time.time_ns()
    h["n_readers"] = MAX_READERS
    h["n_required"] = len(required)
    h["record_size"] = dtype.itemsize
    h["name"] = name.encode()[:64]
    h["dtype_name"] = _dtype_name(dtype).encode()[:32]
    h["cursor"] = 1 if kind != Kind.SEQLOCK else 0
    readers = seg.readers
    for i, rname in enumerate(required):
        readers[i]["state"] = int(ReaderState.REQUIRED)
        readers[i]["name"] = rname.encode()
        readers[i]["cursor"] = 1
        readers[i]["epoch_seen"] = 1


def _check_reader_names(names: Iterable[str]) -> None:
    seen = set()
    for n in names:
        if not isinstance(n, str) or not n or len(n.encode()) > READER_NAME_LEN:
            raise ValueError(f"reader name must be 1..{READER_NAME_LEN} bytes, got {n!r}")
        if n in seen:
            raise ValueError(f"reader name {n!r} given twice")
        seen.add(n)
    if len(seen) > MAX_READERS:
        raise ValueError(f"at most {MAX_READERS} readers, got {len(seen)}")


def _takeover(posix_name: str, kind: Kind, dtype: np.dtype, capacity: int, slot_size: int,
              required: tuple[str, ...]) -> Segment:
    """Become the writer of an existing segment whose creator is dead (see create())."""
    from mmshm._native.shm import cas_i64, fetch_add_u64, load_u64, store_release_u64

    seg = _open_existing(posix_name)
    try:
        validate(seg, kind, dtype, slot_size, capacity)
        me = os.getpid()
        while True:
            owner = int(seg.header["creator_pid"])
            if owner == me:
                raise SegmentInUse(f"{posix_name} is already owned by this process (pid {me})")
            if writer_alive(seg):
                raise SegmentInUse(f"{posix_name} exists and its writer pid {owner} is alive")
            # Stamp before the CAS so that, the instant our pid is visible, writer_alive()
            # judges it against a time after our start (no second restarter can steal it).
            seg.header["takeover_ts"] = time.time_ns()
            if cas_i64(seg.address + OFF_CREATOR_PID, owner, me):
                break
        if kind != Kind.SEQLOCK:
            # Continue past every sequence already in a slot, even one the dead writer stored
            # without getting to advance the header cursor.
            seqs = seg.data(dtype)["seq"] & ~np.uint64(BUSY_BIT)
            nxt = max(load_u64(seg.address + OFF_CURSOR), int(seqs.max()) + 1 if len(seqs) else 1, 1)
            store_release_u64(seg.address + OFF_CURSOR, nxt)
            _add_required(seg, required, nxt)
        fetch_add_u64(seg.address + OFF_EPOCH, 1)
        return seg
    except BaseException:
        seg.close()
        raise


def _add_required(seg: Segment, required: tuple[str, ...], cursor: int) -> None:
    """On takeover, reserve slots for required readers the old writer did not know (from ``cursor``)."""
    from mmshm._native.shm import cas_i64

    readers = seg.readers
    existing = {bytes(r["name"]).decode() for r in readers if int(r["state"]) == ReaderState.REQUIRED}
    base = seg.address + OFF_READERS
    for rname in required:
        if rname in existing:
            continue
        for i in range(MAX_READERS):
            if int(readers[i]["state"]) == ReaderState.FREE and cas_i64(base + i * LINE + ROFF["pid"], 0, os.getpid()):
                readers[i]["name"] = rname.encode()
                readers[i]["cursor"] = cursor
                readers[i]["epoch_seen"] = int(seg.header["epoch"]) + 1
                readers[i]["state"] = int(ReaderState.REQUIRED)
                seg.header["n_required"] = int(seg.header["n_required"]) + 1
                readers[i]["pid"] = 0
                break
        else:
            raise ShmError(f"{seg.posix_name}: no free reader slot for required reader {rname!r}")


def attach(instance: str, name: str, kind: Kind | None, dtype: np.dtype | None,
           slot_size: int | None = None, capacity: int | None = None) -> Segment:
    """Map an existing segment and validate it (SegmentMismatch naming the field on a difference)."""
    posix_name = segment_name(instance, name)
    seg = _open_existing(posix_name)
    try:
        validate(seg, kind, None if dtype is None else np.dtype(dtype), slot_size, capacity)
    except BaseException:
        seg.close()
        raise
    return seg


def claim_reader(seg: Segment, reader: str, allow_required: bool = True) -> tuple[int, bool]:
    """Claim a reader slot for ``reader``: its required slot, or a free/dead untethered one.

    Returns (slot index, required?). A required slot is claimed by CAS on its pid (0 or a
    dead pid -> ours) and keeps its cursor: a restarted required reader resumes where it
    left off. Raises ShmError when the name is attached by a live process or no slot is free.
    """
    from mmshm._native.shm import cas_i64

    _check_reader_names([reader])
    me = os.getpid()
    readers = seg.readers
    base = seg.address + OFF_READERS
    enc = reader.encode()
    # 1. our required slot, or a same-named untethered slot left by a dead reader
    for i in range(MAX_READERS):
        st = int(readers[i]["state"])
        if st != ReaderState.FREE and bytes(readers[i]["name"]) == enc:
            pid = int(readers[i]["pid"])
            if pid and pid_alive(pid):
                raise ShmError(f"{seg.posix_name}: reader {reader!r} is already attached by live pid {pid}")
            if st == ReaderState.REQUIRED and not allow_required:
                raise ShmError(f"{seg.posix_name}: reader {reader!r} is a required reader")
            if cas_i64(base + i * LINE + ROFF["pid"], pid, me):
                readers[i]["attached_ts"] = time.time_ns()
                return i, st == ReaderState.REQUIRED
            raise ShmError(f"{seg.posix_name}: reader {reader!r} slot was claimed concurrently")
    # 2. a free slot, or an untethered slot whose process died
    for i in range(MAX_READERS):
        st = int(readers[i]["state"])
        pid = int(readers[i]["pid"])
        if st == ReaderState.FREE and pid == 0:
            expected = 0
        elif st == ReaderState.UNTETHERED and pid > 0 and not pid_alive(pid):
            expected = pid
        else:
            continue
        if cas_i64(base + i * LINE + ROFF["pid"], expected, me):
            r = readers[i]
            for f in ("gaps", "lost", "polled", "heartbeat_mono", "cursor", "epoch_seen", "flags"):
                r[f] = 0
            r["name"] = enc
            r["attached_ts"] = time.time_ns()
            r["state"] = int(ReaderState.UNTETHERED)
            return i, False
    raise ShmError(f"{seg.posix_name}: no free reader slot for {reader!r} (all {MAX_READERS} in use)")


def release_reader(seg: Segment, index: int) -> None:
    """Detach from a reader slot: required slots keep name and cursor; untethered ones are freed."""
    r = seg.readers[index]
    if int(r["state"]) == ReaderState.UNTETHERED:
        r["state"] = int(ReaderState.FREE)
    r["pid"] = 0


def create_or_attach(instance: str, name: str, kind: Kind, dtype: np.dtype, capacity: int,
                     slot_size: int | None = None) -> Segment:
    """Create the segment if absent, else attach and validate it (no takeover, no epoch bump).

    For tables written by several processes, one row each (e.g. the process table): whoever
    comes first creates it; everybody validates the same layout.
    """
    dtype = np.dtype(dtype)
    posix_name = segment_name(instance, name)
    slot_size = _check_layout_args(kind, dtype, capacity, slot_size)
    seg = _create_exclusive(posix_name, name, kind, dtype, capacity, slot_size, ())
    if seg is None:
        return attach(instance, name, kind, dtype, slot_size, capacity)
    return seg
