"""GRPO loss math on hand-built tensors."""

from __future__ import annotations

import math

import pytest
import torch

from swarmrl.rewards.advantages import compute_advantages, zero_variance
from swarmrl.trainer.grpo import aggregate, grpo_loss, kl_k3, selective_log_softmax


def test_on_policy_loss_is_minus_mean_advantage() -> None:
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    adv = torch.tensor([[1.0, 1.0, 0.0], [-2.0, -2.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    t = grpo_loss(logp, logp.clone(), adv, mask)
    # ratio = 1 everywhere: loss = -(1 + 1 - 2 - 2 - 2) / 5 tokens
    assert t.loss.item() == pytest.approx(4.0 / 5.0)
    assert t.clip_fraction.item() == 0.0
    assert t.ratio_mean.item() == pytest.approx(1.0)


def test_gradient_is_minus_advantage_times_score() -> None:
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[0.5, -1.5]])
    t = grpo_loss(logp, logp.detach(), adv, torch.ones(1, 2))
    t.loss.backward()
    assert logp.grad is not None
    assert logp.grad[0].tolist() == pytest.approx([-0.25, 0.75])


def test_asymmetric_clipping() -> None:
    old = torch.zeros(1, 4)
    # ratios 1.5 and 0.5 with positive and negative advantages
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    t = grpo_loss(logp, old, adv, torch.ones(1, 4), clip_low=0.2, clip_high=0.28, agg="token_mean")
    # per-token surrogate: min(r*A, clip(r)*A): 1.28, -1.5, 0.5, -0.8
    assert t.loss.item() == pytest.approx(-(1.28 - 1.5 + 0.5 - 0.8) / 4)
    # clipped: token 0 (1.5 -> 1.28, A>0) and token 3 (0.5 -> 0.8, A<0)
    assert t.clipped.tolist() == [[True, False, False, True]]
    assert t.clip_fraction.item() == pytest.approx(0.5)


def test_clipped_tokens_have_no_gradient() -> None:
    logp = torch.log(torch.tensor([[1.5, 0.9]])).requires_grad_(True)
    t = grpo_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2))
    t.loss.backward()
    assert logp.grad is not None
    assert logp.grad[0, 0].item() == 0.0
    assert logp.grad[0, 1].item() == pytest.approx(-0.9 / 2)


def test_padding_never_reaches_loss_or_gradient() -> None:
    logp = torch.tensor([[-1.0, -50.0]], requires_grad=True)
    t = grpo_loss(logp, torch.tensor([[-1.0, 3.0]]), torch.tensor([[2.0, 100.0]]), torch.tensor([[1.0, 0.0]]))
    t.loss.backward()
    assert t.loss.item() == pytest.approx(-2.0)
    assert logp.grad is not None and logp.grad[0, 1].item() == 0.0


def test_kl_k3_values_and_penalty() -> None:
    logp = torch.tensor([[0.0, math.log(0.5)]])
    ref = torch.tensor([[0.0, math.log(0.25)]])
    kl = kl_k3(logp, ref)
    assert kl[0, 0].item() == pytest.approx(0.0)
    assert kl[0, 1].item() == pytest.approx(0.5 - math.log(0.5) - 1.0)
    assert (kl >= 0).all()
    base = grpo_loss(logp, logp, torch.zeros(1, 2), torch.ones(1, 2), ref_logp=ref, kl_coef=0.0)
    pen = grpo_loss(logp, logp, torch.zeros(1, 2), torch.ones(1, 2), ref_logp=ref, kl_coef=0.1)
    assert base.kl.item() == pytest.approx(kl.mean().item())
    assert pen.loss.item() - base.loss.item() == pytest.approx(0.1 * kl.mean().item())


def test_aggregation_modes() -> None:
    values = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(values, mask, "token_mean").item() == pytest.approx(6.0 / 3)
    assert aggregate(values, mask, "seq_mean").item() == pytest.approx((2.0 + 2.0) / 2)
    assert aggregate(values, mask, "constant").item() == pytest.approx(6.0 / 6)
    assert aggregate(values, mask, "token_mean", norm=12.0).item() == pytest.approx(0.5)


def test_selective_log_softmax_matches_full() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(0, 11, (3, 5))
    full = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(selective_log_softmax(logits, targets), full, atol=1e-6)


def test_group_advantages_worked_example() -> None:
    # docs/rewards.md section 18: rewards [1, 0, 0, 1]
    (grpo,) = compute_advantages([[1, 0, 0, 1]], "grpo")
    assert grpo == pytest.approx([0.866024, -0.866024, -0.866024, 0.866024], abs=1e-6)
    (dr,) = compute_advantages([[1, 0, 0, 1]], "dr_grpo")
    assert dr == pytest.approx([0.5, -0.5, -0.5, 0.5])
    (rloo,) = compute_advantages([[1, 0, 0, 1]], "rloo")
    assert rloo == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])


def test_zero_variance_group_has_zero_advantage() -> None:
    (adv,) = compute_advantages([[1.0, 1.0, 1.0]], "grpo")
    assert adv == [0.0, 0.0, 0.0]
    assert zero_variance([0.3, 0.3]) and not zero_variance([0.3, 0.4])


def test_importance_weight_scales_the_surrogate_and_is_not_differentiated() -> None:
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0]])
    weight = torch.tensor([[2.0, 0.5]], requires_grad=True)
    t = grpo_loss(logp, logp.detach(), adv, torch.ones(1, 2), weight=weight)
    assert t.loss.item() == pytest.approx(-(2.0 + 0.5) / 2)
    t.loss.backward()
    assert logp.grad is not None and logp.grad[0].tolist() == pytest.approx([-1.0, -0.25])
    assert weight.grad is None
