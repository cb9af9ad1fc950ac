"""Every YAML shipped under deploy/ parses, and every node config validates against NodeConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import DEPLOY, REPO

from swarmrl.config import load_config
from swarmrl.config.sections import EMBEDDED_MODEL
from swarmrl.errors import ConfigError

NODE_CONFIGS = sorted((DEPLOY / "configs").glob("*.y*ml"))
ALL_YAML = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), REPO / "docker-compose.yml"])


def test_expected_node_configs_are_shipped() -> None:
    names = {p.name for p in NODE_CONFIGS}
    expected = {"cpu-tiny.yaml", "gpu-qwen.yaml", "private-swarm.yaml"}
    expected |= {f"compose-{n}.yaml" for n in ("bootstrap", "node-a", "node-b")}
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data, f"{path} is empty or not a mapping"


@pytest.mark.parametrize("path", NODE_CONFIGS, ids=lambda p: p.name)
def test_node_config_validates(path: Path) -> None:
    # env={} so that SWARMRL_* variables of the machine running the tests cannot mask a bad file.
    cfg = load_config(path, env={})
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    # The file's sections all reached the model (a typo'd section would have been rejected already).
    assert set(raw) <= set(type(cfg).model_fields)


def test_gpu_config_targets_a_hub_model_on_cuda() -> None:
    cfg = load_config(DEPLOY / "configs" / "gpu-qwen.yaml", env={})
    assert cfg.model.name == "Qwen/Qwen2.5-0.5B-Instruct"
    assert cfg.model.device == "cuda"
    assert cfg.swarm.transport == "libp2p"


def test_cpu_tiny_config_runs_on_cpu_with_the_embedded_model() -> None:
    cfg = load_config(DEPLOY / "configs" / "cpu-tiny.yaml", env={})
    assert cfg.model.name == EMBEDDED_MODEL
    assert cfg.model.device == "cpu"


def test_private_swarm_config_closes_the_swarm() -> None:
    cfg = load_config(DEPLOY / "configs" / "private-swarm.yaml", env={})
    assert cfg.swarm.psk_file is not None
    assert cfg.swarm.admission.allowlist, "a private swarm lists the peer ids it admits"
    assert cfg.swarm.swarm_id != "swarmrl-public"
    assert not cfg.swarm.admission.allow_unverified_tasks


def test_a_broken_copy_of_a_shipped_config_is_rejected(tmp_path: Path) -> None:
    """The validation above has teeth: the same file with one misspelled key fails."""
    text = (DEPLOY / "configs" / "cpu-tiny.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("listen_port:", "listen_prot:", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="listen_prot"):
        load_config(broken, env={})
