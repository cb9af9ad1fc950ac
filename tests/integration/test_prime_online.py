"""PRIME as in the paper (issue 15): a separate implicit PRM, initialised from the policy, trained online on
outcome labels with the cross-entropy loss, giving the token rewards, and checkpointed / resumed with the node."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from swarmrl.config import NodeConfig
from swarmrl.node.node import Node
from swarmrl.node.rollouts import to_samples
from swarmrl.rewards.registry import default_registry
from swarmrl.rewards.shaping import prime_ce_loss
from swarmrl.trainer.checkpoint import load_latest
from tests.nodeutil import FAST, deep_merge

# no accuracy filter: a round of the tiny model may hold only all-wrong groups, and the PRM must train here
PRIME = {"name": "prime", "weight": 1.0, "params": {"lr": 1e-3, "accuracy_filter": []}}


def _config(tmp: Path, rounds: int) -> NodeConfig:
    raw = deep_merge(
        FAST,
        {
            "node": {"data_dir": str(tmp), "metrics_port": -1, "control_port": -1, "rounds": rounds},
            "rewards": {"modules": [PRIME], "report": ["exact_match"]},
        },
    )
    return NodeConfig.model_validate(raw)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_prime_trains_its_own_prm_and_resumes_it(tmp_path: Path) -> None:
    node = Node(_config(tmp_path, 1))
    assert asyncio.run(node.run()) == 0
    assert node.scorer is not None and node.scorer.reference is not None
    prm = node.scorer.aux.prms["prime"].module
    after = _params(prm)
    assert _differs(after, _params(node.scorer.reference))  # trained away from its (policy) initialisation
    assert _differs(after, _params(node.policy.model))  # and it is not the policy
    ckpt = load_latest(tmp_path / "checkpoints")
    assert ckpt is not None and ckpt.round == 1
    saved = ckpt.state["scorer_state"]["prm"]["prime"]

    resumed = Node(_config(tmp_path, 2))
    resumed.assemble()
    try:
        scorer = resumed.scorer
        assert scorer is not None and scorer.reference is not None
        aux = scorer.aux.prms["prime"]
        for name, tensor in aux.module.state_dict().items():
            assert torch.equal(tensor.cpu(), saved["model"][name].cpu()), name
            assert torch.equal(tensor.cpu(), after[name]), name
        assert aux.optimizer.state_dict()["state"].keys() == saved["optimizer"]["state"].keys()
        _token_rewards_come_from_the_prm(resumed)
    finally:
        asyncio.run(resumed.close())


def _token_rewards_come_from_the_prm(node: Node) -> None:
    scorer = node.scorer
    assert scorer is not None
    groups, tasks, _, _ = node.generate_local(2, 2)
    samples = [to_samples(g, t, node.policy.tokenizer) for g, t in zip(groups, tasks, strict=True)]
    beta = 0.05
    module: Any = default_registry().create(
        "prime",
        {
            "advantage": "dense",
            "norm": "none",
            "update": "after",
            "lr": 1e-3,
            "beta": beta,
            "accuracy_filter": [],
        },
    )
    module.bind_scorer(scorer)
    flat = [s for g in samples for s in g]
    prompts, ids = [s.prompt for s in flat], [s.completion_ids for s in flat]
    prm_lp = scorer.prm_token_logprobs("prime", prompts, ids)
    ref_lp = scorer.token_logprobs(prompts, ids, reference=True)
    pol_lp = scorer.token_logprobs(prompts, ids)
    before = _params(scorer.aux.prms["prime"].module)
    outs = [o for g in module.score_batch(samples) for o in g]
    for o, a, b in zip(outs, prm_lp, ref_lp, strict=True):
        assert o.token_rewards == pytest.approx([beta * (x - y) for x, y in zip(a, b, strict=True)], abs=1e-6)
    from_policy = [
        beta * (x - y) for p, r in zip(pol_lp, ref_lp, strict=True) for x, y in zip(p, r, strict=True)
    ]
    from_prm = [v for o in outs for v in o.token_rewards]
    assert max(abs(x - y) for x, y in zip(from_prm, from_policy, strict=True)) > 1e-4
    assert _differs(
        _params(scorer.aux.prms["prime"].module), before
    )  # update: after -> trained after scoring
    # the torch loss of the PRM step is the paper's CE, as shaping.prime_ce_loss computes it
    labels = [float(o.info["label"]) for o in outs]
    prm_now = scorer.prm_token_logprobs("prime", prompts, ids)
    want = statistics.fmean(
        prime_ce_loss(sum(a) - sum(b), y, beta) for a, b, y in zip(prm_now, ref_lp, labels, strict=True)
    )
    assert scorer.prm_ce_step("prime", prompts, ids, labels, beta, 1e-3) == pytest.approx(want, rel=1e-4)
