"""Comparison of two reward pipelines: Pearson, Spearman and STARC-style distance per group."""

from __future__ import annotations

import math

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.compare import canonical, compare_group, compare_pipelines, compare_rewards
from swarmrl.rewards.pipeline import build_pipeline


def test_identical_and_affine_rewards_have_distance_zero() -> None:
    g = compare_group([1.0, 2.0, 4.0], [3.0, 5.0, 9.0])  # 2x + 1: same canonical form
    assert g.pearson == pytest.approx(1.0) and g.spearman == pytest.approx(1.0)
    assert g.starc == pytest.approx(0.0, abs=1e-12)


def test_opposite_rewards_have_distance_two() -> None:
    g = compare_group([1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0])
    assert g.pearson == pytest.approx(-1.0) and g.starc == pytest.approx(2.0)


def test_spearman_uses_ranks_with_ties() -> None:
    g = compare_group([1.0, 2.0, 3.0, 4.0], [1.0, 10.0, 100.0, 1000.0])
    assert g.spearman == pytest.approx(1.0) and g.pearson is not None and g.pearson < 0.9
    t = compare_group([1.0, 1.0, 2.0], [5.0, 5.0, 7.0])
    assert t.spearman == pytest.approx(1.0)


def test_hand_computed_starc() -> None:
    a, b = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    ca, cb = canonical(a), canonical(b)
    assert cb.tolist() == pytest.approx([-1 / math.sqrt(6), 2 / math.sqrt(6), -1 / math.sqrt(6)])
    assert ca.tolist() == pytest.approx([2 / math.sqrt(6), -1 / math.sqrt(6), -1 / math.sqrt(6)])
    assert compare_group(a, b).starc == pytest.approx(math.sqrt(((3 / math.sqrt(6)) ** 2) * 2))


def test_constant_groups_are_counted_not_averaged() -> None:
    rep = compare_rewards([[1.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [2.0, 0.0]])
    assert rep.undefined_groups == 1
    assert rep.pearson_mean == pytest.approx(1.0)
    assert rep.groups[0].starc == pytest.approx(1.0)  # zero vector vs unit vector
    assert rep.starc_mean == pytest.approx(0.5)
    assert rep.as_dict()["groups"] == 2
    with pytest.raises(RewardError):
        compare_rewards([[1.0]], [[1.0, 2.0]])


def test_compare_pipelines_on_recorded_groups() -> None:
    groups = [
        [
            Sample("q", c, "1;2", completion_ids=list(range(len(c))), gold_steps=("1", "2"))
            for c in ("1;2", "1;3", "5")
        ],
        [Sample("q", c, "7", completion_ids=list(range(len(c)))) for c in ("7", "8")],
    ]
    a = build_pipeline([("exact_match", 1.0, {})])
    b = build_pipeline([("step_match", 1.0, {})])
    rep = compare_pipelines(a, b, groups)
    # group 1: exact [1,0,0] vs step returns totals [2,1,0] -> positively correlated, not identical
    g0 = rep.groups[0]
    assert g0.pearson is not None and 0.8 < g0.pearson < 1.0 and g0.starc > 0
    # group 2 has no gold steps: step_match is not applicable -> constant -> undefined
    assert rep.groups[1].pearson is None and rep.undefined_groups == 1
    same = compare_pipelines(a, a, groups)
    assert same.starc_mean == pytest.approx(0.0) and same.pearson_mean == pytest.approx(1.0)
