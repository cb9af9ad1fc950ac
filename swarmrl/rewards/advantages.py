"""Advantage estimators over groups of scalar rewards (docs/rewards.md section 18). Pure NumPy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from swarmrl.errors import InvalidValue

Estimator = Literal["grpo", "dr_grpo", "rloo", "batch_std"]


def grpo(rewards: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Group z-score with the unbiased std; a group of one gets advantage 0."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size < 2:
        return [0.0] * int(r.size)
    return ((r - r.mean()) / (r.std(ddof=1) + eps)).tolist()


def dr_grpo(rewards: Sequence[float]) -> list[float]:
    """Dr. GRPO: mean-centred, no std scaling."""
    r = np.asarray(rewards, dtype=np.float64)
    return (r - r.mean()).tolist() if r.size else []


def rloo(rewards: Sequence[float]) -> list[float]:
    """Leave-one-out baseline: r_i minus the mean of the other rewards."""
    r = np.asarray(rewards, dtype=np.float64)
    n = r.size
    if n < 2:
        return [0.0] * n
    return (r - (r.sum() - r) / (n - 1)).tolist()


def compute_advantages(
    groups: Sequence[Sequence[float]], estimator: Estimator = "grpo", eps: float = 1e-6
) -> list[list[float]]:
    """Per-completion advantages for each group. ``batch_std``: group mean, std over the whole batch."""
    if estimator == "grpo":
        return [grpo(g, eps) for g in groups]
    if estimator == "dr_grpo":
        return [dr_grpo(g) for g in groups]
    if estimator == "rloo":
        return [rloo(g) for g in groups]
    if estimator == "batch_std":
        flat = np.asarray([x for g in groups for x in g], dtype=np.float64)
        std = float(flat.std(ddof=1)) if flat.size > 1 else 0.0
        return [((np.asarray(g) - np.mean(g)) / (std + 1e-4)).tolist() if len(g) else [] for g in groups]
    raise InvalidValue(f"unknown advantage estimator '{estimator}'")


def zero_variance(rewards: Sequence[float], tol: float = 1e-9) -> bool:
    """True when every completion of the group got the same reward (no learning signal)."""
    return len(rewards) < 2 or (max(rewards) - min(rewards)) <= tol


ESTIMATORS: tuple[str, ...] = ("grpo", "dr_grpo", "rloo", "batch_std")
"""Names accepted by :func:`compute_advantages` (and ``trainer.advantage``)."""

EPS_VERL = 1e-6
EPS_TRL = 1e-4
EPS_OPENRLHF = 1e-9


def grpo_single_verl(rewards: Sequence[float], eps: float = EPS_VERL) -> list[float]:
    """verl's GRPO, including its single-sample rule (mean 0, std 1, so ``A = r / (1 + eps)``)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 1:
        return (r / (1.0 + eps)).tolist()
    return grpo(rewards, eps)


def gdpo(
    per_module: Sequence[Sequence[Sequence[float]]], weights: Sequence[float], eps: float = EPS_TRL
) -> list[list[float]]:
    """TRL ``normalize_then_sum`` (GDPO): per-module group z-score, weighted sum, then a batch z-score.

    ``per_module[m][g][i]`` is module m's reward for completion i of group g.
    """
    if len(per_module) != len(weights) or not per_module:
        raise InvalidValue("gdpo needs one weight per module and at least one module")
    n_groups = len(per_module[0])
    summed: list[np.ndarray] = []
    for g in range(n_groups):
        acc = None
        for m, w in zip(per_module, weights, strict=True):
            z = np.asarray(grpo(m[g], eps), dtype=np.float64) * w
            acc = z if acc is None else acc + z
        summed.append(acc if acc is not None else np.zeros(0))
    flat = np.concatenate(summed) if summed else np.zeros(0)
    if flat.size < 2:
        return [s.tolist() for s in summed]
    mean, std = flat.mean(), flat.std(ddof=1)
    return [((s - mean) / (std + eps)).tolist() for s in summed]


def process_grpo(step_rewards: Sequence[Sequence[float]], eps: float = EPS_VERL) -> list[list[float]]:
    """DeepSeekMath process supervision for one group: z-score all step rewards of the group jointly, then
    each step's advantage is the sum of normalised rewards of the steps ending at or after it."""
    flat = np.asarray([x for row in step_rewards for x in row], dtype=np.float64)
    if flat.size == 0:
        return [[] for _ in step_rewards]
    mean = flat.mean()
    std = flat.std(ddof=1) if flat.size > 1 else 1.0
    out = []
    for row in step_rewards:
        z = (np.asarray(row, dtype=np.float64) - mean) / (std + eps)
        out.append(np.cumsum(z[::-1])[::-1].tolist())
    return out
