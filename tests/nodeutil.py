"""Helpers for tests that run real node processes: small fast configs, waiting on conditions, scraping."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from swarmrl.node.node import Node

REPO = Path(__file__).resolve().parents[1]
SWARM_NODE = [sys.executable, "-m", "swarmrl.cli"]

#: A config small enough for a round in well under a second on 2 busy cores, still a real model.
FAST: dict[str, Any] = {
    "node": {"eval_every": 0, "threads": 1, "checkpoint_every": 1, "metrics_port": 0, "progress": "plain"},
    "model": {
        "tiny": {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64, "warmstart_steps": 20}
    },
    "generation": {"num_completions": 4, "max_new_tokens": 4},
    "sampling": {"local_groups": 2, "external_groups": 0},
    "tasks": {"eval_questions": 8},
    "swarm": {"transport": "none"},
    # Synchronous rounds (one process per node, exact round counts after a kill); the overlapped default
    # (a generation child process) has its own tests: test_overlap.py.
    "trainer": {"max_staleness": 0},
}


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(path: Path, data_dir: Path, extra: dict[str, Any] | None = None) -> Path:
    cfg = deep_merge(FAST, {"node": {"data_dir": str(data_dir)}})
    cfg = deep_merge(cfg, extra or {})
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMRL_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``swarm-node ARGS`` to completion in a subprocess (clean SWARMRL_* environment), capturing text."""
    return subprocess.run(
        [*SWARM_NODE, *args], capture_output=True, text=True, env=node_env(), cwd=REPO, timeout=timeout
    )


def start_node(
    args: list[str], log_path: Path, new_session: bool = False, nofile: int | None = None
) -> subprocess.Popen[bytes]:
    """``new_session``: the node leads its own process group (signal it and its children with killpg).
    ``nofile``: the node's soft open-file limit (``ulimit -n``)."""
    fh = open(log_path, "ab")  # noqa: SIM115 - owned by the process

    def limit_fds() -> None:
        if nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    return subprocess.Popen(
        [*SWARM_NODE, *args],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=node_env(),
        cwd=REPO,
        start_new_session=new_session,
        preexec_fn=limit_fds if nofile is not None else None,
    )


METRICS_RE = re.compile(r"metrics at (http://[\d.]+:\d+/metrics)")


def metrics_url(log_path: Path, timeout: float = 120.0) -> str:
    def find() -> str | None:
        m = METRICS_RE.search(log_path.read_text(errors="replace")) if log_path.exists() else None
        return m.group(1) if m else None

    return str(wait_for(find, timeout, f"metrics endpoint in {log_path}"))


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def metric_value(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)}\s+([-+0-9.eEinfa]+)$", re.M)
    m = pattern.search(text)
    return float(m.group(1)) if m else None


async def score_one_round(node: Node) -> list[Any]:
    """Start ``node``, generate and score one round of its own groups (1 question, 2 completions), close it;
    the scored groups."""
    await node.start()
    try:
        groups, tasks, _, _ = await asyncio.to_thread(node.generate_local, 1, 2)
        _, scored = await asyncio.to_thread(node.score, groups, list(tasks))
        return scored
    finally:
        await node.close()
