"""Real-model knobs: the learning-rate schedules (hand-computed values, resume), masking truncated completions,
LoRA options reaching peft, gradient checkpointing and the MPS code path."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.config.sections import ModelSection, TrainerSection
from swarmrl.errors import ModelError
from swarmrl.trainer.learner import Learner, TrainSequence, lr_factor
from swarmrl.trainer.policy import (
    Policy,
    enable_gradient_checkpointing,
    lora_config,
    resolve_device,
    tiny_qwen2_config,
)
from swarmrl.trainer.tokenizer import build_char_tokenizer


def _policy(seed: int = 0) -> Policy:
    tok = build_char_tokenizer()
    torch.manual_seed(seed)
    config = tiny_qwen2_config(tok, hidden_size=32, intermediate_size=64, layers=1, heads=2)
    return Policy(Qwen2ForCausalLM(config), tok, torch.device("cpu"), "t")


def _seqs(policy: Policy, finished: bool) -> list[TrainSequence]:
    tail = [policy.eos_id] if finished else [12]
    return [
        TrainSequence([1, 20, 21], [10, 11, *tail], [1.0, 1.0, 1.0], None),
        TrainSequence([1, 20, 21], [13, 14, *tail], [-1.0, -1.0, -1.0], None),
    ]


def test_cosine_schedule_matches_hand_computed_values() -> None:
    # lr 1e-3, 2 warm-up steps, 10 steps in all: warm-up 0, 0.5e-3; then cos over the remaining 8 steps.
    cfg = TrainerSection(lr=1e-3, lr_schedule="cosine", warmup_steps=2, updates_per_round=1)
    learner = Learner(_policy(), cfg, schedule_steps=10)
    hand = [0.0, 0.5e-3]
    hand += [1e-3 * 0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    # written out: k=0 1e-3, k=2 cos(pi/4) -> 0.853553e-3, k=4 0.5e-3, k=6 0.146447e-3, k=7 0.038060e-3
    assert hand[2] == pytest.approx(1e-3) and hand[4] == pytest.approx(0.85355339e-3)
    assert hand[6] == pytest.approx(0.5e-3) and hand[8] == pytest.approx(0.14644661e-3)
    assert hand[9] == pytest.approx(0.03806023e-3)
    seen = []
    for _ in range(10):
        stats = learner.step(_seqs(learner.policy, True))
        seen.append(stats.lr)
        assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(stats.lr)
    assert seen == pytest.approx(hand, abs=1e-12)
    assert learner.current_lr() == 0.0  # past the horizon: decayed to zero


def test_linear_and_constant_schedules_and_transformers_agree() -> None:
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    assert [lr_factor("linear", s, 2, 6) for s in range(7)] == pytest.approx([0, 0.5, 1, 0.75, 0.5, 0.25, 0])
    assert [lr_factor("constant", s, 4, 0) for s in range(6)] == [0, 0.25, 0.5, 0.75, 1, 1]
    makers = {
        "linear": lambda o: get_linear_schedule_with_warmup(o, 3, 20),
        "cosine": lambda o: get_cosine_schedule_with_warmup(o, 3, 20),
        "constant": lambda o: get_constant_schedule_with_warmup(o, 3),
    }
    for name, make in makers.items():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt)
        theirs = []
        for _ in range(20):
            theirs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert [lr_factor(name, s, 3, 20) for s in range(20)] == pytest.approx(theirs), name


def test_schedule_resumes_from_the_policy_version() -> None:
    cfg = TrainerSection(lr=1e-3, lr_schedule="linear", warmup_steps=1, updates_per_round=1)
    straight = Learner(_policy(), cfg, schedule_steps=6)
    rates = [straight.step(_seqs(straight.policy, True)).lr for _ in range(6)]
    resumed = Learner(_policy(), cfg, schedule_steps=6)
    resumed.version = 3  # what a checkpoint restores
    assert [resumed.step(_seqs(resumed.policy, True)).lr for _ in range(3)] == pytest.approx(rates[3:])
    with pytest.raises(ModelError, match="horizon"):
        Learner(_policy(), cfg, schedule_steps=0)


def test_masked_truncated_completions_get_zero_loss_weight() -> None:
    def update(mask: bool, finished: bool) -> tuple[float, int]:
        cfg = TrainerSection(lr=1e-2, updates_per_round=1, mask_truncated_completions=mask)
        learner = Learner(_policy(), cfg)
        before = [p.detach().clone() for p in learner.policy.model.parameters()]
        stats = learner.step(_seqs(learner.policy, finished))
        moved = sum(
            float((p - b).abs().sum()) for p, b in zip(learner.policy.model.parameters(), before, strict=True)
        )
        return moved, stats.truncated_masked

    assert update(mask=True, finished=False) == (0.0, 2)  # every completion truncated: nothing to learn
    moved, masked = update(mask=False, finished=False)
    assert moved > 0 and masked == 0
    moved, masked = update(mask=True, finished=True)  # finished completions are untouched by the option
    assert moved > 0 and masked == 0


def test_masking_keeps_the_finished_completions_update() -> None:
    """One truncated + one finished: masked, the update equals training on the finished one alone."""
    cfg = TrainerSection(lr=1e-2, updates_per_round=1, mask_truncated_completions=True)
    a, b = Learner(_policy(), cfg), Learner(_policy(), cfg)
    finished = _seqs(a.policy, True)[0]
    truncated = _seqs(a.policy, False)[1]
    a.step([finished, truncated])
    b.step([finished])
    for pa, pb in zip(a.policy.model.parameters(), b.policy.model.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_lora_options_reach_peft() -> None:
    pytest.importorskip("peft")
    cfg = ModelSection(lora_rank=4, lora_alpha=12, lora_dropout=0.1, lora_target_modules=["q_proj", "v_proj"])
    conf = lora_config(cfg)
    assert (conf.r, conf.lora_alpha, conf.lora_dropout) == (4, 12, 0.1)
    assert set(conf.target_modules) == {"q_proj", "v_proj"}
    default = lora_config(ModelSection(lora_rank=8))
    assert default.lora_alpha == 16 and default.target_modules == "all-linear"
    from swarmrl.trainer.policy import _with_lora

    model = _with_lora(_policy().model, cfg)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in names)
    with pytest.raises(ModelError, match="lora_target_modules"):
        _with_lora(_policy().model, ModelSection(lora_rank=4, lora_target_modules=["no_such_proj"]))


def test_gradient_checkpointing_trains_and_matches_the_plain_update() -> None:
    cfg = TrainerSection(lr=1e-2, updates_per_round=1)
    plain, ckpt = _policy(), _policy()
    enable_gradient_checkpointing(ckpt.model)
    assert ckpt.model.is_gradient_checkpointing
    Learner(plain, cfg).step(_seqs(plain, True))
    Learner(ckpt, cfg).step(_seqs(ckpt, True))
    for pa, pb in zip(plain.model.parameters(), ckpt.model.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)
    assert not ckpt.model.training  # back in eval mode for generation


def test_mps_is_a_code_path_that_refuses_clearly_without_apple_hardware() -> None:
    assert ModelSection(device="mps").device == "mps"
    if torch.backends.mps.is_available():  # pragma: no cover - no Apple hardware in CI
        assert resolve_device("mps").type == "mps"
    else:
        with pytest.raises(ModelError, match="Apple-silicon"):
            resolve_device("mps")


def test_truncated_fraction_counts_completions_without_an_end_token() -> None:
    from swarmrl.node.summary import truncated_fraction
    from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef

    ref = TaskRef("arithmetic", "add", "d", 0, 1)
    groups = [
        RolloutGroup(ref, "q", "a", [Completion("7", finished=True), Completion("77", finished=False)]),
        RolloutGroup(ref, "q", "a", [Completion("7", finished=False), Completion("8", finished=False)]),
    ]
    assert truncated_fraction(groups) == 0.75
    assert truncated_fraction([]) == 0.0
