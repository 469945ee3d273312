"""Logging: JSON lines, structured fields, masking, never blocking the caller."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading

import orjson
import pytest

from mmshm import log as L
from mmshm.config import load_config, load_credentials


@pytest.fixture
def captured():
    buf = io.StringIO()
    L.setup_logging("quoter", "DEBUG", stream=buf)
    yield buf
    L.shutdown_logging()


def lines(buf: io.StringIO) -> list[dict]:
    L.shutdown_logging()  # drains the queue
    return [orjson.loads(x) for x in buf.getvalue().splitlines()]


def test_one_json_object_per_line_with_standard_fields(captured):
    logging.getLogger("mmshm.test").info("hello %s", "world", extra={"order_id": 7, "px": 1.5})
    logging.getLogger("aiohttp.client").warning("third-party too")
    out = lines(captured)
    assert len(out) == 2
    rec = out[0]
    assert rec["msg"] == "hello world" and rec["level"] == "INFO" and rec["logger"] == "mmshm.test"
    assert rec["role"] == "quoter" and rec["pid"] == os.getpid()
    assert rec["order_id"] == 7 and rec["px"] == 1.5
    assert rec["ts"].endswith("+00:00") and isinstance(rec["ts_ns"], int)
    assert out[1]["logger"] == "aiohttp.client"


def test_level_filters(captured):
    L.setup_logging("risk", "WARNING", stream=captured)
    logging.getLogger("mmshm").info("hidden")
    logging.getLogger("mmshm").error("shown")
    assert [r["msg"] for r in lines(captured)] == ["shown"]


def test_exception_is_logged(captured):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("mmshm").exception("failed")
    rec = lines(captured)[0]
    assert "ValueError: boom" in rec["exc"]


def test_secret_fields_and_registered_values_are_masked(captured):
    L.register_secret("SuperSecretValue123")
    logging.getLogger("mmshm").info(
        "signed with SuperSecretValue123",
        extra={"api_key": "AKEYabcdefghijklmnopWXYZ", "signature": "f00dfeedbeefcafe0123",
               "listenKey": "LKabcdefghijkl99", "params": {"password": "hunter2hunter2", "qty": 3},
               "note": "contains SuperSecretValue123 inside", "key_count": 3})
    rec = lines(captured)[0]
    assert rec["api_key"] == "AKEY...WXYZ"
    assert rec["signature"] == "f00d...0123"
    assert rec["listenKey"] == "LKab...kl99"
    assert rec["params"] == {"password": "hunt...ter2", "qty": 3}
    assert "SuperSecretValue123" not in orjson.dumps(rec).decode()
    assert rec["msg"] == "signed with Supe...e123"
    assert rec["key_count"] == 3  # numbers are not secrets


def test_credentials_loaded_are_never_logged(captured, tmp_path):
    (tmp_path / "api_key").write_text("K" * 8 + "credential-key-1")
    (tmp_path / "api_secret").write_text("S" * 8 + "credential-sec-2")
    creds = load_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    logging.getLogger("mmshm").info("creds %s raw %s", creds, creds.api_secret)
    text = orjson.dumps(lines(captured)).decode()
    assert "credential-sec-2" not in text and "credential-key-1" not in text


def test_mask_shapes():
    assert L.mask("abcdefghijklwxyz") == "abcd...wxyz"
    assert L.mask("short") == "****"
    assert L.mask(None) == "<unset>"


def test_full_queue_drops_and_counts_instead_of_blocking():
    gate = threading.Event()

    class Slow(io.StringIO):
        def write(self, s):  # the sink stalls until released: a stuck journald pipe
            gate.wait(10)
            return super().write(s)

    sink = Slow()
    L.setup_logging("feed", "INFO", stream=sink, queue_size=16)
    log = logging.getLogger("mmshm")
    for i in range(200):
        log.info("m %d", i)  # must return although nothing is being written
    dropped = L.dropped_records()
    assert dropped > 0
    gate.set()
    L.shutdown_logging()
    written = sink.getvalue().splitlines()
    assert len(written) + dropped == 200  # every record either written or counted as dropped


def test_file_output_and_config_glue(tmp_path):
    path = tmp_path / "mmshm.log"
    cfg = load_config(cli_overrides=[f"logging.file={path}", "logging.level=DEBUG"], env={})
    L.setup_logging_from_config("executor", cfg)
    logging.getLogger("mmshm.x").debug("to file", extra={"n": 1})
    L.shutdown_logging()
    rec = orjson.loads(path.read_text().splitlines()[0])
    assert rec["msg"] == "to file" and rec["role"] == "executor" and rec["n"] == 1


@pytest.mark.timeout(30)
def test_exit_flushes_queued_lines():
    code = ("import logging; from mmshm.log import setup_logging; setup_logging('risk');"
            "[logging.getLogger('mmshm').info('line %d', i) for i in range(50)]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    rows = [orjson.loads(x) for x in out.stdout.splitlines()]
    assert [r["msg"] for r in rows] == [f"line {i}" for i in range(50)]
