"""The package builds its native modules and the CLI discovers its commands."""
from __future__ import annotations

import subprocess
import sys

from mmshm.cli import build_parser, main
from mmshm.cli.version import native_modules


def test_native_modules_are_built_and_import() -> None:
    assert "clock" in native_modules()


def test_native_clocks_are_monotonic_and_realtime() -> None:
    import time

    from mmshm._native import clock

    a = clock.monotonic_ns()
    b = clock.monotonic_ns()
    assert 0 < a <= b
    assert abs(clock.realtime_ns() - time.time_ns()) < 5_000_000_000


def test_cli_version_json(capsys) -> None:
    assert main(["version", "--json"]) == 0
    assert '"mmshm"' in capsys.readouterr().out


def test_cli_help_runs_as_a_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mmshm", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "version" in out
    assert build_parser().prog == "mmshm"
