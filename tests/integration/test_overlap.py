"""The overlapped pipeline: round r+1 is generated while round r trains, at most one round stale."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmrl.config import NodeConfig
from swarmrl.node.node import Node
from swarmrl.trainer.checkpoint import load_latest
from swarmrl.trainer.genprocess import ProcessGenerator
from tests.nodeutil import FAST, deep_merge


def _node(tmp: Path, staleness: int, rounds: int, worker: str = "process") -> Node:
    cfg = deep_merge(
        FAST,
        {
            "node": {"data_dir": str(tmp), "rounds": rounds, "metrics_port": -1},
            "model": {"tiny": {"hidden_size": 64, "warmstart_steps": 40}},
            "trainer": {"max_staleness": staleness},
            "generation": {"worker": worker},
        },
    )
    return Node(NodeConfig.model_validate(cfg))


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_overlapped_rounds_are_one_round_stale_and_use_current_logprobs(tmp_path: Path, worker: str) -> None:
    node = _node(tmp_path / "a", 1, 5, worker)
    assert asyncio.run(node.run()) == 0
    records = node.journal.read_all()
    assert [r["round"] for r in records] == [1, 2, 3, 4, 5]
    # round 1 is generated before any update (fresh); later rounds were generated during the previous update
    assert set(records[0]["ratio_mean_by_origin"]) <= {"local"}
    stale_rounds = [r for r in records[1:] if "stale" in r["ratio_mean_by_origin"]]
    assert stale_rounds, "no round trained on stale samples"
    for r in stale_rounds:
        assert "local" not in r["ratio_mean_by_origin"]
        assert 0.5 < r["ratio_mean_by_origin"]["stale"] < 2.0
    # the generation weights follow the learner: groups are at most one round of updates behind
    versions = [r["policy_version"] for r in records]
    for prev, r in zip([0, *versions], records, strict=False):
        assert prev - 2 <= r["generated_version"] <= prev  # 2 = updates_per_round: one round behind
    assert any(r["generated_version"] < prev for prev, r in zip([0, *versions], records, strict=False))
    if worker == "thread":
        assert node.engine.gen_policy is not node.policy  # its own copy of the weights
    else:
        assert isinstance(node.generator, ProcessGenerator) and node.generator.pid is None  # closed
    ck = load_latest(tmp_path / "a" / "checkpoints")
    assert ck is not None and ck.round == 5 and ck.policy_version == records[-1]["policy_version"]


def test_synchronous_loop_shares_the_policy(tmp_path: Path) -> None:
    node = _node(tmp_path / "b", 0, 2)
    assert asyncio.run(node.run()) == 0
    assert node.engine.gen_policy is node.policy
    assert all("stale" not in r["ratio_mean_by_origin"] for r in node.journal.read_all())


def test_overlapped_swarm_keeps_the_budget_i_plus_j(tmp_path: Path) -> None:
    """With fill_with_local, a round trains on exactly I + J groups in the overlapped pipeline too: the
    prefetch guesses the shortfall from the last round's realised J and the round corrects the guess (it
    once used the raw pool size, which counts groups the sampler then drops as flat)."""
    from swarmrl.swarm.transports.memory import MemoryHub

    async def run() -> list[Node]:
        hub = MemoryHub()
        nodes = []
        for i in range(2):
            cfg = deep_merge(
                FAST,
                {
                    "node": {
                        "data_dir": str(tmp_path / f"n{i}"),
                        "rounds": 12,
                        "metrics_port": -1,
                        "control_port": -1,
                        "seed": i,
                        "name": f"n{i}",
                    },
                    "trainer": {"max_staleness": 1},
                    # no warm start: (almost) every group is flat, so the pool holds groups the sampler drops
                    "model": {"tiny": {"warmstart_steps": 0}},
                    "generation": {"worker": "thread"},
                    "sampling": {"local_groups": 2, "external_groups": 2, "fill_with_local": True},
                    "swarm": {"transport": "memory", "publish_groups": 4},
                },
            )
            nodes.append(Node(NodeConfig.model_validate(cfg), hub=hub))
        await asyncio.gather(*(n.run() for n in nodes))
        return nodes

    nodes = asyncio.run(run())
    for n in nodes:
        records = n.journal.read_all()
        assert len(records) == 12
        assert all(r["local_groups"] + r["external_groups"] == 4 for r in records), [
            (r["local_groups"], r["external_groups"]) for r in records
        ]
