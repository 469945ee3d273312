"""The systemd units: `systemd-analyze verify` prints nothing, and the settings the design needs are there."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmshm.config import ROLES, load_config

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
INSTALLED_PYTHON = "/opt/mmshm/venv/bin/python"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (.ci/run installs systemd)")


def parse(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment; systemd allows repeated keys."""
    out, section = [], ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(entries, section: str, key: str) -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


def one(entries, section: str, key: str) -> str:
    found = values(entries, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected once, found {found}"
    return found[0]


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """A copy of systemd/ whose ExecStart points at this interpreter (verify checks it exists)."""
    dst = tmp_path / "units"
    shutil.copytree(UNITS, dst)
    svc = dst / "mmshm@.service"
    text = svc.read_text()
    assert INSTALLED_PYTHON in text
    svc.write_text(text.replace(INSTALLED_PYTHON, os.path.realpath(sys.executable)))
    return dst


def run_quiet(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


@needs_analyze
@pytest.mark.timeout(90)
def test_systemd_analyze_verify_prints_no_warning(unit_dir: Path):
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit_dir}:", SYSTEMD_LOG_COLOR="0")
    units = ["mmshm.target"] + [f"mmshm@{r}.service" for r in ROLES]
    res = run_quiet(["systemd-analyze", "verify", "--man=no", *units], env=env, cwd=unit_dir)
    lines = [x for x in (res.stdout + res.stderr).splitlines() if x.strip()]
    assert res.returncode == 0 and not lines, "systemd-analyze verify:\n" + "\n".join(lines)


@needs_analyze
@pytest.mark.timeout(90)
def test_verify_does_catch_mistakes(unit_dir: Path):
    """Guards the test above: a bad drop-in must make verify print something."""
    (unit_dir / "mmshm@feed.service.d" / "zz-bad.conf").write_text("[Service]\nCPUAfinity=0\n")
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit_dir}:")
    res = run_quiet(["systemd-analyze", "verify", "--man=no", "mmshm@feed.service"], env=env, cwd=unit_dir)
    assert "CPUAfinity" in res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
@pytest.mark.timeout(60)
def test_sysusers_creates_a_system_user(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    res = run_quiet(["systemd-sysusers", f"--root={tmp_path}", str(UNITS / "sysusers.d" / "mmshm.conf")])
    noise = [x for x in res.stderr.splitlines() if x.strip() and not x.startswith("Creating ")]
    assert res.returncode == 0 and not noise, res.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    m = re.search(r"^mmshm:x:(\d+):(\d+):[^:]*:/var/lib/mmshm:(\S+)$", passwd, re.M)
    assert m and int(m.group(1)) < 1000 and m.group(3).endswith("nologin"), passwd


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="creating root/mmshm-owned directories needs root")
@pytest.mark.timeout(60)
def test_tmpfiles_creates_the_directories(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    assert run_quiet(["systemd-sysusers", f"--root={tmp_path}",
                      str(UNITS / "sysusers.d" / "mmshm.conf")]).returncode == 0
    res = run_quiet(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                     str(UNITS / "tmpfiles.d" / "mmshm.conf")])
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    creds = tmp_path / "etc" / "mmshm" / "credentials"
    assert creds.is_dir() and (creds.stat().st_mode & 0o777) == 0o700
    assert (tmp_path / "var" / "lib" / "mmshm").is_dir()
    for name in ("api_key", "api_secret"):  # LoadCredential= sources must exist (may be empty)
        assert (creds / name).is_file() and ((creds / name).stat().st_mode & 0o777) == 0o600


def test_template_has_the_settings_the_design_needs():
    e = parse(UNITS / "mmshm@.service")
    s = "Service"
    assert one(e, s, "Type") == "notify"
    assert one(e, s, "NotifyAccess") == "main"
    assert one(e, s, "ExecStart") == f"{INSTALLED_PYTHON} -m mmshm.procs.%i"
    assert one(e, s, "Restart") == "on-failure"
    assert one(e, s, "KillMode") == "mixed"
    assert one(e, s, "WatchdogSec").endswith("s")
    assert one(e, s, "RestartSec")
    # long enough for the executor's verified cancel-all
    stop_s = int(one(e, s, "TimeoutStopSec").rstrip("s"))
    assert stop_s > load_config(env={}).executor.cancel_all_timeout_s * 2
    assert one(e, s, "User") == "mmshm"
    assert not values(e, s, "DynamicUser")
    assert one(e, s, "RemoveIPC") == "no"
    # hardening that keeps /dev/shm shared between the roles
    assert one(e, s, "ProtectSystem") == "strict"
    assert one(e, s, "ProtectHome") == "yes"
    assert one(e, s, "PrivateTmp") == "yes"
    assert one(e, s, "NoNewPrivileges") == "yes"
    assert one(e, s, "PrivateDevices") == "no"
    assert one(e, s, "PrivateIPC") == "no"
    assert "/dev/shm" in one(e, s, "ReadWritePaths").split()
    creds = {v.split(":")[0] for v in values(e, s, "LoadCredential")}
    assert creds == {"api_key", "api_secret"}
    assert one(e, s, "EnvironmentFile").startswith("-")
    assert one(e, "Unit", "PartOf") == "mmshm.target"


def test_target_wants_every_role():
    e = parse(UNITS / "mmshm.target")
    wanted = {w for v in values(e, "Unit", "Wants") for w in v.split()}
    assert {f"mmshm@{r}.service" for r in ROLES} <= wanted


def test_dropins_pin_like_the_default_config():
    """The systemd CPUAffinity of each role equals [cpus] of the built-in defaults."""
    cfg = load_config(env={})
    for role in ROLES:
        conf = UNITS / f"mmshm@{role}.service.d" / "cpu.conf"
        assert conf.exists(), f"missing drop-in {conf}"
        aff = one(parse(conf), "Service", "CPUAffinity")
        expected = cfg.role_cpu(role)
        assert aff == ("" if expected is None else str(expected)), role


def test_executor_stops_before_what_it_relies_on():
    """Stop order is the reverse of start order: the executor (cancel-all) must be After= these."""
    e = parse(UNITS / "mmshm@executor.service.d" / "order.conf")
    after = {w for v in values(e, "Unit", "After") for w in v.split()}
    assert {"mmshm@feed.service", "mmshm@risk.service", "mmshm@watchdog.service"} <= after
    rec = parse(UNITS / "mmshm@recorder.service.d" / "order.conf")
    assert "mmshm@executor.service" in one(rec, "Unit", "Before")
