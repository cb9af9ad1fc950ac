"""deploy/systemd/swarm-node.service: systemd accepts it, and it restarts with back-off and is hardened."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DEPLOY

UNIT = DEPLOY / "systemd" / "swarm-node.service"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def _exec_start() -> list[str]:
    return shlex.split(_unit()["Service"]["ExecStart"])


def _verify(unit_text: str, tmp_path: Path) -> str:
    """Run `systemd-analyze verify` on a copy whose ExecStart binary exists (verify checks that), return output."""
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not Path(analyze).is_file():
        pytest.skip("systemd-analyze not installed (Debian package: systemd); the key checks below still run")
    stub = tmp_path / "swarm-node"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    unit = tmp_path / "swarm-node.service"
    unit.write_text(unit_text.replace(_exec_start()[0], str(stub)), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    return (result.stdout + result.stderr).strip() + (
        "" if result.returncode == 0 else f"\nrc={result.returncode}"
    )


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify exits 0 even for unknown keys and bad values; it only warns. So: no output at all.
    output = _verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert output == "", output


def test_systemd_analyze_verify_would_catch_a_bad_key(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8").replace(
        "NoNewPrivileges=yes", "NoNewPrivileges=maybe\nRestartz=1"
    )
    output = _verify(text, tmp_path)
    assert "maybe" in output and "Restartz" in output


def test_restart_policy_has_back_off() -> None:
    unit = _unit()
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"].rstrip("s").isdigit() and int(service["RestartSec"].rstrip("s")) >= 5
    assert int(unit["Unit"]["StartLimitBurst"]) >= 1
    assert int(unit["Unit"]["StartLimitIntervalSec"]) > 0
    assert int(service["TimeoutStopSec"]) >= 30, "leave time for the final checkpoint on stop"


def test_hardening() -> None:
    service = _unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert service["User"] not in {"root", "0"} and service["Group"] not in {"root", "0"}
    assert "DynamicUser" not in service, "a dedicated, stable user owns the state directory"


def test_data_dir_is_the_only_writable_path_and_is_owned_by_the_service() -> None:
    service = _unit()["Service"]
    argv = _exec_start()
    assert argv[0].endswith("/swarm-node") and argv[1] == "run"
    data_dir = argv[argv.index("--data-dir") + 1]
    assert service["ReadWritePaths"].split() == [data_dir]
    assert data_dir == f"/var/lib/{service['StateDirectory']}"
    assert "--config" in argv and "--metrics-port" in argv


def test_sysusers_entry_creates_the_unit_user() -> None:
    lines = [
        line.split()
        for line in (DEPLOY / "systemd" / "swarmrl.sysusers.conf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and lines[0][0] == "u" and lines[0][1] == _unit()["Service"]["User"]
