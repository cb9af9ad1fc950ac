"""Compare two reward pipelines on recorded groups: per-group Pearson and Spearman correlation, and a
STARC-style distance (Skalse et al.): canonicalise each group's rewards by removing the group mean (the
part GRPO ignores anyway), scale to unit L2 norm, and take the L2 distance (0 = same ordering and relative
spacing, 2 = exactly opposite). Groups where a pipeline gives all-equal rewards have no correlation (they
are counted, not averaged); their canonical vector is zero.

The compared value is each completion's trajectory return, ``ScoredGroup.totals`` (outcome + dense total).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.pipeline import RewardPipeline


@dataclass
class GroupComparison:
    pearson: float | None
    spearman: float | None
    starc: float
    size: int


@dataclass
class RewardComparison:
    """Per-group figures and their aggregates (means over groups where the figure is defined)."""

    groups: list[GroupComparison] = field(default_factory=list)
    pearson_mean: float | None = None
    spearman_mean: float | None = None
    starc_mean: float | None = None
    starc_median: float | None = None
    undefined_groups: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "groups": len(self.groups),
            "pearson_mean": self.pearson_mean,
            "spearman_mean": self.spearman_mean,
            "starc_mean": self.starc_mean,
            "starc_median": self.starc_median,
            "undefined_groups": self.undefined_groups,
        }


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(da @ da) * float(db @ db))
    return None if denom <= 1e-12 else float(da @ db) / denom


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def canonical(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    """Group-mean removed, unit L2 norm (zero vector for an all-equal group)."""
    r = np.asarray(rewards, dtype=np.float64)
    c = r - r.mean() if r.size else r
    norm = float(np.linalg.norm(c))
    return c / norm if norm > 1e-12 else np.zeros_like(c)


def compare_group(a: Sequence[float], b: Sequence[float]) -> GroupComparison:
    if len(a) != len(b):
        raise RewardError(f"cannot compare groups of {len(a)} and {len(b)} rewards")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    starc = float(np.linalg.norm(canonical(x) - canonical(y)))
    if len(x) < 2:
        return GroupComparison(None, None, starc, len(x))
    return GroupComparison(_pearson(x, y), _pearson(_ranks(x), _ranks(y)), starc, len(x))


def compare_rewards(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> RewardComparison:
    """Compare two reward tables ``[group][completion]`` (same groups, same order)."""
    if len(a) != len(b):
        raise RewardError(f"cannot compare {len(a)} groups with {len(b)}")
    groups = [compare_group(x, y) for x, y in zip(a, b, strict=True)]
    pear = [g.pearson for g in groups if g.pearson is not None]
    spear = [g.spearman for g in groups if g.spearman is not None]
    starc = [g.starc for g in groups]
    return RewardComparison(
        groups=groups,
        pearson_mean=float(np.mean(pear)) if pear else None,
        spearman_mean=float(np.mean(spear)) if spear else None,
        starc_mean=float(np.mean(starc)) if starc else None,
        starc_median=float(np.median(starc)) if starc else None,
        undefined_groups=sum(1 for g in groups if g.pearson is None),
    )


def compare_pipelines(
    a: RewardPipeline, b: RewardPipeline, groups: Sequence[Sequence[Sample]]
) -> RewardComparison:
    """Score ``groups`` with both pipelines and compare their trajectory returns."""
    return compare_rewards([s.totals for s in a.score(groups)], [s.totals for s in b.score(groups)])
