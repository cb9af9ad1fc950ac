"""docker-compose.yml is consistent with the files, ports and services it names (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEPLOY, NODE_SERVICES, REPO
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from swarmrl.config import NodeConfig, load_config
from swarmrl.protocol.peerid import peer_id_bytes, to_text

NODE_CONFIG_TARGET = "/etc/swarmrl/node.yaml"


def _binds(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (resolved) of the service's bind mounts ('./x:/y[:ro]')."""
    out: dict[str, Path] = {}
    for spec in service.get("volumes", []):
        source, target = str(spec).split(":")[:2]
        if source.startswith(("./", "/", "../")):
            out[target] = (REPO / source).resolve()
    return out


def _named_volumes(service: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in service.get("volumes", []):
        source, target = str(spec).split(":")[:2]
        if not source.startswith(("./", "/", "../")):
            out[target] = source
    return out


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def _node_config(compose: dict[str, Any], service: str) -> NodeConfig:
    host_path = _binds(compose["services"][service])[NODE_CONFIG_TARGET]
    return load_config(host_path, env={})


def _prometheus_config(compose: dict[str, Any]) -> dict[str, Any]:
    binds = _binds(compose["services"]["prometheus"])
    data = yaml.safe_load(binds["/etc/prometheus/prometheus.yml"].read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*NODE_SERVICES, "prometheus", "grafana"}


def test_every_bind_mount_source_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _binds(service).items():
            assert source.exists(), f"service {name}: {source} (mounted at {target}) does not exist"
            assert REPO in source.parents, f"service {name}: {source} is outside the repository"


def test_named_volumes_and_networks_are_declared_and_used(compose: dict[str, Any]) -> None:
    used_volumes = {v for s in compose["services"].values() for v in _named_volumes(s).values()}
    assert used_volumes == set(compose.get("volumes", {})), "declared volumes and used volumes differ"
    used_networks = {n for s in compose["services"].values() for n in s.get("networks", [])}
    assert used_networks == set(compose.get("networks", {}))
    assert all(s.get("networks") for s in compose["services"].values()), "every service joins the network"


def test_build_context_and_dockerfile_exist(compose: dict[str, Any]) -> None:
    for name in NODE_SERVICES:
        build = compose["services"][name]["build"]
        context = (REPO / build["context"]).resolve()
        assert context == REPO
        assert (context / build["dockerfile"]).is_file()
        assert compose["services"][name]["image"] == compose["services"]["bootstrap"]["image"]


@pytest.mark.parametrize("service", NODE_SERVICES)
def test_node_flags_match_its_config(compose: dict[str, Any], service: str) -> None:
    svc = compose["services"][service]
    command = [str(c) for c in svc["command"]]
    assert command[0] == "run"
    assert _flag(command, "--config") == NODE_CONFIG_TARGET
    cfg = _node_config(compose, service)
    assert int(_flag(command, "--metrics-port")) == cfg.node.metrics_port
    assert cfg.node.metrics_host == "0.0.0.0", "inside a container /metrics must listen on all interfaces"
    data_dir = _flag(command, "--data-dir")
    assert str(cfg.node.data_dir) == data_dir
    assert _named_volumes(svc).get(data_dir), f"{service}: {data_dir} is not on a named volume"
    assert cfg.node.name == service, "node.name is the service name (logs and dashboards)"
    assert cfg.swarm.transport == "libp2p"
    assert cfg.swarm.listen_host == "0.0.0.0"
    # Published ports point at the container's metrics port.
    for mapping in svc.get("ports", []):
        container_port = int(str(mapping).rsplit(":", 1)[1])
        assert container_port in {cfg.node.metrics_port, cfg.swarm.listen_port}


def test_nodes_share_one_swarm_and_node_b_differs_in_architecture(compose: dict[str, Any]) -> None:
    cfgs = {s: _node_config(compose, s) for s in NODE_SERVICES}
    assert len({c.swarm.swarm_id for c in cfgs.values()}) == 1
    assert len({c.tasks.seed for c in cfgs.values()}) == 1, "peers regenerate tasks from the shared seed"
    assert cfgs["node-b"].model.tiny != cfgs["bootstrap"].model.tiny
    assert len({c.node.seed for c in cfgs.values()}) == len(cfgs), "nodes explore with different seeds"


def _bootstrap_peer_id(compose: dict[str, Any]) -> str:
    pem = _binds(compose["services"]["bootstrap"])["/etc/swarmrl/identity.pem"].read_bytes()
    key = load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey), "libp2p identities are ed25519"
    return to_text(peer_id_bytes(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)))


