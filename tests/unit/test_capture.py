"""Capture files: `<local ns> <raw frame>` lines, gzip or plain, streaming and in memory."""
from __future__ import annotations

import gzip

import pytest

from mmshm.venues.capture import CaptureReader, CaptureWriter, load_capture, paced


def test_real_capture_counts(binance_capture):
    reader = CaptureReader(binance_capture)
    items = list(reader)
    assert len(items) == 93_954 and reader.bad_lines == 0
    ns, frame = items[0]
    assert ns == 1723161255030314667 and frame.startswith(b'{"stream":"btcusdt@depth@0ms"')
    stamps, frames = load_capture(binance_capture)
    assert frames == [f for _, f in items] and stamps == [n for n, _ in items]


@pytest.mark.parametrize("name", ["c.txt", "c.gz"])
def test_roundtrip_and_bad_lines(tmp_path, name):
    path = tmp_path / name
    with CaptureWriter(path) as w:
        w.write(1, b'{"a":1}')
        w.write(2, '{"b":"x y"}')
        with pytest.raises(ValueError):
            w.write(3, b'{"a":\n1}')
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == name.endswith(".gz")
    # append a torn line and garbage: skipped and counted
    extra = b"notanumber {}\n12345\n\n99 {\"c\":2}\n"
    if name.endswith(".gz"):
        path.write_bytes(raw + gzip.compress(extra))
    else:
        path.write_bytes(raw + extra)
    reader = CaptureReader(path)
    assert list(reader) == [(1, b'{"a":1}'), (2, b'{"b":"x y"}'), (99, b'{"c":2}')]
    assert reader.bad_lines == 2


def test_paced_follows_recorded_schedule():
    now = [0]
    slept = []

    def clock():
        return now[0]

    def sleep(s):
        slept.append(s)
        now[0] += int(s * 1e9)

    items = [(1_000, b"a"), (1_000 + 500_000_000, b"b"), (1_000 + 2_000_000_000, b"c")]
    out = list(paced(items, speed=2.0, clock=clock, sleep=sleep))
    assert out == items
    assert slept == [pytest.approx(0.25), pytest.approx(0.75)]
    with pytest.raises(ValueError):
        list(paced(items, speed=0))
