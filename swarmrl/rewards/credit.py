"""Credit assignment: step/token rewards -> per-token values that enter the loss.

The pipeline places each step reward on the step's last token (docs/rewards.md sections 2, 3, 14, 15: "placed
at the step's last token") and turns the placed rewards into per-token values with one of:

* ``returns`` (default): ``G_t = sum_{t' >= t} r_{t'}`` with gamma = 1 (PURE approx-min, IGPO, PRIME);
* ``strict_min``: ``G_t = min(r_t, G_{t+1})`` backwards (PURE strict min-form, section 3). With
  ``mask_non_steps`` (default) positions that carry no reward are +inf, giving a pure step-level min; without
  it they count as 0, which is what PURE's code computes (effective value ``min(0, future steps)``);
* ``raw``: the placed rewards themselves;
* ``sum_to_outcome``: no per-token values; the dense total is added to the completion's scalar reward before
  advantage normalisation (verl GRPO sums token rewards away, section 0.2).

Optional baselines over the group: ``position_mean`` (IGPO: subtract the group mean at the same token
position) and ``rloo_token`` (PURE: ``b_i = sum_{j != i} sum_t G_{j,t} / ((n - 1) * L_max)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from swarmrl.errors import RewardError

CreditMode = Literal["returns", "strict_min", "raw", "sum_to_outcome"]
Baseline = Literal["none", "position_mean", "rloo_token"]


@dataclass(frozen=True)
class CreditConfig:
    """Pipeline-level credit assignment (see module docstring). ``scale`` multiplies the per-token values."""

    mode: CreditMode = "returns"
    baseline: Baseline = "none"
    mask_non_steps: bool = True
    scale: float = 1.0

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> CreditConfig:
        cfg = dict(config or {})
        unknown = set(cfg) - {"mode", "baseline", "mask_non_steps", "scale"}
        if unknown:
            raise RewardError(
                f"unknown credit options {sorted(unknown)}; use mode, baseline, mask_non_steps, scale"
            )
        if cfg.get("mode", "returns") not in ("returns", "strict_min", "raw", "sum_to_outcome"):
            raise RewardError("credit.mode must be returns, strict_min, raw or sum_to_outcome")
        if cfg.get("baseline", "none") not in ("none", "position_mean", "rloo_token"):
            raise RewardError("credit.baseline must be none, position_mean or rloo_token")
        scale = float(cfg.get("scale", 1.0))
        if not math.isfinite(scale) or not 0.0 <= scale <= 1e6:
            raise RewardError("credit.scale must be a finite number in [0, 1e6]")
        cfg["scale"] = scale
        return cls(**cfg)


def place(
    step_rewards: Sequence[float], token_ends: Sequence[int], n_tokens: int
) -> tuple[list[float], list[bool]]:
    """Token rewards with each step reward on its last token; the mask marks positions holding a reward."""
    if len(step_rewards) != len(token_ends):
        raise RewardError(f"{len(step_rewards)} step rewards for {len(token_ends)} steps")
    rewards = [0.0] * n_tokens
    mask = [False] * n_tokens
    for r, end in zip(step_rewards, token_ends, strict=True):
        if not 0 <= end < n_tokens:
            raise RewardError(f"step end token {end} outside a completion of {n_tokens} tokens")
        rewards[end] += float(r)
        mask[end] = True
    return rewards, mask


def returns(rewards: Sequence[float]) -> list[float]:
    """Reverse cumulative sum (gamma = 1)."""
    out = [0.0] * len(rewards)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc += rewards[t]
        out[t] = acc
    return out


def strict_min_returns(
    rewards: Sequence[float], mask: Sequence[bool] | None = None, mask_non_steps: bool = True
) -> list[float]:
    """``G_t = min(r_t, G_{t+1})`` backwards; masked-out positions are +inf (or 0 without masking).

    Positions after the last rewarded one have no future step and get 0.
    """
    if mask is None:
        mask = [True] * len(rewards)
    out = [0.0] * len(rewards)
    acc = math.inf
    for t in range(len(rewards) - 1, -1, -1):
        value = rewards[t] if mask[t] else (math.inf if mask_non_steps else 0.0)
        acc = min(acc, value)
        out[t] = 0.0 if math.isinf(acc) else acc
    return out


def apply_baseline(rows: Sequence[Sequence[float]], baseline: Baseline) -> list[list[float]]:
    """Subtract a group baseline from per-token values (rows may have different lengths)."""
    if baseline == "none" or len(rows) < 2:
        return [list(r) for r in rows]
    if baseline == "position_mean":
        width = max((len(r) for r in rows), default=0)
        means = []
        for t in range(width):
            col = [r[t] for r in rows if t < len(r)]
            means.append(sum(col) / len(col))
        return [[v - means[t] for t, v in enumerate(r)] for r in rows]
    if baseline == "rloo_token":
        n = len(rows)
        l_max = max((len(r) for r in rows), default=0)
        if l_max == 0:
            return [list(r) for r in rows]
        totals = [sum(r) for r in rows]
        grand = sum(totals)
        return [[v - (grand - totals[i]) / ((n - 1) * l_max) for v in r] for i, r in enumerate(rows)]
    raise RewardError(f"unknown credit baseline '{baseline}'")


def assign(
    rewards_rows: Sequence[Sequence[float]], masks: Sequence[Sequence[bool]], config: CreditConfig
) -> list[list[float]]:
    """Per-token values for one group from placed rewards, following ``config``."""
    if config.mode == "returns":
        rows = [returns(r) for r in rewards_rows]
    elif config.mode == "strict_min":
        rows = [
            strict_min_returns(r, m, config.mask_non_steps) for r, m in zip(rewards_rows, masks, strict=True)
        ]
    elif config.mode == "raw":
        rows = [list(r) for r in rewards_rows]
    else:
        raise RewardError(f"credit mode '{config.mode}' produces no per-token values")
    rows = apply_baseline(rows, config.baseline)
    if config.scale != 1.0:
        rows = [[config.scale * v for v in r] for r in rows]
    return rows
