"""Issue 17's model-needing modules: P2S, SLATE, OPRL and TVM with a scripted scorer (hand-computed numbers),
and the trainer's helper models (online PRM, value head) on a real tiny model."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.rewards.base import Sample
from swarmrl.rewards.registry import default_registry
from swarmrl.rewards.scorer import OnlinePRMScorer, TokenScorer, ValueScorer
from swarmrl.trainer.auxmodels import AuxModels
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.prompts import completion_ids
from swarmrl.trainer.tokenizer import build_char_tokenizer


class Scripted:
    """Scripted log-probs, samples, PRM log-probs and token values; records the calls."""

    def __init__(self) -> None:
        self.logp: dict[tuple[str, str], list[float]] = {}
        self.samples: dict[str, list[str]] = {}
        self.prm: dict[tuple[int, ...], list[float]] = {}
        self.old: dict[tuple[int, ...], list[float]] = {}
        self.values: dict[tuple[int, ...], list[float]] = {}
        self.calls: list[tuple[str, object]] = []

    def logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        pre = list(prefixes or [""] * len(prompts))
        self.calls.append(("logprobs", list(zip(completions, pre, strict=True))))
        return [self.logp[(c, x)] for c, x in zip(completions, pre, strict=True)]

    def ref_logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        raise AssertionError("not used")

    def sample(
        self, prompts: Sequence[str], n: int, prefixes: Sequence[str] | None = None
    ) -> list[list[str]]:
        pre = list(prefixes or [""] * len(prompts))
        self.calls.append(("sample", (n, pre)))
        return [self.samples[x][:n] for x in pre]

    def token_logprobs(
        self, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]], reference: bool = False
    ) -> list[list[float]]:
        return [self.old[tuple(i)] for i in completion_ids]

    def prm_token_logprobs(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        return [self.prm[tuple(i)] for i in completion_ids]

    def prm_dpo_step(
        self, key: str, pairs: Sequence[tuple[str, Sequence[int], Sequence[int]]], beta: float, lr: float
    ) -> float:
        self.calls.append(("dpo", ([(tuple(c), tuple(r)) for _, c, r in pairs], beta, lr)))
        return 0.0

    def token_values(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        return [self.values[tuple(i)] for i in completion_ids]

    def fit_values(
        self,
        key: str,
        prompts: Sequence[str],
        completion_ids: Sequence[Sequence[int]],
        targets: Sequence[Sequence[float]],
        lr: float,
    ) -> float:
        self.calls.append(("fit", [list(t) for t in targets]))
        return 0.0


def _chain(completion: str, gold: Sequence[str], ids: Sequence[int] | None = None) -> Sample:
    return Sample(
        "1+2+3=",
        completion,
        ";".join(gold),
        completion_ids=list(ids) if ids is not None else list(range(len(completion))),
        gold_steps=tuple(gold),
    )


def _bound(name: str, params: dict[str, object], scorer: Scripted):  # type: ignore[no-untyped-def]
    module = default_registry().create(name, params)
    module.bind_scorer(scorer)  # type: ignore[attr-defined]
    return module


def test_scripted_scorer_implements_the_extensions() -> None:
    s = Scripted()
    assert isinstance(s, OnlinePRMScorer) and isinstance(s, ValueScorer) and isinstance(s, TokenScorer)


def test_p2s_path_faithfulness_worked_numbers() -> None:
    sc = Scripted()
    sc.logp[("3;6", "")] = [-0.1, -0.1, -0.1]  # PFR_0 = exp(-0.1)
    sc.logp[("6", "3;")] = [-1.0]  # PFR_1 = exp(-1): after the completion's first step "3"
    out = _bound("p2s", {}, sc).score_group([_chain("3;7", ["3", "6"])])
    assert out[0].info["pfr"] == pytest.approx([math.exp(-0.1), math.exp(-1.0)])
    assert out[0].step_rewards == pytest.approx([math.exp(-1.0) - math.exp(-0.1), 0.0])
    absolute = _bound("p2s", {"form": "absolute"}, sc).score_group([_chain("3;7", ["3", "6"])])
    assert absolute[0].step_rewards == pytest.approx([math.exp(-1.0), 0.0])
    # no gold steps: the group's verified correct completion is the reference chain
    sc.logp[("5;9", "")] = [-0.2, -0.2, -0.2]
    sc.logp[("9", "5;")] = [-0.3]
    group = [Sample("Q", "5;9", "5;9"), Sample("Q", "5;8", "5;9")]
    got = _bound("p2s", {"reference": "group_correct"}, sc).score_group(group)
    assert got[1].step_rewards == pytest.approx([math.exp(-0.3) - math.exp(-0.2), 0.0])
    none = _bound("p2s", {"reference": "group_correct"}, sc).score_group([Sample("Q", "5;8", "5;9")])
    assert none[0].scalar is None and none[0].step_rewards is None


def test_slate_sibling_advantages_worked_numbers() -> None:
    sc = Scripted()
    sc.samples[""] = ["3;6", "4;1", "3", "5"]  # first steps 3, 4, 3, 5: sibling success 2/4
    sc.samples["3;"] = ["6", "6", "7", "6;2"]  # 3/4
    sc.samples["4;"] = ["1", "2", "6", "3"]  # 1/4
    group = [_chain("3;6", ["3", "6"]), _chain("4;6", ["3", "6"])]
    out = _bound("slate", {"siblings": 4}, sc).score_group(group)
    assert out[0].info["advantages"] == pytest.approx([0.5, 0.25])
    assert out[1].info["advantages"] == pytest.approx([-0.5, 0.75])
    assert out[0].step_rewards == pytest.approx([0.25, 0.25])  # telescoped: A_k - A_{k+1}
    assert out[1].step_rewards == pytest.approx([-1.25, 0.75])
    samples = [c for c in sc.calls if c[0] == "sample"]
    assert samples == [("sample", (4, ["", "3;", "4;"]))]  # one call, the shared prefix "" sampled once


def test_oprl_implicit_step_rewards_and_dpo_pairs() -> None:
    sc = Scripted()
    sc.prm[(0, 1, 2)], sc.old[(0, 1, 2)] = [-0.5] * 3, [-1.0] * 3  # log ratio +0.5 per token
    sc.prm[(3, 4, 5)], sc.old[(3, 4, 5)] = [-1.0] * 3, [-0.5] * 3  # -0.5 per token
    group = [_chain("3;6", ["3", "6"], [0, 1, 2]), _chain("4;6", ["3", "6"], [3, 4, 5])]
    out = _bound("oprl", {"beta": 0.1, "lr": 0.01}, sc).score_group(group)
    # tokens: '3' -> step 1, ';' and '6' -> step 2: step sums 0.05, 0.1 | -0.05, -0.1; z-scored together
    assert out[0].info["implicit"] == pytest.approx([0.05, 0.1])
    z = [0.05 / math.sqrt(0.00625), 0.1 / math.sqrt(0.00625)]
    assert out[0].step_rewards == pytest.approx([z[0] - z[1], z[1]], abs=1e-4)
    assert out[1].step_rewards == pytest.approx([-z[0] + z[1], -z[1]], abs=1e-4)
    assert ("dpo", ([((0, 1, 2), (3, 4, 5))], 0.1, 0.01)) in sc.calls  # correct preferred over wrong


def test_tvm_potential_rewards_and_prefix_targets() -> None:
    sc = Scripted()
    sc.values[(1, 2)], sc.values[(4, 3)] = [0.5, 0.8], [0.5, 0.2]
    group = [
        Sample("5+7=", "12", "12", completion_ids=[1, 2]),
        Sample("5+7=", "13", "12", completion_ids=[4, 3]),
    ]
    out = _bound("tvm", {"coef": 1.0}, sc).score_group(group)
    assert out[0].token_rewards == pytest.approx([0.3, -0.8])  # V: 0.5 -> 0.8 -> terminal 0
    assert out[1].token_rewards == pytest.approx([-0.3, -0.2])
    assert sum(out[0].token_rewards or []) == pytest.approx(sum(out[1].token_rewards or []))  # -V(s_0) both
    assert ("fit", [[0.5, 1.0], [0.5, 0.0]]) in sc.calls
    sc.calls.clear()
    _bound("tvm", {}, sc).score_group(group[:1])  # a group of one is scored, not learned from
    assert not [c for c in sc.calls if c[0] == "fit"]


# --- the trainer's helper models on a real tiny model -------------------------------------------------------


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    cfg = tiny_qwen2_config(
        tok, hidden_size=32, intermediate_size=64, layers=1, heads=2, kv_heads=2, max_position_embeddings=64
    )
    return Policy(Qwen2ForCausalLM(cfg).eval(), tok, torch.device("cpu"), "test")


def test_online_prm_dpo_learns_the_preference_and_leaves_the_policy_alone(policy: Policy) -> None:
    aux = AuxModels(policy)
    before = copy.deepcopy(policy.model.state_dict())
    good, bad = (
        completion_ids(policy.tokenizer, "12", eos=True),
        completion_ids(policy.tokenizer, "13", eos=True),
    )
    pairs = [("5+7=", good, bad)]
    first = aux.prm_dpo_step("oprl", pairs, beta=1.0, lr=1e-2)
    assert first == pytest.approx(math.log(2), abs=1e-5)  # PRM == policy at the start: ratio 0
    for _ in range(10):
        last = aux.prm_dpo_step("oprl", pairs, beta=1.0, lr=1e-2)
    assert last < first
    prm = aux.prm_token_logprobs("oprl", ["5+7=", "5+7="], [good, bad])
    with torch.no_grad():
        old = AuxModels(policy).prm_token_logprobs("fresh", ["5+7=", "5+7="], [good, bad])  # = the policy
    assert sum(prm[0]) - sum(old[0]) > sum(prm[1]) - sum(old[1])
    for k, v in policy.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    restored = AuxModels(policy)
    restored.load_state_dict(aux.state_dict())
    assert restored.prm_token_logprobs("oprl", ["5+7="], [good]) == prm[:1]


def test_value_head_starts_at_one_half_fits_targets_and_round_trips(policy: Policy) -> None:
    aux = AuxModels(policy)
    ids = [completion_ids(policy.tokenizer, "12", eos=True), completion_ids(policy.tokenizer, "99", eos=True)]
    values = aux.token_values("tvm", ["5+7=", "5+7="], ids)
    assert all(v == pytest.approx(0.5) for row in values for v in row)  # zero-initialised head
    targets = [[1.0] * len(ids[0]), [0.0] * len(ids[1])]
    losses = [aux.fit_values("tvm", ["5+7=", "5+7="], ids, targets, lr=0.05) for _ in range(30)]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5) and losses[-1] < losses[0]
    after = aux.token_values("tvm", ["5+7=", "5+7="], ids)
    assert sum(after[0]) / len(after[0]) > sum(after[1]) / len(after[1])
    restored = AuxModels(policy)
    restored.load_state_dict(aux.state_dict())
    assert restored.token_values("tvm", ["5+7=", "5+7="], ids) == after
