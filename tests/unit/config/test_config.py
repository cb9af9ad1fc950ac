"""Config validation: field paths and fixes in one line, layering, init output, exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from swarmrl.config import NodeConfig, dump_commented_yaml, load_config
from swarmrl.errors import ConfigError
from tests.nodeutil import run_cli


def _check(tmp_path: Path, data: object) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data))
    return run_cli("config", "check", str(f), timeout=120)


@pytest.mark.parametrize(
    ("data", "field", "fix"),
    [
        ({"trainer": {"lrr": 1}}, "trainer.lrr", "spelling"),
        ({"sampling": {"local_groups": -1}}, "sampling.local_groups", "larger"),
        ({"generation": {"num_completions": -4}}, "generation.num_completions", "larger"),
        ({"model": {"name": "./no/such/model"}}, "model.name", "existing directory"),
        (
            {"rewards": {"modules": [{"name": "exact_match"}, {"name": "nope"}]}},
            "rewards.modules[1].name",
            "use one of",
        ),
        (
            {"tasks": {"sources": [{"source": "arithmetic", "dataset": "division"}]}},
            "tasks.sources[0]",
            "use one of",
        ),
    ],
)
def test_bad_config_exits_2_with_field_path(tmp_path: Path, data: dict, field: str, fix: str) -> None:
    res = _check(tmp_path, data)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert f"'{field}'" in lines[0] and fix in lines[0], lines[0]
    assert "Traceback" not in res.stderr


def test_valid_config_passes_check(tmp_path: Path) -> None:
    res = _check(tmp_path, {"trainer": {"lr": 0.001}})
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_layering_defaults_file_env_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"trainer": {"lr": 0.01, "clip_low": 0.1}, "node": {"seed": 3}}))
    env = {"SWARMRL_TRAINER__LR": "0.02", "SWARMRL_NODE__SEED": "4", "UNRELATED": "x"}
    cfg = load_config(f, env=env, overrides={"node.seed": 5})
    assert cfg.trainer.lr == 0.02  # env beats file
    assert cfg.trainer.clip_low == 0.1  # file beats default
    assert cfg.node.seed == 5  # flags beat env
    assert cfg.trainer.clip_high == 0.28  # default


def test_env_typo_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"SWARMRL_TRAINER__LEARNING_RATE": "1"})
    assert err.value.field == "trainer.learning_rate"


def test_cross_field_validation() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, overrides={"model.tiny.hidden_size": 30, "model.tiny.heads": 4})
    assert err.value.field.startswith("model.tiny")


def test_commented_yaml_round_trips() -> None:
    cfg = NodeConfig()
    text = dump_commented_yaml(cfg)
    assert "# Adam learning rate" in text
    assert NodeConfig.model_validate(yaml.safe_load(text)) == cfg


def test_init_writes_valid_commented_config_and_key(tmp_path: Path) -> None:
    data = tmp_path / "d"
    res = run_cli("init", "--data-dir", str(data), timeout=120)
    assert res.returncode == 0, res.stderr
    cfg_file = data / "node.yaml"
    assert cfg_file.read_text().count("\n# ") + cfg_file.read_text().count("  # ") > 20
    assert load_config(cfg_file, env={}).node.data_dir == data
    key = data / "identity.key"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    again = run_cli("init", "--data-dir", str(data), timeout=120)
    assert again.returncode == 2 and "--force" in again.stderr
