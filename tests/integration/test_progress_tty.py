"""On a terminal a bounded run draws a progress bar (count, rate, ETA) and ends with the run summary (a real
``swarm-node run`` on a pty). Plain lines on a pipe: test_tracking.py's run checks them."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

from tests.integration.test_logs_json import _read_pty
from tests.nodeutil import REPO, SWARM_NODE, node_env, write_config

ROUNDS = 3


def test_terminal_run_draws_a_bar_and_ends_with_the_summary(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "node.yaml", data, {"node": {"rounds": ROUNDS, "progress": "auto", "metrics_port": -1}}
    )
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*SWARM_NODE, "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**node_env(), "COLUMNS": "220"},
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
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode(errors="replace")).replace("\r\n", "\n")
    assert f"{ROUNDS}/{ROUNDS}" in text and " r/s " in text and "eta" in text, text[-3000:]
    assert "progress.py" not in text and "starting" not in text
    assert f"run summary: rounds 1-{ROUNDS} ({ROUNDS} in this run)" in text
    assert f"export it: swarm-node export --data-dir {data}" in text.replace("\n", "")
    # every log line starts on a line of its own (never glued to the bar)
    for line in text.replace("\r", "\n").splitlines():
        assert line.count("INFO") <= 1, line
