"""Inputs that really arrive in a running node: reward-model scores for par/lsc/ensemble/ctrl_u/
rpr_calibration (a tiny RM the test trains and saves), the code task's sandboxed pass matrix for verpo
(hostile solutions fail, the node keeps training), and advisory rewards that only ever order candidates."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

import pytest

from swarmrl.config import NodeConfig
from swarmrl.config.scorers import RewardModelSpec
from swarmrl.node.external import PREPARED
from swarmrl.node.journal import read_journal
from swarmrl.node.node import Node
from swarmrl.protocol.envelope import Limits, group_from_pb, group_to_pb
from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup
from swarmrl.trainer.reward_model import RewardModel, fit_reward_model
from tests.nodeutil import FAST, deep_merge, run_cli, write_config


def _tiny_rm(path: Path) -> Path:
    rng = random.Random(0)
    texts, labels = [], []
    for _ in range(200):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        good = rng.random() < 0.5
        texts.append(f"{a}+{b}={a + b if good else a + b + rng.choice([-2, -1, 1, 2])}")
        labels.append(1.0 if good else 0.0)
    fit_reward_model(path, texts, labels, steps=15, hidden_size=16)
    return path


def _config(tmp_path: Path, extra: dict[str, Any]) -> NodeConfig:
    raw = deep_merge(FAST, {"node": {"data_dir": str(tmp_path / "node"), "rounds": 2, "metrics_port": -1}})
    return NodeConfig.model_validate(deep_merge(raw, extra))


COL = {"name": "column", "params": {"key": "score"}}
COL2 = {"name": "column", "params": {"key": "score2"}}


def test_reward_model_scores_feed_column_style_modules(tmp_path: Path) -> None:
    rm = _tiny_rm(tmp_path / "rm")
    modules = [
        {"name": "par", "params": {"of": COL}},
        {"name": "lsc", "params": {"properties": [COL], "reference": "mean"}},
        {"name": "ensemble", "params": {"members": [COL, COL2], "aggregate": "mean_minus_std"}},
        {"name": "ctrl_u", "params": {"of": COL, "members": [COL, COL2]}},
        {"name": "rpr_calibration", "params": {"of": COL}},
    ]
    cfg = _config(
        tmp_path,
        {
            "rewards": {
                "modules": [{**m, "weight": 0.2} for m in modules],
                "report": [],
                "reward_models": [
                    {
                        "name": "rm",
                        "path": str(rm),
                        "key": "score",
                        "ref_key": "ref_rewards",
                        "device": "cpu",
                    },
                    {
                        "name": "rm2",
                        "path": str(rm),
                        "key": "score2",
                        "activation": "sigmoid",
                        "batch_size": 3,
                    },
                ],
            }
        },
    )
    node = Node(cfg)

    async def go() -> None:
        await node.start()
        groups, tasks, _, _ = node.generate_local(1, 2)
        samples, scored = node.score(groups, list(tasks))
        direct = RewardModel(RewardModelSpec(name="x", path=str(rm), device="cpu"))
        for g, t, smp, sc in zip(groups, tasks, samples, scored, strict=True):
            want = direct.score([g.question] * len(smp), [s.completion for s in smp])
            assert [s.extras["score"] for s in smp] == pytest.approx(want, abs=1e-5)
            assert [s.extras["score2"] for s in smp] == pytest.approx(
                [1 / (1 + math.exp(-v)) for v in want], abs=1e-5
            )
            ref = direct.score([g.question], [t.answer])
            assert all(s.extras["ref_rewards"] == pytest.approx(ref, abs=1e-5) for s in smp)
            for m in modules:
                values = sc.modules[m["name"]]
                assert all(v is not None and math.isfinite(v) for v in values), m["name"]
        assert await node.run() == 0

    asyncio.run(go())
    records = [r for r in read_journal(tmp_path / "node" / "journal.log") if r.get("kind") == "round"]
    assert [r["round"] for r in records] == [1, 2]
    assert all(math.isfinite(r["modules"][m["name"]]) for r in records for m in modules)


CODE = {
    "tasks": {
        "sources": [
            {"source": "code", "dataset": "tiny", "config": {"per_test_seconds": 0.3, "wall_seconds": 3}}
        ]
    },
    "generation": {"max_new_tokens": 8},
    "rewards": {"modules": [{"name": "verpo"}], "report": ["dataset_score"]},
}


def test_hostile_code_fails_its_tests_and_the_node_keeps_training(tmp_path: Path) -> None:
    node = Node(_config(tmp_path, CODE))
    outside = tmp_path / "escaped"

    async def go() -> None:
        await node.start()
        task = node.sources[0].get(40)
        hostile = [
            "[0 for _ in iter(int, 1)]",
            "len(bytearray(10 * 1024**3))",
            "__import__('os').fork()",
            f"open({str(outside)!r}, 'w').write('x')",
            "__import__('socket').create_connection(('127.0.0.1', 9), 1)",
        ]
        texts = [task.answer, *hostile]
        group = RolloutGroup(
            task.ref,
            task.question,
            task.answer,
            [Completion(t) for t in texts],
            PolicyInfo("peer-model", 3, "peer"),
            advisory_rewards=[1.0] * len(texts),
            origin="external",
            peer="peer",
        )
        rewards = node.external.rescore([group])[0]  # a peer's code runs in our sandbox, on our tests
        prepared = group.extras[PREPARED]
        samples, scored = prepared.samples, prepared.scored
        n = len(task.columns["tests"])
        assert samples[0].extras["test_results"] == [1.0] * n
        assert samples[0].extras["tests"] == list(task.columns["tests"])
        for s in samples[1:]:
            assert s.extras["test_results"] == [0.0] * n, s.completion
        assert rewards[0] > max(rewards[1:])
        assert scored.modules["dataset_score"] == [1.0] + [0.0] * len(hostile)
        version = node.learner.version
        node.train([group], [samples], [scored])
        assert node.learner.version > version  # it trained on that group
        assert await node.run() == 0

    asyncio.run(go())
    assert not outside.exists()
    records = [r for r in read_journal(tmp_path / "node" / "journal.log") if r.get("kind") == "round"]
    assert [r["round"] for r in records] == [1, 2]
    assert all("verpo" in r["modules"] for r in records)


def test_advisory_rewards_are_sent_and_never_change_local_scores(tmp_path: Path) -> None:
    node = Node(_config(tmp_path, {"rewards": {"modules": [{"name": "exact_match"}], "report": []}}))

    async def go() -> None:
        await node.start()
        groups, tasks, _, _ = node.generate_local(1, 2)
        _, scored = node.score(groups, list(tasks))
        for g, sc in zip(groups, scored, strict=True):  # the sender's own scores go out as advisory
            assert g.advisory_rewards == sc.totals
            assert list(group_to_pb(g).advisory_rewards) == pytest.approx(sc.totals)
        task = tasks[0]
        texts = [task.answer, task.answer + "1", "", task.answer]

        def received(advisory: list[float]) -> RolloutGroup:
            sent = RolloutGroup(
                task.ref,
                task.question,
                task.answer,
                [Completion(t) for t in texts],
                advisory_rewards=advisory,
            )
            return group_from_pb(group_to_pb(sent), "peer", Limits())

        honest = received([1.0, 0.0, 0.0, 1.0])
        liar = received([1.0] * len(texts))
        assert liar.advisory_rewards == [1.0] * len(texts)
        r_honest = node.external.rescore([honest])[0]
        r_liar = node.external.rescore([liar])[0]
        own = node.score([received([])], [task])[1][0].totals
        assert r_liar == r_honest == own == [1.0, 0.0, 0.0, 1.0]
        await node.close()

    asyncio.run(go())


def test_swarm_node_run_trains_on_the_code_task(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "code.yaml",
        tmp_path / "data",
        deep_merge(CODE, {"node": {"rounds": 2}}),
    )
    proc = run_cli("run", "--config", str(cfg), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [r for r in read_journal(tmp_path / "data" / "journal.log") if r.get("kind") == "round"]
    assert [r["round"] for r in records] == [1, 2]
    assert all(math.isfinite(r["modules"]["verpo"]) and "dataset_score" in r["modules"] for r in records)


def test_config_check_refuses_a_missing_reward_model_by_field(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "rm.yaml",
        tmp_path / "data",
        {"rewards": {"reward_models": [{"name": "rm", "path": str(tmp_path / "absent")}]}},
    )
    proc = run_cli("config", "check", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rewards.reward_models[0].path" in proc.stdout + proc.stderr
    bad = write_config(
        tmp_path / "code.yaml",
        tmp_path / "data",
        {"tasks": {"sources": [{"source": "code", "dataset": "tiny", "config": {"memory_mb": 1}}]}},
    )
    proc = run_cli("config", "check", str(bad))
    assert proc.returncode == 2 and "tasks.sources[0].config.memory_mb" in proc.stdout + proc.stderr
