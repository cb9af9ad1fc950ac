"""``--log-format json``: every line a node run writes to stderr is one JSON object.

Real ``swarm-node run`` processes: a short run with stderr on a pipe (systemd, docker), the same on a
terminal (where the live progress display would otherwise draw free text), failures (the CLI's error line),
and Python warnings and uncaught exceptions once JSON logging is on.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.nodeutil import REPO, SWARM_NODE, node_env, write_config

ROUNDS = 3


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Parse every non-empty line; a line that is not a JSON object fails with the line itself."""
    records = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not a JSON line: {line!r}\n--- stderr ---\n{stderr[-3000:]}") from exc
        assert isinstance(record, dict), line
        assert {"ts", "time", "level", "logger", "msg"} <= record.keys(), record
        records.append(record)
    return records


def run_cli(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**node_env(), **(env_extra or {})}
    return subprocess.run(
        [*SWARM_NODE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=180
    )


def test_every_stderr_line_of_a_node_run_is_json(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "node.yaml", tmp_path / "data", {"node": {"rounds": ROUNDS, "name": "json-node"}}
    )
    done = run_cli(["run", "--config", str(config), "--log-format", "json"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""  # logs go to stderr only
    records = json_lines(done.stderr)
    messages = [r["msg"] for r in records]
    assert any(m.startswith("metrics at http://127.0.0.1:") for m in messages), messages
    assert sum(m.startswith("round ") for m in messages) == ROUNDS, messages
    assert messages[-1] == f"stopped at round {ROUNDS}, policy version 0"
    assert {r["node"] for r in records} == {"json-node"}
    assert {r["level"] for r in records} <= {"debug", "info", "warning", "error", "critical"}


def _read_pty(master: int, process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Everything written to the terminal until the process exits and the terminal is drained."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    return out


def test_json_logs_on_a_terminal_have_no_live_display(tmp_path: Path) -> None:
    """progress 'auto' would draw a rich display on a TTY; with JSON logs the rounds are JSON lines instead."""
    config = write_config(
        tmp_path / "node.yaml",
        tmp_path / "data",
        {"node": {"rounds": ROUNDS, "progress": "auto", "metrics_port": -1}},
    )
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*SWARM_NODE, "run", "--config", str(config), "--log-format", "json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=node_env(),
        cwd=REPO,
    )
    os.close(slave)
    try:
        raw = _read_pty(master, process, timeout=180)
        assert process.wait(timeout=30) == 0, raw.decode(errors="replace")[-3000:]
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    text = raw.decode(errors="replace").replace("\r\n", "\n")
    assert "\x1b" not in text, f"terminal control sequences in JSON logs: {text[-2000:]!r}"
    messages = [r["msg"] for r in json_lines(text)]
    assert sum(m.startswith("round ") for m in messages) == ROUNDS, messages


def test_a_failing_run_ends_with_a_json_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path / "node.yaml", blocker / "data", {"node": {"rounds": 1}})
    done = run_cli(["run", "--config", str(config), "--log-format", "json"])
    assert done.returncode == 1, done.stderr
    last = json_lines(done.stderr)[-1]
    assert last["level"] == "error" and "cannot create data directory" in last["msg"], last


def test_a_config_error_is_json_when_the_environment_asks_for_json(tmp_path: Path) -> None:
    """Under systemd/compose (SWARMRL_NODE__LOG_FORMAT=json) even an invalid config logs one JSON line."""
    done = run_cli(
        ["run", "--data-dir", str(tmp_path), "--set", "node.rounds=-3"], {"SWARMRL_NODE__LOG_FORMAT": "json"}
    )
    assert done.returncode == 2, done.stderr
    (record,) = json_lines(done.stderr)
    assert record["level"] == "error" and "node.rounds" in record["msg"], record
    # Text mode keeps the plain one-liner.
    plain = run_cli(["run", "--data-dir", str(tmp_path), "--set", "node.rounds=-3"])
    assert plain.returncode == 2 and plain.stderr.startswith("error: config error at 'node.rounds'")


def test_warnings_and_uncaught_exceptions_are_json_records() -> None:
    code = (
        "import threading, warnings\n"
        "from swarmrl.node.logs import setup_logging\n"
        "setup_logging('json', 'info', 'n1')\n"
        "warnings.warn('careful')\n"
        "def boom():\n"
        "    raise ValueError('in a thread')\n"
        "t = threading.Thread(target=boom, name='worker'); t.start(); t.join()\n"
        "raise RuntimeError('in main')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=node_env(), cwd=REPO, timeout=60
    )
    assert done.returncode == 1
    records = json_lines(done.stderr)
    assert [r["level"] for r in records] == ["warning", "critical", "critical"], records
    assert "careful" in records[0]["msg"]
    assert "thread worker" in records[1]["msg"] and "ValueError: in a thread" in records[1]["exc"]
    assert "main thread" in records[2]["msg"] and "RuntimeError: in main" in records[2]["exc"]
