"""`mmshm record` against the loopback stand-in: the capture re-reads as exactly what was served."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import orjson
import pytest

from mmshm.venues.capture import CaptureReader, load_capture
from mmshm.venues.standin import CaptureSource, StandinThread, SyntheticSource


def record(standin: StandinThread, out, *extra: str, duration: float = 2.0) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "mmshm", "record", "--venue", "binance-usdm", "--symbols", "BTCUSDT",
         "-o", str(out), "--duration", str(duration), "--ws-url", standin.ws_url, "--rest-url", standin.rest_url,
         *extra], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(90)
def test_record_from_capture_equals_what_was_served(tmp_path, binance_capture) -> None:
    out = tmp_path / "rec.gz"
    # A quarter of recorded pace: the recorder asks for its snapshot right after the first
    # frame, long before the diff that bridges the recorded snapshot is played.
    with StandinThread(CaptureSource(binance_capture, speed=0.25)) as standin:
        summary = record(standin, out)
        served = standin.stats
    with open(out, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip because of the name
    lines = list(CaptureReader(out))
    frames = [f for _, f in lines]
    stamps = [ns for ns, _ in lines]
    assert stamps == sorted(stamps)
    snaps = [f for f in frames if f.startswith(b'{"lastUpdateId"')]
    streams = [f for f in frames if not f.startswith(b'{"lastUpdateId"')]
    _, original = load_capture(binance_capture)
    original_streams = [f for f in original if not f.startswith(b'{"lastUpdateId"')]
    assert len(streams) == served["messages_sent"] == summary["frames"] - 1 > 50
    assert streams == original_streams[: len(streams)]
    assert snaps == [next(f for f in original if f.startswith(b'{"lastUpdateId"'))]
    # The snapshot line comes after the first frame (subscribe first, then snapshot).
    assert not frames[0].startswith(b'{"lastUpdateId"')
    assert summary["snapshots"] == 1 and summary["reconnects"] == 0


@pytest.mark.timeout(90)
def test_record_synthetic_plain_file_is_synchronisable_and_survives_a_reconnect(tmp_path) -> None:
    out = tmp_path / "rec.txt"
    with StandinThread(SyntheticSource(["BTCUSDT"], seed=3, speed=10.0, step_ms=5)) as standin:
        standin.close_after(300)  # once: a longer window adds frames, not reconnects
        # Generous: the child's start-up under a loaded machine must not eat the window
        # in which the close and the reconnect happen.
        summary = record(standin, out, "--trades", "aggTrade", duration=8.0)
    raw = out.read_bytes()
    assert raw[:2] != b"\x1f\x8b"
    lines = list(CaptureReader(out))
    assert summary["reconnects"] == 1 and summary["snapshots"] == 2
    kinds = {orjson.loads(f).get("stream", "snapshot") for _, f in lines}
    assert kinds == {"snapshot", "btcusdt@bookTicker", "btcusdt@depth@0ms", "btcusdt@aggTrade"}
    # Each snapshot is bridged by a recorded diff (Binance's rule: the first diff with
    # u >= lastUpdateId has U <= lastUpdateId), so the file replays through the book sync.
    docs = [orjson.loads(f) for _, f in lines]
    diffs = [x["data"] for x in docs if x.get("stream", "").endswith("@depth@0ms")]
    for d in docs:
        if "lastUpdateId" in d:
            L = d["lastUpdateId"]
            later = [x for x in diffs if x["u"] >= L]
            assert later and later[0]["U"] <= L <= later[0]["u"]


def test_record_refuses_to_overwrite(tmp_path) -> None:
    out = tmp_path / "exists.gz"
    out.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "mmshm", "record", "--symbols", "BTCUSDT", "-o", str(out),
                           "--ws-url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "exists" in proc.stderr
