"""run_program: the entry-point shape of every process program (exit codes, logging)."""
from __future__ import annotations

import argparse

import pytest

from mmshm.agent.program import EXIT_USAGE, run_program
from mmshm.config import add_config_arguments


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="test")
    add_config_arguments(p)
    return p


def test_body_exit_code_passes_through_with_the_loaded_config() -> None:
    seen = {}

    def body(args, cfg) -> int:
        seen["instance"] = cfg.instance
        return 7

    assert run_program("feed", parser(), ["--set", "instance=abc"], body) == 7
    assert seen["instance"] == "abc"


def test_bad_config_is_exit_2_naming_the_role_and_the_key(capsys) -> None:
    def body(args, cfg) -> int:  # pragma: no cover - must not run
        raise AssertionError("body ran with a bad config")

    assert run_program("quoter", parser(), ["--set", "quoter.nonsense=1"], body) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("quoter: ") and "quoter.nonsense" in err


def test_declared_usage_errors_are_exit_2_others_propagate(capsys) -> None:
    def refuses(args, cfg) -> int:
        raise ValueError("paper mode needs venue.sim_port")

    assert run_program("executor", parser(), [], refuses, usage_errors=(ValueError,)) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "executor: paper mode needs venue.sim_port"

    def crashes(args, cfg) -> int:
        raise RuntimeError("a bug, not a usage problem")

    with pytest.raises(RuntimeError):
        run_program("executor", parser(), [], crashes, usage_errors=(ValueError,))
