"""The learner's fast paths give what the plain path gives: shared-prompt KV reuse, micro-batch ordering,
chunked log-softmax (performance changes must not change the math)."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.config.sections import TrainerSection
from swarmrl.trainer.grpo import selective_log_softmax
from swarmrl.trainer.learner import Learner, StepStats, TrainSequence
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.tokenizer import build_char_tokenizer


def _policy() -> Policy:
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    config = tiny_qwen2_config(
        tok, hidden_size=32, intermediate_size=64, layers=2, heads=4, kv_heads=2, max_position_embeddings=128
    )
    return Policy(Qwen2ForCausalLM(config), tok, torch.device("cpu"), "t")


def _sequences(seed: int = 1) -> list[TrainSequence]:
    """Five groups of four completions; groups share a prompt; lengths vary; some lack behaviour log-probs."""
    rng = random.Random(seed)
    out = []
    for g in range(5):
        prompt = [1] + [rng.randrange(4, 90) for _ in range(rng.randint(2, 7))]
        for k in range(4):
            comp = [rng.randrange(4, 90) for _ in range(rng.choice([1, 2, 3, 6]))]
            old = [rng.uniform(-6.0, -3.0) for _ in comp] if k % 2 == 0 else None
            adv = [rng.gauss(0.0, 1.0) for _ in comp]
            out.append(TrainSequence(prompt, comp, adv, old, "local" if g < 3 else "external"))
    return out


def _run(cfg: TrainerSection, path: str, seqs: list[TrainSequence]) -> tuple[StepStats, list[torch.Tensor]]:
    """``path``: "packed" (one packed call), "shared" (prompt KV cache, then completions) or "plain"."""
    policy = _policy()
    learner = Learner(policy, cfg)
    assert learner._pack == "bool"  # the tiny Qwen2 with sdpa packs by default
    if path != "packed":
        learner._pack = None
    if path == "plain":
        learner._cache_name = None  # force the single right-padded pass
    stats = learner.step(copy.deepcopy(seqs))
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in policy.model.parameters()]
    return stats, grads


def _assert_same(a: tuple[StepStats, list[torch.Tensor]], b: tuple[StepStats, list[torch.Tensor]]) -> None:
    (sa, ga), (sb, gb) = a, b
    for name in ("loss", "kl", "clip_fraction", "grad_norm"):
        assert getattr(sa, name) == pytest.approx(getattr(sb, name), rel=1e-4, abs=1e-6), name
    assert sa.tokens == sb.tokens and sa.optimizer_steps == sb.optimizer_steps
    assert sa.ratio_mean_by_origin == pytest.approx(sb.ratio_mean_by_origin, rel=1e-5)
    assert sa.clip_fraction_by_origin == pytest.approx(sb.clip_fraction_by_origin, abs=1e-6)
    scale = max(float(g.abs().max()) for g in gb)
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"kl_coef": 0.1},
        {"loss_agg": "seq_mean", "micro_batch": 6},
        {"loss_agg": "constant", "micro_batch": 7, "updates_per_round": 2},
        {"updates_per_round": 3, "micro_batch": 4},
    ],
)
@pytest.mark.parametrize("path", ["packed", "shared"])
def test_fast_paths_equal_plain_path(options: dict[str, object], path: str) -> None:
    # A tiny learning rate keeps later minibatches on (numerically) the same weights in both runs.
    cfg = TrainerSection(lr=1e-9, **options)  # type: ignore[arg-type]
    seqs = _sequences()
    _assert_same(_run(cfg, path, seqs), _run(cfg, "plain", seqs))


def test_shared_path_is_taken_and_logprobs_match() -> None:
    policy = _policy()
    learner = Learner(policy, TrainerSection())
    assert learner._cache_name is not None
    from swarmrl.trainer.learner import _Micro

    batch = _Micro(_sequences(), policy.pad_id, policy.device)
    assert batch.shares_prompts and len(batch.prompts) == 5
    shared = learner._completion_logprobs(policy.model, batch)
    learner._cache_name = None
    plain = learner._completion_logprobs(policy.model, batch)
    mask = batch.cmask > 0
    assert torch.allclose(shared[mask], plain[mask], atol=1e-5)
    assert torch.isfinite(shared).all()


def test_micro_batch_split_and_order_do_not_change_the_update() -> None:
    seqs = _sequences(seed=3)
    whole = _run(TrainerSection(lr=1e-9, micro_batch=64), "shared", seqs)
    split = _run(TrainerSection(lr=1e-9, micro_batch=3), "shared", seqs)
    _assert_same(whole, split)


def test_chunked_selective_log_softmax_equals_per_row() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 7, 11)
    targets = torch.randint(0, 11, (5, 7))
    ref = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    for chunk in (1, 77, 200, 1 << 24):
        assert torch.allclose(selective_log_softmax(logits, targets, chunk_elements=chunk), ref, atol=1e-6)


def test_entry_reference_of_the_first_minibatch_needs_no_extra_pass() -> None:
    """Sequences without behaviour log-probs use the policy at batch entry. Giving them those log-probs
    explicitly (computed before any update) must give the same updates, with a real learning rate: the
    first minibatch reads them from its own forward, later ones from one frozen pass."""
    seqs = _sequences(seed=5)
    cfg = TrainerSection(lr=1e-2, updates_per_round=3, micro_batch=4)
    implicit_policy = _policy()
    implicit = Learner(implicit_policy, cfg)
    explicit_policy = _policy()
    explicit = Learner(explicit_policy, cfg)
    entry = explicit._current_logprobs([s for s in seqs if s.old_logprobs is None])
    with_old = [
        s
        if s.old_logprobs is not None
        else TrainSequence(s.prompt_ids, s.completion_ids, s.advantages, entry[id(s)], s.origin)
        for s in seqs
    ]
    calls: list[int] = []
    real = implicit._current_logprobs
    implicit._current_logprobs = lambda xs: calls.append(len(xs)) or real(xs)  # type: ignore[method-assign]
    a = implicit.step(copy.deepcopy(seqs))
    b = explicit.step(with_old)
    first = math.ceil(len(seqs) / 3)
    assert calls == [sum(1 for s in seqs[first:] if s.old_logprobs is None)]
    assert a.loss == pytest.approx(b.loss, rel=1e-4, abs=1e-6)
    for x, y in zip(implicit_policy.model.parameters(), explicit_policy.model.parameters(), strict=True):
        assert torch.allclose(x, y, atol=1e-5)
    assert any(
        not torch.allclose(x, y)
        for x, y in zip(implicit_policy.model.parameters(), _policy().model.parameters(), strict=True)
    )


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logprobs_match_per_sequence_forward(attn: str) -> None:
    """The packed call (one sequence, block mask, restarted positions) gives every completion token the
    log-prob a separate forward of [prompt | completion] gives it, with both attention kernels."""
    from swarmrl.trainer.learner import _Micro
    from swarmrl.trainer.packing import pack_mode, packed_logprobs

    policy = _policy()
    policy.model.config._attn_implementation = attn
    mode = pack_mode(policy.model)
    assert mode == {"sdpa": "bool", "eager": "additive"}[attn]
    seqs = _sequences(seed=7)
    batch = _Micro(seqs, policy.pad_id, policy.device)
    with torch.no_grad():
        packed = packed_logprobs(
            policy.model, batch.prompts, batch.group.tolist(), batch.completions, batch.comp, mode
        )
        for row, s in enumerate(seqs):
            ids = torch.tensor([s.prompt_ids + s.completion_ids])
            logits = policy.model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1]
            alone = torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.completion_ids)[:, None])[:, 0]
            assert torch.allclose(packed[row, : len(s.completion_ids)], alone, atol=1e-5), row


def test_models_that_cannot_pack_are_refused() -> None:
    from swarmrl.trainer.packing import pack_mode

    policy = _policy()
    policy.model.config._attn_implementation = "flash_attention_2"
    assert pack_mode(policy.model) is None
    policy = _policy()
    policy.model.config.use_sliding_window, policy.model.config.sliding_window = True, 16
    assert pack_mode(policy.model) is None
    policy = _policy()
    policy.model.config.model_type = "bloom"  # ALiBi: position comes from the mask, not position ids
    assert pack_mode(policy.model) is None
