"""Issue 15: every registered reward module (``swarm-node rewards list``) either scores in a real node round or
its config is refused by validation, with one line naming the module and what is missing.

One in-process node per module with the smallest settings (one round's generation and scoring of two groups);
the warm-started embedded model is built once per test module and shared by symlink.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.node.node import Node
from swarmrl.node.validate import check_semantics
from swarmrl.rewards.registry import available
from tests.nodeutil import FAST, deep_merge, run_cli, score_one_round, write_config

SMALL: dict[str, Any] = {
    "node": {"metrics_port": -1, "control_port": -1, "rounds": 1},
    "generation": {"num_completions": 3, "max_new_tokens": 4},
    "sampling": {"local_groups": 1},
}
#: Module parameters that are not about inputs: smaller sampling knobs for speed, and VeriFree without its
#: ``</think>`` marker (the embedded model writes no think block, so every answer would be "missing"; that is
#: the model's output format, not an input the node could provide).
PARAMS: dict[str, dict[str, Any]] = {
    "progress_mc": {"n": 2},
    "mrt_progress": {"n": 2},
    "slate": {"siblings": 2},
    "verifree": {"mode": "p", "require_marker": False, "split_marker": ""},
}


def _config(data_dir: Path, name: str, shared: Path) -> NodeConfig:
    models = data_dir / "models"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not models.exists():
        models.symlink_to(shared, target_is_directory=True)
    spec = {"name": name, "weight": 1.0, "params": PARAMS.get(name, {})}
    raw = deep_merge(FAST, deep_merge(SMALL, {"node": {"data_dir": str(data_dir)}}))
    raw = deep_merge(raw, {"rewards": {"modules": [spec], "report": []}})
    return NodeConfig.model_validate(raw)


@pytest.fixture(scope="module")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model, warm-started once for every module of this file."""
    shared = tmp_path_factory.mktemp("models")
    node = Node(_config(tmp_path_factory.mktemp("warm"), "exact_match", shared))
    node.assemble()
    asyncio.run(node.close())
    assert any(shared.iterdir())
    return shared


@pytest.mark.parametrize("name", available())
def test_module_scores_in_a_node_round_or_is_refused(name: str, tmp_path: Path, shared_models: Path) -> None:
    cfg = _config(tmp_path, name, shared_models)
    try:
        check_semantics(cfg)
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text and exc.field.startswith("rewards")
        assert name in text or exc.field.endswith(".params"), text
        assert "fix:" in text or exc.field.endswith(".params"), text
        return
    scored = asyncio.run(score_one_round(Node(cfg)))
    values = [v for sg in scored for v in sg.modules[name]]
    assert values and any(v is not None for v in values), f"{name} scored nothing: {values}"
    assert all(v is None or math.isfinite(v) for v in values)


def test_config_check_refuses_a_module_whose_inputs_cannot_arrive(tmp_path: Path) -> None:
    extra = {"rewards": {"modules": [{"name": "column", "params": {"key": "rm_score"}}], "report": []}}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "data", extra)
    res = run_cli("config", "check", str(cfg))
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert "rewards.modules[0]" in line and "'column'" in line and "Sample.extras['rm_score']" in line
    assert "fix:" in line and "Task.columns" in line
    # an alias whose default sub-module reads per-step scores nobody writes
    nested = {"rewards": {"modules": [{"name": "exact_match"}, {"name": "prm_delta"}], "report": []}}
    res = run_cli("config", "check", str(write_config(tmp_path / "g.yaml", tmp_path / "data", nested)))
    assert res.returncode == 2 and "rewards.modules[1]" in res.stderr
    assert "'prm_delta' (through its sub-module 'column_steps')" in res.stderr
    assert "Sample.extras['step_scores']" in res.stderr
    # the same module with a step source the node has (step_match on the task's gold steps) passes
    fixed = {"name": "prm_delta", "params": {"steps": "step_match"}}
    ok = {"rewards": {"modules": [fixed], "report": []}}
    res = run_cli("config", "check", str(write_config(tmp_path / "m.yaml", tmp_path / "data", ok)))
    assert res.returncode == 0, res.stderr
