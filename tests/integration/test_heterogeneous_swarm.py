"""Two nodes with different architectures and tokenizers exchange text rollouts and both train on them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmrl.config import NodeConfig
from swarmrl.node.node import Node
from swarmrl.swarm.transports.memory import MemoryHub
from tests.nodeutil import FAST, deep_merge


def _cfg(tmp: Path, name: str, seed: int, tiny: dict, staleness: int) -> NodeConfig:
    extra = {
        "trainer": {"max_staleness": staleness},
        "node": {"data_dir": str(tmp / name), "name": name, "seed": seed, "rounds": 0, "metrics_port": -1},
        "model": {"tiny": tiny},
        "generation": {"num_completions": 6},
        "swarm": {"transport": "memory"},
        "sampling": {"local_groups": 2, "external_groups": 2},
    }
    return NodeConfig.model_validate(deep_merge(FAST, extra))


@pytest.mark.parametrize("staleness", [0, 1], ids=["synchronous", "overlapped"])
def test_different_architectures_and_vocabularies_train_on_each_other(tmp_path: Path, staleness: int) -> None:
    """Also with the overlapped default (each node's generation in its own child process)."""
    a_cfg = _cfg(
        tmp_path,
        "a",
        1,
        {"hidden_size": 64, "layers": 1, "heads": 2, "intermediate_size": 128, "warmstart_steps": 60},
        staleness,
    )
    b_cfg = _cfg(
        tmp_path,
        "b",
        2,
        {
            "hidden_size": 48,
            "layers": 2,
            "heads": 2,
            "intermediate_size": 96,
            "vocab_extra": "αβγδ→",
            "warmstart_steps": 60,
        },
        staleness,
    )

    async def main() -> tuple[Node, Node]:
        hub = MemoryHub()
        a, b = Node(a_cfg, hub=hub), Node(b_cfg, hub=hub)
        # both on the hub before either trains: otherwise the faster one can finish its rounds before the
        # other has published anything (a race, not a property of the swarm)
        await asyncio.gather(a.start(), b.start())

        def enough(node: Node) -> bool:
            recs = node.journal.recent
            return node.round >= 8 and sum(r.get("external_groups", 0) for r in recs) > 0

        async def stop_when_both_trained_on_each_other() -> None:
            # a node that finished its rounds would leave the hub while the other (slower to generate its
            # first round) has not published yet: both run until each has trained on the other's groups
            deadline = asyncio.get_running_loop().time() + 240
            while not (enough(a) and enough(b)) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
            a.request_stop()
            b.request_stop()

        await asyncio.gather(a.run(), b.run(), stop_when_both_trained_on_each_other())
        return a, b

    a, b = asyncio.run(main())
    assert len(a.policy.tokenizer) != len(b.policy.tokenizer)
    assert a.policy.model.config.hidden_size != b.policy.model.config.hidden_size
    for node in (a, b):
        records = node.journal.read_all()
        external = sum(r["external_groups"] for r in records)
        assert external > 0, f"{node.cfg.node.name} trained on no external group"
        assert node.metrics.train_groups.labels(origin="external")._value.get() == external
        assert node.metrics.rollouts_received._value.get() > 0
        assert records[-1]["policy_version"] > 0
        # external text was re-tokenized with this node's tokenizer and trained with finite losses
        assert any("external" in r["clip_fraction_by_origin"] for r in records)
        assert all(r["loss"] == r["loss"] for r in records)  # no NaN
        if staleness:  # own groups after the first round were generated one round of updates behind
            assert any("stale" in r["clip_fraction_by_origin"] for r in records)
