"""Issue 17's reward modules, HERON combine mode and task scheduler in real in-process nodes: every module
gets its inputs (the node's scorer) and gives scores in a round, and what they learn across rounds (exploration
counts, OPRL's online PRM, TVM's value head, the scheduler's recovery estimates) is checkpointed and resumed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import torch

from swarmrl.config import NodeConfig
from swarmrl.node.journal import read_journal
from swarmrl.node.node import Node
from swarmrl.trainer.checkpoint import load_latest
from tests.nodeutil import FAST, deep_merge, score_one_round

NEW_MODULES: list[dict[str, Any]] = [
    {"name": "p2s", "weight": 0.5},
    {"name": "slate", "weight": 0.5, "params": {"siblings": 2}},
    {"name": "oprl", "weight": 0.5, "params": {"lr": 1e-3}},
    {"name": "tvm", "weight": 0.5},
    {"name": "potential_shaping", "weight": 0.5, "params": {"of": "step_match"}},
    {"name": "explore_bonus", "weight": 1.0, "params": {"gate": "capped"}},
    {"name": "arena", "weight": 1.0, "params": {"judge": "numeric"}},
]
MULTISTEP = {
    "tasks": {"sources": [{"source": "multistep", "dataset": "add", "config": {"terms": 2}}]},
    "rewards": {"modules": NEW_MODULES, "report": [], "segment": {"rule": "regex", "pattern": ";"}},
}


def _config(tmp: Path, extra: dict[str, Any]) -> NodeConfig:
    raw = deep_merge(FAST, {"node": {"data_dir": str(tmp), "metrics_port": -1, "control_port": -1}})
    return NodeConfig.model_validate(deep_merge(raw, extra))


def test_every_new_module_scores_in_a_node_round_and_its_state_resumes(tmp_path: Path) -> None:
    node = Node(_config(tmp_path, deep_merge(MULTISTEP, {"node": {"rounds": 2}})))
    scored = asyncio.run(score_one_round(node))
    for spec in NEW_MODULES:
        values = [v for sg in scored for v in sg.modules[spec["name"]]]
        assert any(v is not None for v in values), spec["name"]
    assert all(len(sg.rewards) == 4 for sg in scored)

    node = Node(_config(tmp_path / "run", deep_merge(MULTISTEP, {"node": {"rounds": 2}})))
    assert asyncio.run(node.run()) == 0
    ckpt = load_latest(tmp_path / "run" / "checkpoints")
    assert ckpt is not None and ckpt.round == 2
    rewards_state = ckpt.state["rewards_state"]
    (counts,) = [v["history"] for k, v in rewards_state.items() if k.endswith(":explore_bonus")]
    assert sum(counts.values()) == 2 * 2 * 4  # 2 rounds x 2 groups x 4 completions counted
    scorer_state = ckpt.state["scorer_state"]
    assert set(scorer_state["prm"]) == {"oprl"} and set(scorer_state["value"]) == {"tvm"}
    head = scorer_state["value"]["tvm"]["model"]["weight"]
    assert float(head.abs().sum()) > 0  # the value head was fitted (it starts at zero)

    resumed = Node(_config(tmp_path / "run", deep_merge(MULTISTEP, {"node": {"rounds": 3}})))
    resumed.assemble()
    try:
        explore = next(m for m in resumed.pipeline.walk() if m.name == "explore_bonus")
        assert dict(explore.history) == counts  # type: ignore[attr-defined]
        assert resumed.scorer is not None
        aux = resumed.scorer.aux
        assert torch.equal(aux.heads["tvm"].module.weight.detach().cpu(), head.cpu())
        saved_prm = scorer_state["prm"]["oprl"]["model"]
        for name, tensor in aux.prms["oprl"].module.state_dict().items():
            assert torch.equal(tensor.cpu(), saved_prm[name].cpu()), name
        saved_opt = scorer_state["prm"]["oprl"]["optimizer"]
        assert aux.prms["oprl"].optimizer.state_dict()["state"].keys() == saved_opt["state"].keys()
    finally:
        asyncio.run(resumed.close())


def test_heron_combine_mode_in_a_node(tmp_path: Path) -> None:
    extra = {
        "rewards": {
            "modules": [{"name": "exact_match", "weight": 1.0}, {"name": "format", "weight": 100.0}],
            "report": [],
            "combine": {"mode": "heron", "order": ["exact_match", "format"], "margins": {"format": 0.1}},
        }
    }
    scored = asyncio.run(score_one_round(Node(_config(tmp_path, extra))))
    for sg in scored:
        assert all(0.0 <= r <= 1.0 for r in sg.rewards)  # group win-rates, not weighted sums
        for i in range(len(sg.rewards)):
            for j in range(len(sg.rewards)):
                if sg.accuracy[i] > sg.accuracy[j]:
                    assert sg.rewards[i] > sg.rewards[j]


def test_ucb_task_schedule_runs_and_resumes(tmp_path: Path) -> None:
    extra = {
        "node": {"rounds": 4},
        "tasks": {
            "sources": [{"dataset": "add"}, {"dataset": "sub"}, {"dataset": "mul"}],
            "schedule": "ucb",
            "scheduler": {"replan_every": 2},
        },
    }
    node = Node(_config(tmp_path, extra))
    assert asyncio.run(node.run()) == 0
    ckpt = load_latest(tmp_path / "checkpoints")
    assert ckpt is not None
    state = ckpt.state["task_schedule"]["scheduler"]
    assert state["t"] == 4 and sum(map(sum, state["counts"])) >= 4  # one observation per pulled arm
    records = [r for r in read_journal(tmp_path / "journal.log") if r.get("kind") == "round"]
    assert len(records) == 4
    resumed = Node(_config(tmp_path, deep_merge(extra, {"node": {"rounds": 5}})))
    resumed.assemble()
    try:
        assert resumed.tasks.scheduler is not None
        assert resumed.tasks.scheduler.state_dict() == state
    finally:
        asyncio.run(resumed.close())
