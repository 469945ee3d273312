"""Read an instance's shared memory into an ``InstanceSnapshot``.

Used by the watchdog (every check), `mmshm status` and the exporter. Segments are found
by listing ``/dev/shm/mmshm-<instance>-*`` and confirmed by the name in their header (an
instance ``a`` must not pick up ``a-b``'s segments). Mappings are kept between snapshots
and re-opened when a segment file is replaced (new inode) or removed.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from mmshm.agent.counters import named_counters
from mmshm.agent.proctable import PROCS_SEGMENT, VERDICTS_SEGMENT, ProcessTable, VerdictTable, process_alive
from mmshm.execution.account import ACCOUNT_SEGMENT, AccountTable
from mmshm.monitor.model import AccountInfo, InstanceSnapshot, ProcessInfo, ReaderInfo, SegmentInfo, VerdictInfo
from mmshm.records import FEE_SCALE, AccountSource, ProcState, Verdict
from mmshm.shm import segment as segmod


def _text(value) -> str:
    return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")


def _state(value: int) -> ProcState:
    try:
        return ProcState(int(value))
    except ValueError:
        return ProcState.FREE


def _verdict(value: int) -> Verdict:
    try:
        return Verdict(int(value))
    except ValueError:
        return Verdict.OK


class SnapshotReader:
    """Keeps the instance's segments mapped and reads them on demand; ``close()`` unmaps."""

    def __init__(self, instance: str, pid_reuse_tolerance_s: float = 2.0,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.instance = instance
        self.pid_reuse_tolerance_s = pid_reuse_tolerance_s
        self._clock = clock
        self._segments: dict[str, tuple[int, segmod.Segment]] = {}  # name -> (inode, segment)
        self._procs: ProcessTable | None = None
        self._verdicts: VerdictTable | None = None
        self._account: AccountTable | None = None
        self._table_inodes: dict[str, int | None] = {}

    # ------------------------------------------------------------------ discovery
    def segment_files(self) -> dict[str, int]:
        """Short segment name -> inode, for every /dev/shm file that may belong to the instance."""
        prefix = f"{segmod.PREFIX}{self.instance}-"
        out = {}
        try:
            entries = os.scandir(segmod.SHM_DIR)
        except OSError:
            return out
        with entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    try:
                        out[entry.name[len(prefix):]] = entry.inode()
                    except OSError:
                        continue
        return out

    def _refresh(self, errors: list[str]) -> None:
        files = self.segment_files()
        for name in list(self._segments):
            inode, seg = self._segments[name]
            if files.get(name) != inode:
                seg.close()
                del self._segments[name]
        for name, inode in files.items():
            if name in self._segments:
                continue
            try:
                seg = segmod.attach(self.instance, name, None, None)
            except (segmod.ShmError, ValueError, OSError) as exc:
                errors.append(f"{name}: {exc}")
                continue
            if _text(seg.header["name"]) != name:
                seg.close()  # another instance's segment whose name shares our prefix
                continue
            self._segments[name] = (inode, seg)

    def _tables(self) -> None:
        """(Re-)attach the procs, verdicts and account tables; re-attach when a file was replaced."""
        for attr, name, cls in (("_procs", PROCS_SEGMENT, ProcessTable), ("_verdicts", VERDICTS_SEGMENT, VerdictTable),
                                ("_account", ACCOUNT_SEGMENT, AccountTable)):
            table = getattr(self, attr)
            inode = self._segments[name][0] if name in self._segments else None
            if table is not None and self._table_inodes.get(name) != inode:
                table.close()
                table = None
                setattr(self, attr, None)
            if table is None and inode is not None:
                setattr(self, attr, cls.attach(self.instance))
                self._table_inodes[name] = inode

    # ------------------------------------------------------------------ reading
    def take(self) -> InstanceSnapshot:
        errors: list[str] = []
        self._refresh(errors)
        try:
            self._tables()
        except (segmod.ShmError, ValueError, OSError) as exc:
            errors.append(f"tables: {exc}")
        snap = InstanceSnapshot(self.instance, 0, errors=errors)
        for name, (_inode, seg) in sorted(self._segments.items()):
            try:
                snap.segments.append(self._segment_info(name, seg))
            except Exception as exc:  # a segment being torn down under us
                errors.append(f"{name}: {exc}")
        if self._procs is not None:
            snap.processes = self._process_infos()
        if self._verdicts is not None:
            self._verdict_infos(snap)
        if self._account is not None:
            try:
                snap.account = self._account_info()
            except (segmod.ShmError, ValueError) as exc:     # mid-write for too long
                errors.append(f"account: {exc}")
        # Taken after reading: no heartbeat read above is newer than "now" (ages are >= 0).
        snap.taken_mono = self._clock()
        return snap

    def _segment_info(self, name: str, seg: segmod.Segment) -> SegmentInfo:
        h = seg.header
        kind_v = int(h["kind"])
        kind = segmod.Kind(kind_v).name if kind_v in segmod.Kind._value2member_map_ else str(kind_v)
        cursor = int(h["cursor"])
        creator = int(h["creator_pid"])
        readers = []
        if kind_v != segmod.Kind.SEQLOCK:
            for i, r in enumerate(seg.readers):
                state = int(r["state"])
                if state == segmod.ReaderState.FREE:
                    continue
                pid = int(r["pid"])
                rc = int(r["cursor"])
                readers.append(ReaderInfo(
                    slot=i, name=_text(r["name"]), required=state == segmod.ReaderState.REQUIRED,
                    pid=pid, alive=segmod.pid_alive(pid), cursor=rc, lag=max(0, cursor - rc) if rc else 0,
                    gaps=int(r["gaps"]), lost=int(r["lost"]), polled=int(r["polled"]),
                    heartbeat_mono=int(r["heartbeat_mono"]),
                ))
        write_count = int(h["write_count"])
        if kind_v == segmod.Kind.SEQLOCK:
            # Tables keep no write count in the header: every row write adds 2 to its version.
            slot = int(h["slot_size"])
            versions = seg.data(np.dtype({"names": ["version"], "formats": ["<u8"], "offsets": [0],
                                          "itemsize": slot}))["version"]
            write_count = int(versions.sum(dtype=np.uint64)) // 2
            # A shared table (procs) lives on while any row-writer does, whoever created it.
            row_writers_alive = any(segmod.pid_alive(int(k)) for k in seg.claims() if int(k) > 0)
        else:
            row_writers_alive = False
        return SegmentInfo(
            name=name, posix_name=seg.posix_name, kind=kind, dtype_name=_text(h["dtype_name"]),
            capacity=int(h["capacity"]), creator_pid=creator, creator_alive=segmod.writer_alive(seg) or row_writers_alive,
            epoch=int(h["epoch"]), cursor=cursor, write_count=write_count,
            refused=int(h["refused"]), alarm=int(h["alarm"]), heartbeat_mono=int(h["heartbeat_mono"]),
            heartbeat_count=int(h["heartbeat_count"]), created_ts=int(h["created_ts"]), readers=readers,
        )

    def _process_infos(self) -> list[ProcessInfo]:
        assert self._procs is not None
        out = []
        for i, row in enumerate(self._procs.read_all()):
            state = _state(row["state"])
            pid = int(row["pid"])
            if state == ProcState.FREE and pid == 0:
                continue
            role = _text(row["role"])
            started = int(row["started_ts"])
            out.append(ProcessInfo(
                row=i, pid=pid, role=role, state=state, cpu=int(row["cpu"]), started_ts=started,
                heartbeat_mono=int(row["heartbeat_mono"]), heartbeat_count=int(row["heartbeat_count"]),
                work_count=int(row["work_count"]), idle_cycles=int(row["idle_cycles"]),
                counters=named_counters(role, np.asarray(row["counters"])),
                alive=process_alive(pid, started, self.pid_reuse_tolerance_s),
            ))
        return out

    def _verdict_infos(self, snap: InstanceSnapshot) -> None:
        assert self._verdicts is not None
        rows = self._verdicts.read_all()
        if len(rows):
            head = rows[0]
            snap.halt = bool(int(head["halt"]))
            snap.halt_reason = _text(head["reason"])
            snap.halt_since_mono = int(head["since_mono"])
            snap.watchdog_checked_mono = int(head["checked_mono"])
        for i in range(1, len(rows)):
            row = rows[i]
            if int(row["pid"]) == 0:
                continue
            snap.verdicts.append(VerdictInfo(
                row=i, pid=int(row["pid"]), role=_text(row["role"]), verdict=_verdict(row["verdict"]),
                critical=bool(int(row["critical"])), since_mono=int(row["since_mono"]),
                checked_mono=int(row["checked_mono"]), heartbeat_age_ns=int(row["heartbeat_age_ns"]),
                reason=_text(row["reason"]),
            ))

    def _account_info(self) -> AccountInfo | None:
        assert self._account is not None
        row = self._account.read(0)
        if row is None:
            return None
        src = int(row["source"])

        def money(field: str) -> float:
            return int(row[field]) / FEE_SCALE

        return AccountInfo(
            asset=_text(row["asset"]),
            source=AccountSource(src).name if src in AccountSource._value2member_map_ else str(src),
            wallet=money("wallet_balance"), margin_balance=money("margin_balance"),
            unrealized_pnl=money("unrealized_pnl"), initial_margin=money("initial_margin"),
            maint_margin=money("maint_margin"), available=money("available_balance"),
            updated_mono=int(row["updated_mono"]), margin_mono=int(row["margin_mono"]), drops=int(row["drops"]))

    def close(self) -> None:
        for _inode, seg in self._segments.values():
            seg.close()
        self._segments.clear()
        for table in (self._procs, self._verdicts, self._account):
            if table is not None:
                table.close()
        self._procs = self._verdicts = self._account = None

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def take_snapshot(instance: str) -> InstanceSnapshot:
    """One snapshot of ``instance`` (opens and closes its mappings)."""
    with SnapshotReader(instance) as reader:
        return reader.take()
