"""Capture files: one frame per line, ``<local receive ns> <raw frame as received>``.

The format of ``../shared/data`` and of ``mmshm record``: the raw venue bytes are kept
untouched so a capture replays through exactly the parser the live feed uses. Files are
gzip (detected by magic bytes, whatever the name) or plain. Readers yield
``(local_ns, frame_bytes)``; a line that does not fit the format is skipped and counted
(``CaptureReader.bad_lines``), because one torn line at the end of a crashed recording
must not make the rest of it useless.
"""
from __future__ import annotations

import asyncio
import gzip
import os
import time
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Iterable, Iterator

GZIP_MAGIC = b"\x1f\x8b"


def _open(path: str | os.PathLike) -> BinaryIO:
    """A binary reader of ``path``, transparently gunzipping."""
    f = open(path, "rb")
    if f.read(2) == GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _split(line: bytes) -> tuple[int, bytes] | None:
    """``(ns, frame)`` of one line, or None if it does not fit the format."""
    sp = line.find(b" ")
    if sp <= 0:
        return None
    head = line[:sp]
    if not head.isdigit():
        return None
    frame = line[sp + 1:].rstrip(b"\r\n")
    if not frame:
        return None
    return int(head), frame


class CaptureReader:
    """Iterate a capture file as ``(local_ns, frame)`` pairs, streaming (constant memory)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lines = 0
        self.bad_lines = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        with _open(self.path) as f:
            for line in f:
                self.lines += 1
                item = _split(line)
                if item is None:
                    if line.strip():
                        self.bad_lines += 1
                    continue
                yield item


def load_capture(path: str | os.PathLike) -> tuple[list[int], list[bytes]]:
    """The whole capture decompressed in memory: ``(local_ns list, frame list)``.

    For benchmarks and tests that must not measure gzip or disk. Bad lines are skipped.
    """
    with _open(path) as f:
        data = f.read()
    stamps: list[int] = []
    frames: list[bytes] = []
    for line in data.split(b"\n"):
        item = _split(line)
        if item is not None:
            stamps.append(item[0])
            frames.append(item[1])
    return stamps, frames


def paced(items: Iterable[tuple[int, bytes]], speed: float = 1.0,
          clock=time.monotonic_ns, sleep=time.sleep) -> Iterator[tuple[int, bytes]]:
    """Yield ``items`` at their recorded pace (``speed`` 2.0 = twice as fast).

    The schedule is anchored at the first frame, so time spent by the consumer does not
    accumulate as drift: a slow consumer catches up instead of falling further behind.
    """
    if speed <= 0:
        raise ValueError("speed must be > 0")
    t0_rec = t0 = None
    for ns, frame in items:
        if t0_rec is None:
            t0_rec, t0 = ns, clock()
        else:
            due = t0 + int((ns - t0_rec) / speed)
            wait = due - clock()
            if wait > 0:
                sleep(wait / 1e9)
        yield ns, frame


async def apaced(items: Iterable[tuple[int, bytes]], speed: float = 1.0) -> AsyncIterator[tuple[int, bytes]]:
    """The asyncio form of :func:`paced` (sleeps with ``asyncio.sleep``)."""
    if speed <= 0:
        raise ValueError("speed must be > 0")
    t0_rec = t0 = None
    for ns, frame in items:
        if t0_rec is None:
            t0_rec, t0 = ns, time.monotonic_ns()
        else:
            wait = t0 + int((ns - t0_rec) / speed) - time.monotonic_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
        yield ns, frame


class CaptureWriter:
    """Append frames to a capture file; gzip when the name ends in ``.gz``.

    A frame containing a newline cannot be represented in the line format and is refused
    with ValueError (venues send JSON without raw newlines; a frame that has one is not
    what it claims to be).
    """

    def __init__(self, path: str | os.PathLike, *, compress: bool | None = None) -> None:
        self.path = Path(path)
        gz = self.path.suffix == ".gz" if compress is None else compress
        raw = open(self.path, "ab")
        self._f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="ab") if gz else raw  # type: ignore[assignment]
        self._raw = raw
        self.frames = 0

    def write(self, local_ns: int, frame: bytes | str) -> None:
        if isinstance(frame, str):
            frame = frame.encode()
        if b"\n" in frame or b"\r" in frame:
            raise ValueError("frame contains a newline")
        if local_ns < 0:
            raise ValueError("negative timestamp")
        self._f.write(b"%d %s\n" % (local_ns, frame))
        self.frames += 1

    def flush(self) -> None:
        self._f.flush()
        if self._f is not self._raw:
            self._raw.flush()

    def close(self) -> None:
        if self._f is not self._raw:
            self._f.close()
        self._raw.close()

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CaptureReader", "CaptureWriter", "apaced", "load_capture", "paced"]