def test_joining_nodes_dial_the_bootstrap_service(compose: dict[str, Any]) -> None:
    boot = _node_config(compose, "bootstrap")
    assert not boot.swarm.bootstrap_peers
    expected = f"/dns4/bootstrap/tcp/{boot.swarm.listen_port}/p2p/{_bootstrap_peer_id(compose)}"
    for service in ("node-a", "node-b"):
        assert _node_config(compose, service).swarm.bootstrap_peers == [expected]
        assert "bootstrap" in compose["services"][service]["depends_on"]


def test_bootstrap_identity_is_installed_where_the_config_reads_it(compose: dict[str, Any]) -> None:
    svc = compose["services"]["bootstrap"]
    script = " ".join(str(part) for part in svc["entrypoint"])
    cfg = _node_config(compose, "bootstrap")
    assert f"/etc/swarmrl/identity.pem {cfg.node.data_dir}/{cfg.swarm.identity_file}" in script
    assert "-m 0600" in script and "exec swarm-node" in script


def test_prometheus_scrapes_every_node(compose: dict[str, Any]) -> None:
    prom = _prometheus_config(compose)
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    targets = {t for sc in jobs["swarm-nodes"]["static_configs"] for t in sc["targets"]}
    expected = {f"{s}:{_node_config(compose, s).node.metrics_port}" for s in NODE_SERVICES}
    assert targets == expected
    assert jobs["swarm-nodes"].get("metrics_path", "/metrics") == "/metrics"
    # rule_files are relative to the config; the same names must be mounted next to it in the container.
    binds = _binds(compose["services"]["prometheus"])
    for rule_file in prom["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in binds
        assert (DEPLOY / "prometheus" / rule_file).is_file()


def test_grafana_provisioning_is_wired(compose: dict[str, Any]) -> None:
    svc = compose["services"]["grafana"]
    binds = _binds(svc)
    provisioning = binds["/etc/grafana/provisioning"]
    datasources = [
        ds
        for f in sorted((provisioning / "datasources").glob("*.y*ml"))
        for ds in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]
    ]
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]
    ]
    assert len(datasources) == 1 and len(providers) == 1
    url = datasources[0]["url"]
    match = re.fullmatch(r"http://([\w-]+):(\d+)/?", url)
    assert match, url
    assert match.group(1) in compose["services"], f"datasource host {match.group(1)} is not a service"
    assert f":{match.group(2)}" in " ".join(compose["services"]["prometheus"]["ports"])
    # The provider's path is where the dashboards directory is mounted, and it holds the swarm dashboard.
    dashboards_dir = binds[providers[0]["options"]["path"]]
    assert (dashboards_dir / "swarm.json").is_file()
    home = svc["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == providers[0]["options"]["path"] + "/swarm.json"
    # Panels reference the provisioned datasource by uid.
    dashboard_text = (dashboards_dir / "swarm.json").read_text(encoding="utf-8")
    assert f'"uid": "{datasources[0]["uid"]}"' in dashboard_text


def test_host_ports_are_unique_and_loopback_where_not_meant_public(compose: dict[str, Any]) -> None:
    published: list[str] = []
    for name, svc in compose["services"].items():
        for mapping in svc.get("ports", []):
            parts = str(mapping).split(":")
            host_port = parts[-2]
            published.append(host_port)
            if name != "bootstrap" or parts[-1] != "4001":
                assert parts[0] == "127.0.0.1", f"{name}: {mapping} should bind 127.0.0.1 only"
    assert len(published) == len(set(published)), f"host ports collide: {published}"


def test_dockerfile_exposes_the_ports_the_configs_use(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / compose["services"]["bootstrap"]["build"]["dockerfile"]).read_text(encoding="utf-8")
    exposed = {
        int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]
    }
    for service in NODE_SERVICES:
        cfg = _node_config(compose, service)
        assert {cfg.node.metrics_port, cfg.swarm.listen_port} <= exposed
