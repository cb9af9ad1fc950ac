"""The KV-cache sampling loop of ``HFGenerator`` against transformers ``generate`` and a full forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.trainer.generation import HFGenerator, SamplingParams, build_generator, sample_tokens
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.prompts import prompt_ids
from swarmrl.trainer.tokenizer import build_char_tokenizer

QUESTIONS = ["1+2=", "13+24=", "7*8=", "100-1=", "5=", "9+9+9="]


@dataclass
class _EosPolicy(Policy):
    """A policy whose end-of-sequence token is chosen by the test (to make rows stop at different steps)."""

    eos_override: int = -1

    @property
    def eos_id(self) -> int:
        return self.eos_override if self.eos_override >= 0 else super().eos_id


def _policy(seed: int = 0, eos: int = -1) -> _EosPolicy:
    tok = build_char_tokenizer()
    torch.manual_seed(seed)
    config = tiny_qwen2_config(
        tok,
        hidden_size=32,
        intermediate_size=64,
        layers=2,
        heads=4,
        kv_heads=2,
        max_position_embeddings=128,
        initializer_range=0.3,
    )
    model = Qwen2ForCausalLM(config).eval()
    return _EosPolicy(model=model, tokenizer=tok, device=torch.device("cpu"), name="t", eos_override=eos)


def _prompts(policy: Policy) -> list[list[int]]:
    return [prompt_ids(policy.tokenizer, q) for q in QUESTIONS]


def _stopping_eos(policy: _EosPolicy, steps: int) -> int:
    """A token that greedy decoding emits at different steps in different rows (so rows finish apart)."""
    outs = HFGenerator(policy, engine="generate").generate(
        _prompts(policy), SamplingParams(n=1, max_new_tokens=steps, greedy=True)
    )
    first_step: dict[int, dict[int, int]] = {}  # token -> row -> first step it appears at
    for row, (comp,) in enumerate(outs):
        for t, tok in enumerate(comp.token_ids):
            first_step.setdefault(tok, {}).setdefault(row, t)
    for tok, rows in sorted(first_step.items(), key=lambda kv: -len(set(kv[1].values()))):
        if len(set(rows.values())) > 1 and tok != policy.tokenizer.eos_token_id:
            return tok
    pytest.skip("random model emitted no token usable as a staggered eos")


def test_greedy_equals_transformers_generate_with_staggered_stops() -> None:
    policy = _policy()
    policy.eos_override = _stopping_eos(policy, 12)
    params = SamplingParams(n=1, max_new_tokens=12, greedy=True)
    ours = HFGenerator(policy, engine="loop").generate(_prompts(policy), params)
    ref = HFGenerator(policy, engine="generate").generate(_prompts(policy), params)
    assert [c[0].token_ids for c in ours] == [c[0].token_ids for c in ref]
    assert [c[0].finished for c in ours] == [c[0].finished for c in ref]
    assert [c[0].text for c in ours] == [c[0].text for c in ref]
    lengths = {len(c[0].token_ids) for c in ours}
    assert len(lengths) > 1, "rows should stop at different steps"
    for a, b in zip(ours, ref, strict=True):
        assert a[0].logprobs == pytest.approx(b[0].logprobs, abs=1e-4)


def test_logprobs_match_a_full_forward_pass() -> None:
    policy = _policy(seed=1)
    torch.manual_seed(5)
    prompts = _prompts(policy)
    outs = HFGenerator(policy).generate(
        prompts, SamplingParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=10)
    )
    assert [len(g) for g in outs] == [3] * len(prompts)
    with torch.no_grad():
        for prompt, group in zip(prompts, outs, strict=True):
            for comp in group:
                ids = torch.tensor([prompt + comp.token_ids])
                logits = policy.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
                full = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(comp.token_ids)[:, None])
                assert comp.logprobs == pytest.approx(full.squeeze(-1).tolist(), abs=1e-4)
                assert len(comp.logprobs) == len(comp.token_ids) <= 10


def test_completion_fields_and_eos_handling() -> None:
    policy = _policy(seed=2)
    policy.eos_override = _stopping_eos(policy, 8)
    outs = HFGenerator(policy).generate(_prompts(policy), SamplingParams(n=2, max_new_tokens=8, greedy=True))
    assert all(len(g) == 1 for g in outs)  # greedy: one completion per prompt
    for (comp,) in outs:
        eos = policy.eos_id
        assert comp.finished == (comp.token_ids[-1] == eos)
        assert eos not in comp.token_ids[:-1]
        body = comp.token_ids[:-1] if comp.finished else comp.token_ids
        assert comp.text == policy.tokenizer.decode(body, skip_special_tokens=True)
        assert comp.finished or len(comp.token_ids) == 8


def test_chunking_and_seeding_are_consistent() -> None:
    policy = _policy(seed=3)
    params = SamplingParams(n=4, max_new_tokens=6)
    torch.manual_seed(11)
    a = HFGenerator(policy).generate(_prompts(policy), params)
    torch.manual_seed(11)
    b = HFGenerator(policy).generate(_prompts(policy), params)
    assert [[c.token_ids for c in g] for g in a] == [[c.token_ids for c in g] for g in b]
    greedy = SamplingParams(n=1, max_new_tokens=6, greedy=True)
    whole = HFGenerator(policy).generate(_prompts(policy), greedy)
    chunked = HFGenerator(policy, max_batch=2).generate(_prompts(policy), greedy)
    assert [g[0].token_ids for g in whole] == [g[0].token_ids for g in chunked]


def test_sampling_draws_differ_within_a_group_and_training_mode_is_restored() -> None:
    policy = _policy(seed=4)
    policy.model.train()
    torch.manual_seed(0)
    outs = HFGenerator(policy).generate(_prompts(policy)[:1], SamplingParams(n=8, max_new_tokens=6))
    assert len({tuple(c.token_ids) for c in outs[0]}) > 1
    assert policy.model.training


def test_top_p_and_greedy_selection() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, -2.0], [5.0, 0.0, 0.0, 4.9]])
    assert sample_tokens(logits, SamplingParams(greedy=True)).tolist() == [1, 0]
    torch.manual_seed(0)
    for _ in range(20):  # a tiny nucleus keeps only the most likely token
        assert sample_tokens(logits, SamplingParams(top_p=0.01)).tolist() == [1, 0]
    torch.manual_seed(0)
    drawn = {int(sample_tokens(logits, SamplingParams(top_p=0.99))[1]) for _ in range(200)}
    assert drawn == {0, 3}  # tokens 1 and 2 of row 2 lie outside the 0.99 nucleus


def test_build_generator_and_engine_errors() -> None:
    policy = _policy()
    assert isinstance(build_generator("hf", policy), HFGenerator)
    with pytest.raises(ValueError, match="unknown generation backend"):
        build_generator("nope", policy)
    with pytest.raises(ValueError, match="unknown engine"):
        HFGenerator(policy, engine="fast")
