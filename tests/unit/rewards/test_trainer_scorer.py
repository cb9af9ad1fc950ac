"""TrainerScorer (the trainer's PolicyScorer) on a real tiny Qwen2 model, and per-token character offsets."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from swarmrl.config.sections import TrainerSection
from swarmrl.errors import RewardError
from swarmrl.rewards import Sample, build_pipeline
from swarmrl.rewards.offsets import token_offsets
from swarmrl.rewards.scorer import PolicyScorer, TokenScorer
from swarmrl.rewards.segment import TOKEN_OFFSETS, step_token_ends
from swarmrl.trainer.generation import HFGenerator, SamplingParams
from swarmrl.trainer.learner import Learner
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.prompts import completion_ids, prompt_ids
from swarmrl.trainer.scorer import TrainerScorer, attach_scorer
from swarmrl.trainer.tokenizer import build_char_tokenizer


@pytest.fixture(scope="module")
def policy() -> Policy:
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    cfg = tiny_qwen2_config(
        tok,
        hidden_size=32,
        intermediate_size=64,
        layers=1,
        heads=2,
        kv_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    return Policy(model=model, tokenizer=tok, device=torch.device("cpu"), name="test")


def _fresh(policy: Policy) -> Policy:
    """A private copy (tests that change weights must not leak into others)."""
    import copy

    return Policy(copy.deepcopy(policy.model), policy.tokenizer, policy.device, policy.name)


def _direct(policy: Policy, context: list[int], target: list[int]) -> list[float]:
    """Reference computation: one unpadded forward pass, log-softmax, pick the targets."""
    ids = torch.tensor([context + target])
    with torch.no_grad():
        logits = policy.model(input_ids=ids).logits[0, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return [float(logp[len(context) - 1 + k, t]) for k, t in enumerate(target)]


def test_implements_both_protocols(policy: Policy) -> None:
    scorer = TrainerScorer(policy, HFGenerator(policy))
    assert isinstance(scorer, PolicyScorer)
    assert isinstance(scorer, TokenScorer)


def test_logprobs_match_an_unpadded_forward_pass_in_any_batch(policy: Policy) -> None:
    scorer = TrainerScorer(policy, HFGenerator(policy), micro_batch=2)
    prompts = ["3+4=", "12+7=", "1+1="]
    completions = ["7", "19;x", "2"]
    prefixes = ["", "think ", "ab"]
    got = scorer.logprobs(prompts, completions, prefixes)
    tok = policy.tokenizer
    for p, c, pre, row in zip(prompts, completions, prefixes, got, strict=True):
        context = prompt_ids(tok, p) + tok(pre, add_special_tokens=False)["input_ids"]
        want = _direct(policy, context, tok(c, add_special_tokens=False)["input_ids"])
        assert len(row) == len(c)
        assert row == pytest.approx(want, abs=1e-5)
    alone = scorer.logprobs(prompts[1:2], completions[1:2], prefixes[1:2])
    assert alone[0] == pytest.approx(got[1], abs=1e-5)
    assert scorer.logprobs(["3+4="], [""]) == [[]]


def test_token_logprobs_cover_eos_and_match_the_learner(policy: Policy) -> None:
    scorer = TrainerScorer(policy, HFGenerator(policy))
    ids = completion_ids(policy.tokenizer, "17", eos=True)
    got = scorer.token_logprobs(["9+8="], [ids])[0]
    assert len(got) == 3
    learner = Learner(policy, TrainerSection())
    p_ids = prompt_ids(policy.tokenizer, "9+8=")
    full = torch.tensor([p_ids + ids])
    with torch.no_grad():
        lp = learner._logprobs(policy.model, full, torch.ones_like(full))[0]
    assert got == pytest.approx(lp[len(p_ids) - 1 :].tolist(), abs=1e-5)


def test_reference_is_frozen_at_attach_time(policy: Policy) -> None:
    pol = _fresh(policy)
    pipe = build_pipeline([("exact_match", 1.0, {}), ("prime", 1.0, {"norm": "none"})])
    scorer = attach_scorer(pipe, pol, HFGenerator(pol))
    assert scorer is not None and scorer.reference is not None
    before = scorer.logprobs(["2+2="], ["4"])[0]
    assert scorer.ref_logprobs(["2+2="], ["4"])[0] == pytest.approx(before, abs=1e-6)
    with torch.no_grad():
        for p in pol.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert scorer.ref_logprobs(["2+2="], ["4"])[0] == pytest.approx(before, abs=1e-6)
    assert scorer.logprobs(["2+2="], ["4"])[0][0] != pytest.approx(before[0], abs=1e-4)


def test_attach_only_when_needed_and_shares_the_kl_reference(policy: Policy) -> None:
    gen = HFGenerator(policy)
    assert attach_scorer(build_pipeline([("exact_match", 1.0, {})]), policy, gen) is None
    likelihood = build_pipeline([("logprob_answer", 1.0, {})])
    scorer = attach_scorer(likelihood, policy, gen)
    assert scorer is not None and scorer.reference is None
    with pytest.raises(RewardError, match="reference"):
        scorer.ref_logprobs(["1+1="], ["2"])
    learner = Learner(_fresh(policy), TrainerSection(kl_coef=0.1))
    prime = build_pipeline([("prime", 1.0, {})])
    shared = attach_scorer(prime, learner.policy, gen, learner)
    assert shared is not None and shared.reference is learner.reference


def test_sample_returns_n_texts_per_prompt_after_the_prefix(policy: Policy) -> None:
    scorer = TrainerScorer(policy, HFGenerator(policy), sampling=SamplingParams(max_new_tokens=3))
    out = scorer.sample(["1+2=", "3+3="], 5, ["", "6"])
    assert [len(r) for r in out] == [5, 5]
    assert all(isinstance(t, str) and len(t) <= 3 for r in out for t in r)
    with pytest.raises(RewardError):
        scorer.sample(["1+2="], 0)


def test_modules_score_with_the_bound_scorer(policy: Policy) -> None:
    pipe = build_pipeline(
        [
            ("logprob_answer", 1.0, {"normalize": "sum"}),
            ("rlpr", 1.0, {}),
            ("prime", 1.0, {"norm": "none", "prm": "policy", "advantage": "dense"}),
            ("igpo", 1.0, {}),
            ("progress_mc", 1.0, {"n": 2}),
        ]
    )
    pol = _fresh(policy)
    scorer = attach_scorer(pipe, pol, HFGenerator(pol), sampling=SamplingParams(max_new_tokens=3))
    assert scorer is not None
    tok = pol.tokenizer
    group = [
        Sample("1+2=", text, "3", completion_ids=completion_ids(tok, text)) for text in ("3", "2;3", "9", "")
    ]
    (sg,) = pipe.score([group])
    # log p(answer "3" | prompt, completion) under the policy, recomputed directly
    ctx = prompt_ids(tok, "1+2=") + tok("2;3<answer>", add_special_tokens=False)["input_ids"]
    want = sum(_direct(pol, ctx, tok("3", add_special_tokens=False)["input_ids"]))
    assert sg.modules["logprob_answer"][1] == pytest.approx(want, abs=1e-4)
    # PRIME against a reference equal to the policy: zero token rewards, one per completion token (EOS too)
    assert sg.token_rewards is not None
    assert [len(r) for r in sg.token_rewards] == [len(s.completion_ids) for s in group]
    assert sg.modules["prime"] == [pytest.approx(0.0, abs=1e-6)] * 4
    assert all(v is not None and math.isfinite(v) for vals in sg.modules.values() for v in vals)


# --- token offsets ---------------------------------------------------------------------------------------


def test_char_tokenizer_offsets_with_eos() -> None:
    tok = build_char_tokenizer()
    ids = completion_ids(tok, "12;19", eos=True)
    offs = token_offsets(tok, "12;19", ids)
    assert offs == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 5)]
    assert step_token_ends("12;19", ["12", "19"], len(ids), offs) == [1, 4]


def _bpe() -> PreTrainedTokenizerFast:
    vocab = {"<eos>": 0, "a": 1, "b": 2, ";": 3, "ab": 4, "abab": 5}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "ab")]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


def test_bpe_offsets_place_steps_on_the_right_token() -> None:
    tok = _bpe()
    text = "abab;a;ab"
    ids = [int(i) for i in tok(text, add_special_tokens=False)["input_ids"]] + [0]
    assert ids == [5, 3, 1, 3, 4, 0]
    offs = token_offsets(tok, text, ids)
    assert offs == [(0, 4), (4, 5), (5, 6), (6, 7), (7, 9), (9, 9)]
    # proportional guessing would put step 1 ("abab", ends at char 4) on token 2; offsets say token 0
    assert step_token_ends(text, ["abab", "a", "ab"], len(ids), offs) == [0, 2, 4]
    assert step_token_ends(text, ["abab", "a", "ab"], len(ids), None) != [0, 2, 4]


class _SlowTok:
    """A duck-typed tokenizer without offsets: decoding only (2-char tokens)."""

    def __init__(self) -> None:
        self.is_fast = False
        self.all_special_ids = [0]
        self.table = {1: "ab", 2: ";", 3: "cd"}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.table.get(i, "") for i in ids)


def test_incremental_decoding_fallback_and_mismatch() -> None:
    tok: Any = _SlowTok()
    assert token_offsets(tok, "ab;cd", [1, 2, 3, 0]) == [(0, 2), (2, 3), (3, 5), (5, 5)]
    assert token_offsets(tok, "something else", [1, 2, 3]) is None


def test_to_samples_fills_offsets() -> None:
    from swarmrl.node.rollouts import to_samples
    from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef

    tok = build_char_tokenizer()
    ref = TaskRef("multistep", "add", "d", 1, 0)
    comp = Completion("1;8", completion_ids(tok, "1;8"), [], True)
    group = RolloutGroup(ref, "0+1+7=", "1;8", [comp])
    (s,) = to_samples(group, None, tok)
    assert s.extras[TOKEN_OFFSETS] == [(0, 1), (1, 2), (2, 3), (3, 3)]
    (bare,) = to_samples(group, None)
    assert TOKEN_OFFSETS not in bare.extras
