"""External completions: the truncated importance weight (hand-built numbers, a lying peer) and the
positive-only policy that keeps negative external samples out of the loss."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.config.sections import TrainerSection
from swarmrl.node.rollouts import ExternalPolicy, train_sequences
from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef
from swarmrl.rewards import Sample
from swarmrl.rewards.pipeline import ScoredGroup
from swarmrl.trainer.learner import Learner, TrainSequence, _external_weights, sequence_is_weight
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.tokenizer import build_char_tokenizer


def test_sequence_weight_on_hand_built_numbers() -> None:
    # pi_local = e^-2, pi_sender = e^-1: the receiver finds the text e times less likely -> w = e^-1
    assert sequence_is_weight(-2.0, -1.0, 1.0) == pytest.approx(math.exp(-1.0))
    # the receiver finds it more likely: w = e^0.5 = 1.65, truncated at the cap
    assert sequence_is_weight(-1.0, -1.5, 1.0) == 1.0
    assert sequence_is_weight(-1.0, -1.5, 2.0) == pytest.approx(math.exp(0.5))
    assert sequence_is_weight(-1.0, -1.5, 1.5) == 1.5
    assert sequence_is_weight(-3.0, -3.0, 1.0) == pytest.approx(1.0)
    assert sequence_is_weight(-3.0, -9.0, 0.0) == 1.0  # cap 0: no correction


@pytest.mark.parametrize("cap", [1.0, 2.0, 5.0])
def test_a_lying_peer_gains_at_most_the_cap(cap: float) -> None:
    # Understating the behaviour log-prob (claiming the text was very unlikely for the sender) inflates the
    # ratio without bound; the weight stops at the cap. Overstating it (log-prob 0) only shrinks the weight.
    for lie in (-1e3, -1e9, -1e300):
        assert sequence_is_weight(-4.0, lie, cap) == cap
    assert sequence_is_weight(-4.0, 0.0, cap) == pytest.approx(math.exp(-4.0))
    assert sequence_is_weight(float("-inf"), -1.0, cap) == 0.0


def test_row_weights_read_the_entry_logprobs_of_each_row() -> None:
    rows = [
        TrainSequence([1], [5, 6], [1.0, 1.0], None, "external", sender_logprob=-1.0, is_cap=1.0),
        TrainSequence([1], [7], [1.0], None, "external"),  # no claim: weight 1
        TrainSequence([1], [8, 9], [1.0, 1.0], None, "external", sender_logprob=-9.0, is_cap=2.0),
    ]
    old = torch.tensor([[-1.0, -2.0], [-0.5, float("nan")], [-1.0, -1.0]])
    cmask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    w = _external_weights(rows, old, cmask)
    assert w is not None and w.shape == (3, 1)
    assert w[:, 0].tolist() == pytest.approx([math.exp(-3.0 + 1.0), 1.0, 2.0])
    assert _external_weights(rows[1:2], old[1:2], cmask[1:2]) is None


def _policy() -> Policy:
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    config = tiny_qwen2_config(
        tok, hidden_size=32, intermediate_size=64, layers=1, heads=4, kv_heads=2, max_position_embeddings=64
    )
    return Policy(Qwen2ForCausalLM(config), tok, torch.device("cpu"), "t")


def _grads(seq: TrainSequence) -> list[torch.Tensor]:
    policy = _policy()
    Learner(policy, TrainerSection(updates_per_round=1, max_grad_norm=1e6)).step([copy.deepcopy(seq)])
    return [p.grad.clone() for p in policy.model.parameters() if p.grad is not None]


def test_lying_peer_in_a_real_update_gets_exactly_the_capped_weight() -> None:
    base = TrainSequence([1, 20, 21], [30, 31, 2], [1.0, 1.0, 1.0], None, "external")
    plain = _grads(base)
    liar_cap1 = _grads(TrainSequence(**{**base.__dict__, "sender_logprob": -1e9, "is_cap": 1.0}))
    liar_cap2 = _grads(TrainSequence(**{**base.__dict__, "sender_logprob": -1e9, "is_cap": 2.0}))
    honest_sure = _grads(TrainSequence(**{**base.__dict__, "sender_logprob": 0.0, "is_cap": 1.0}))
    for a, b, c, _d in zip(plain, liar_cap1, liar_cap2, honest_sure, strict=True):
        assert torch.allclose(a, b, atol=1e-7)  # cap 1: a liar counts as much as an uncorrected sample
        assert torch.allclose(2 * a, c, atol=1e-6)  # cap 2: at most twice
    # a sender that claims certainty (log-prob 0) is weighted down to pi_local (< 1)
    assert sum(float(g.abs().sum()) for g in honest_sure) < 0.5 * sum(float(g.abs().sum()) for g in plain)


def _scored(rewards: list[float]) -> ScoredGroup:
    return ScoredGroup(rewards=rewards, modules={}, accuracy=rewards)


def _group(origin: str, texts: list[str]) -> RolloutGroup:
    comps = [Completion(t, token_ids=[40 + i, 2], behaviour_logprob=-2.0) for i, t in enumerate(texts)]
    return RolloutGroup(TaskRef("arithmetic", "add", "d", 0, 1), "1+1=", "2", comps, origin=origin)


def _samples(g: RolloutGroup) -> list[Sample]:
    return [
        Sample(prompt=g.question, completion=c.text, answer=g.answer, completion_ids=c.token_ids)
        for c in g.completions
    ]


def test_positive_only_drops_negative_external_completions_not_own_ones() -> None:
    policy = _policy()
    own, ext = _group("local", ["2", "3", "4"]), _group("external", ["2", "3", "4"])
    groups = [own, ext]
    scored = [_scored([1.0, 0.0, 0.0]), _scored([1.0, 0.0, 0.0])]
    samples = [_samples(g) for g in groups]
    plain = train_sequences(policy, groups, samples, scored, "grpo")
    assert [s.origin for s in plain] == ["local"] * 3 + ["external"] * 3
    pos = train_sequences(
        policy, groups, samples, scored, "grpo", external=ExternalPolicy(positive_only=True, is_cap=1.0)
    )
    assert [s.origin for s in pos] == ["local"] * 3 + ["external"]
    assert [s.advantages[0] > 0 for s in pos] == [True, False, False, True]
    assert pos[-1].sender_logprob == -2.0 and pos[-1].is_cap == 1.0
    assert all(s.sender_logprob is None for s in pos[:3])  # own samples are never re-weighted
    # an external group whose only signal is negative vanishes entirely
    neg = train_sequences(
        policy, [ext], [samples[1]], [_scored([0.0, 1.0, 1.0])], "dr_grpo", external=ExternalPolicy(True)
    )
    assert [s.completion_ids for s in neg] == [[41, 2], [42, 2]]


def test_external_policy_from_config() -> None:
    assert ExternalPolicy.from_config("positive", "none", 3.0) == ExternalPolicy(True, 0.0)
    assert ExternalPolicy.from_config("all", "truncated_is", 3.0) == ExternalPolicy(False, 3.0)
