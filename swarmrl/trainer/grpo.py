"""GRPO math as small pure functions over tensors: token log-probs, the clipped surrogate, KL.

Shapes: ``B`` sequences, ``T`` completion positions. Every loss term is masked by ``mask`` (1 for a real
completion token, 0 for padding) so padding never reaches the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

LossAgg = Literal["token_mean", "seq_mean", "constant"]


def selective_log_softmax(
    logits: torch.Tensor, targets: torch.Tensor, chunk_elements: int = 1 << 24
) -> torch.Tensor:
    """log p(target) per position without materialising a full log-softmax copy of ``[B, T, V]`` at once.

    Rows are processed in chunks of at most ``chunk_elements`` logits (a few at a time for big vocabularies,
    all at once for small ones: one kernel instead of one per row), each upcast to float32.
    """
    per_row = max(1, logits[0].numel()) if logits.shape[0] else 1
    step = max(1, chunk_elements // per_row)
    parts = []
    for start in range(0, logits.shape[0], step):
        chunk = logits[start : start + step].float()
        picked = chunk.gather(-1, targets[start : start + step].unsqueeze(-1)).squeeze(-1)
        parts.append(picked - torch.logsumexp(chunk, dim=-1))
    if not parts:
        return logits.new_zeros(targets.shape, dtype=torch.float32)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate ``exp(ref - logp) - (ref - logp) - 1`` (non-negative, unbiased)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


@dataclass
class LossTerms:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    kl: torch.Tensor
    ratio_mean: torch.Tensor
    clipped: torch.Tensor  # [B, T] bool, for per-origin statistics


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, agg: LossAgg, norm: float | None = None
) -> torch.Tensor:
    """Reduce per-token ``values`` over the mask.

    ``token_mean``: sum / number of tokens (or ``norm``, the token count of the whole minibatch, when
    accumulating gradients over micro-batches); ``seq_mean``: mean over sequences of per-sequence means;
    ``constant``: sum / (B * T) as in Dr. GRPO.
    """
    if agg == "token_mean":
        denom = norm if norm is not None else mask.sum().clamp(min=1.0)
        return (values * mask).sum() / denom
    if agg == "seq_mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_seq.sum() / (norm if norm is not None else max(values.shape[0], 1))
    return (values * mask).sum() / (norm if norm is not None else max(mask.numel(), 1))


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    agg: LossAgg = "token_mean",
    norm: float | None = None,
    weight: torch.Tensor | None = None,
) -> LossTerms:
    """The clipped policy-gradient surrogate with asymmetric clipping and an optional KL penalty.

    ``advantages`` is per token ``[B, T]`` (outcome advantages broadcast, or dense shaped ones).
    loss = -w * min(r * A, clip(r, 1 - clip_low, 1 + clip_high) * A) + kl_coef * KL, aggregated over the mask;
    ``weight`` (w, default 1) is a per-token importance weight that is not differentiated (decoupled PPO).
    """
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    surrogate = torch.minimum(unclipped, clipped_ratio * advantages)
    per_token = -surrogate if weight is None else -surrogate * weight.detach()
    was_clipped = (clipped_ratio * advantages < unclipped) & (mask > 0)
    kl = torch.zeros((), dtype=logp.dtype)
    if ref_logp is not None:
        kl_tok = kl_k3(logp, ref_logp)
        kl = aggregate(kl_tok.detach(), mask, "token_mean")
        if kl_coef > 0:
            per_token = per_token + kl_coef * kl_tok
    n_tok = mask.sum().clamp(min=1.0)
    return LossTerms(
        loss=aggregate(per_token, mask, agg, norm),
        clip_fraction=was_clipped.to(logp.dtype).sum().detach() / n_tok,
        kl=kl,
        ratio_mean=((ratio * mask).sum() / n_tok).detach(),
        clipped=was_clipped,
    )
