"""The real Prometheus server (Debian package) scrapes a real running node and answers queries about it.

The target is a ``swarm-node run`` process (tiny FAST model, no swarm, ``node.rounds: 0`` so it runs until
stopped) serving /metrics on a free loopback port; one node and one Prometheus serve every test of this
module and are terminated at its end. The same Prometheus also loads the shipped rules.yml and runs every
query of the shipped Grafana dashboard, so a PromQL error in either fails here.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.nodeutil import metric_value, metrics_url, scrape, start_node, write_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS = Path("/usr/bin/prometheus")
LOCAL_GROUPS = 2  # sampling.local_groups of the FAST config; no swarm, so every trained group is local
TIMEOUT_S = 45.0


@dataclass
class Target:
    process: subprocess.Popen[bytes]
    url: str  # http://host:port/metrics
    address: str  # host:port of /metrics
    log: Path

    def round(self) -> float:
        """The node's round, read from its own /metrics (not through Prometheus)."""
        if self.process.poll() is not None:
            pytest.fail(f"the node exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        value = metric_value(scrape(self.url), "swarmrl_round")
        assert value is not None, "the node exports no swarmrl_round"
        return value


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", query=expr)
        result = data["result"]
        assert isinstance(result, list)
        return result


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT_S) -> Any:
    """Poll until ``condition()`` is truthy (exceptions count as not yet); fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # not up yet, connection refused, ...
            last_error = exc
        else:
            if value:
                return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if not PROMETHEUS.is_file():  # checked first: no node is started for nothing
        pytest.skip("Prometheus not installed at /usr/bin/prometheus: apt-get install -y prometheus")
    work = tmp_path_factory.mktemp("scraped-node")
    config = write_config(
        work / "node.yaml",
        work / "data",
        {"node": {"rounds": 0, "metrics_port": 0, "checkpoint_every": 20, "record_rollouts": False}},
    )
    log = work / "node.log"
    process = start_node(["run", "--config", str(config)], log)
    try:
        url = metrics_url(log, timeout=120)
        target = Target(process, url, urllib.parse.urlsplit(url).netloc, log)
        _wait_for(lambda: target.round() >= 1, "the node's first round", timeout=120)
        yield target
    finally:
        process.terminate()  # the node finishes its round, checkpoints and exits
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    if not PROMETHEUS.is_file():
        pytest.skip("Prometheus not installed at /usr/bin/prometheus: apt-get install -y prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    shutil.copy(DEPLOY / "prometheus" / "rules.yml", workdir / "rules.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {
                "job_name": "swarm-nodes",
                "scrape_interval": "1s",
                "scrape_timeout": "900ms",
                "static_configs": [{"targets": [target.address], "labels": {"node": "under-test"}}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = (workdir / "prometheus.log").open("wb")
    for _attempt in range(3):  # the free port can be taken between probing and binding
        port = _free_port()
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        prom = Prometheus(f"http://127.0.0.1:{port}", process)

        def ready(prom: Prometheus = prom) -> bool:
            if prom.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {prom.process.returncode}")
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if ready():
                    break
            except Exception:
                time.sleep(0.2)
        if process.poll() is None:
            break
    else:
        log.close()
        pytest.fail(
            "prometheus did not start:\n" + (workdir / "prometheus.log").read_text(errors="replace")[-3000:]
        )
    try:
        _wait_for(ready, "Prometheus /-/ready")
        yield prom
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


def _round_value(prom: Prometheus) -> float | None:
    result = prom.query('swarmrl_round{job="swarm-nodes"}')
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_round(prometheus: Prometheus, target: Target) -> None:
    seen = _wait_for(lambda: _round_value(prometheus), "swarmrl_round through Prometheus")
    assert seen >= 1
    up = prometheus.query('up{job="swarm-nodes"}')
    assert [float(s["value"][1]) for s in up] == [1.0]
    assert up[0]["metric"]["instance"] == target.address
    node_up = prometheus.query('swarmrl_up{job="swarm-nodes"}')
    assert [float(s["value"][1]) for s in node_up] == [1.0]
    # A live value, not a cached one: Prometheus follows the node past the round it reports now.
    now = target.round()
    _wait_for(lambda: (_round_value(prometheus) or 0) > now, f"swarmrl_round > {now:.0f} through Prometheus")


def test_labelled_metrics_arrive_with_their_labels(prometheus: Prometheus) -> None:
    # Groups trained so far = LOCAL_GROUPS per finished round; one query, so both come from one scrape
    # (the node may be between updating the round and the counter: off by one round at most).
    diff = _wait_for(
        lambda: prometheus.query(
            f'swarmrl_train_groups_total{{origin="local"}} - on (instance) {LOCAL_GROUPS} * swarmrl_round'
        ),
        "train groups vs rounds",
    )
    assert abs(float(diff[0]["value"][1])) <= LOCAL_GROUPS
    external = prometheus.query('swarmrl_train_groups_total{origin="external"}')
    assert [float(s["value"][1]) for s in external] == [0.0]  # no swarm: nothing from peers
    rewards = _wait_for(lambda: prometheus.query("swarmrl_reward_mean"), "reward_mean series")
    by_module = {s["metric"]["module"]: float(s["value"][1]) for s in rewards}
    assert "total" in by_module and len(by_module) >= 2, by_module  # the total and each module
    assert all(0.0 <= v <= 1.0 for v in by_module.values()), by_module


def _rules_evaluated(prom: Prometheus) -> list[dict[str, Any]] | None:
    groups = prom.api("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    if not rules or any(rule.get("health") == "unknown" for rule in rules):
        return None
    return rules


def test_shipped_rules_load_and_evaluate_without_errors(prometheus: Prometheus) -> None:
    rules = _wait_for(lambda: _rules_evaluated(prometheus), "every rule evaluated once")
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    expected = sum(len(g["rules"]) for g in shipped["groups"])
    assert len(rules) == expected
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken, broken
    # Recording rules compute over the scraped series.
    avg = _wait_for(lambda: prometheus.query("swarmrl:reward_mean_total:avg"), "recorded swarm reward")
    assert 0.0 <= float(avg[0]["value"][1]) <= 1.0
    age = _wait_for(lambda: prometheus.query("swarmrl:checkpoint_age_seconds"), "recorded checkpoint age")
    assert 0.0 <= float(age[0]["value"][1]) < TIMEOUT_S + 120  # the node checkpoints every 20 rounds


def test_every_dashboard_query_runs(prometheus: Prometheus) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "swarm.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    _wait_for(lambda: _round_value(prometheus) is not None, "first scrape")
    for expr in exprs:
        concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        prometheus.query(concrete)  # raises on a PromQL error (HTTP 400)
    # The node filter selects the scraped node.
    assert prometheus.query('swarmrl_round{instance=~".*"}')
