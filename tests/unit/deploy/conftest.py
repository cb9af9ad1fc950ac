"""Shared fixtures of the deployment-file tests: repository paths, parsed compose file, and the metric names
exported by a real running node (``running_node``: a ``swarm-node run`` process scraped over loopback)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.nodeutil import METRICS_RE, metric_value, scrape, start_node, wait_for, write_config

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
NODE_SERVICES = ("bootstrap", "node-a", "node-b")

# Sample names a Prometheus scrape yields for each metric type (a family may have no samples yet).
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "gauge": ("",),
    "unknown": ("",),
}


def exported_sample_names(exposition: str) -> set[str]:
    """Every series name a scrape of ``exposition`` can produce, including families without samples yet.

    A labelled metric that was never touched shows only its HELP/TYPE lines, so names come from both the
    samples present and the metric type (counter ``x`` -> ``x_total``; histogram -> ``_bucket/_count/_sum``).
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


@dataclass
class RunningNode:
    """A real ``swarm-node run`` process with its /metrics endpoint on a free loopback port."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def scrape(self) -> str:
        if self.process.poll() is not None:
            raise AssertionError(f"the node exited with {self.process.returncode}:\n{self.log_tail()}")
        return scrape(self.url)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def stop_node(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the node checkpoints and exits), then SIGKILL if it does not within 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A real node (tiny FAST model, no swarm) that runs until the module's tests are done."""
    work = tmp_path_factory.mktemp("deploy-node")
    config = write_config(
        work / "node.yaml",
        work / "data",
        {"node": {"rounds": 0, "metrics_port": 0, "checkpoint_every": 20, "record_rollouts": False}},
    )
    log = work / "node.log"
    process = start_node(["run", "--config", str(config)], log)

    def announced_url() -> str | None:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"the node exited with {process.returncode} before serving /metrics:\n{tail}"
            )
        match = METRICS_RE.search(log.read_text(errors="replace")) if log.exists() else None
        return match.group(1) if match else None

    try:
        yield RunningNode(process, str(wait_for(announced_url, 120, "the node's /metrics address")), log)
    finally:
        stop_node(process)


@pytest.fixture(scope="module")
def node_exposition(running_node: RunningNode) -> str:
    """The /metrics text of the running node once it has finished a round (per-round metrics are set)."""

    def after_first_round() -> str | None:
        text = running_node.scrape()
        return text if (metric_value(text, "swarmrl_round") or 0) >= 1 else None

    return str(wait_for(after_first_round, 120, "the node's first round"))


@pytest.fixture(scope="module")
def exported_names(node_exposition: str) -> set[str]:
    names = exported_sample_names(node_exposition)
    if not any(name.startswith("swarmrl_") for name in names):
        pytest.fail("the node exposition exports no swarmrl_* metric: the source of names is broken")
    return names


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def debian_binary(name: str) -> str:
    """Path of a Debian-packaged tool at /usr/bin, or skip the test with the package to install."""
    path = Path("/usr/bin") / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.skip(f"{name} not installed: apt-get install -y prometheus (Debian package)")
