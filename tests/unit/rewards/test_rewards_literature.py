"""Issue 17: hand-computed numbers for each new formula, and the pitfall each paper warns about."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.credit import returns
from swarmrl.rewards.literature import (
    combine_bonus,
    discounted_sum,
    dpo_pair_loss,
    episodic_bonus,
    gated_bonus,
    global_bonus,
    heron_compare,
    heron_scores,
    p2s_step_rewards,
    potential_shaping,
    preference_pairs,
    prefix_success_targets,
    round_robin,
    seeded_single_elimination,
    telescope,
    zscore,
)
from swarmrl.rewards.pipeline import build_pipeline
from swarmrl.rewards.registry import default_registry

NEW = ["p2s", "slate", "oprl", "tvm", "potential_shaping", "explore_bonus", "arena"]


def test_new_modules_are_registered() -> None:
    names = default_registry().names()
    assert set(NEW) <= set(names)


# --- 9: potential-based shaping ---------------------------------------------------------------------------


def test_potential_shaping_worked_numbers() -> None:
    # Phi(s_0) = 0.2, Phi(s_1) = 0.5, Phi(s_2) = 0.8, terminal Phi = 0 (the last potential is ignored)
    assert potential_shaping([0.5, 0.8, 0.3], 1.0, 0.2) == pytest.approx([0.3, 0.3, -0.8])
    f = potential_shaping([0.5, 0.8, 0.3], 0.9, 0.2)
    assert f == pytest.approx([0.25, 0.22, -0.8])
    assert discounted_sum(f, 0.9) == pytest.approx(-0.2)  # 0.25 + 0.9 * 0.22 - 0.81 * 0.8
    assert potential_shaping([], 1.0, 0.3) == []
    with pytest.raises(RewardError):
        potential_shaping([1.0], 0.0)


def _multistep(completion: str, gold: Sequence[str], prm: Sequence[float]) -> Sample:
    return Sample(
        "1+2+3=",
        completion,
        ";".join(gold),
        completion_ids=list(range(len(completion))),
        gold_steps=tuple(gold),
        extras={"prm": list(prm)},
    )


def test_potential_wrapper_keeps_the_ranking_of_full_trajectories() -> None:
    gold = ["3", "6"]
    # a PRM that loves the wrong chain: raw dense sums would rank it first
    group = [_multistep("3;6", gold, [0.0, 0.0]), _multistep("4;9", gold, [5.0, 5.0])]
    raw = build_pipeline([("exact_match", 1.0, {}), ("column_steps", 1.0, {"key": "prm"})])
    shaped = build_pipeline(
        [
            ("exact_match", 1.0, {}),
            ("potential_shaping", 1.0, {"of": {"name": "column_steps", "params": {"key": "prm"}}}),
        ]
    )
    r = raw.score_group(group).totals
    assert r[1] > r[0]  # the pitfall: a raw dense reward outranks the correct answer
    sg = shaped.score_group(group)
    assert sg.totals == pytest.approx([1.0, 0.0])  # every shaped sum is -phi0 = 0
    assert sg.modules["potential_shaping"] == pytest.approx([0.0, 0.0])
    # still dense: F = [+5, -5] on the step ends (tokens 0 and 2); under the returns credit each token gets
    # -Phi(state it is chosen in) = a state baseline: 0 for step 1 (from s_0), -5 for step 2 (from s_1)
    assert sg.token_rewards is not None and sg.token_rewards[1] == pytest.approx([0.0, -5.0, -5.0])
    rng = random.Random(0)
    for _ in range(200):
        h = rng.randint(1, 6)
        phis = [rng.uniform(-3, 3) for _ in range(h)]
        gamma, phi0 = rng.choice([1.0, 0.9, 0.5]), rng.uniform(-1, 1)
        assert discounted_sum(potential_shaping(phis, gamma, phi0), gamma) == pytest.approx(-phi0)


def test_telescoped_step_values_become_per_step_token_values_under_returns() -> None:
    adv = [0.5, -1.0, 2.0]
    d = telescope(adv)
    assert d == pytest.approx([1.5, -3.0, 2.0])
    # steps end at tokens 1, 3, 5: tokens of step k all carry A_k after reverse cumulative sums
    placed = [0.0, d[0], 0.0, d[1], 0.0, d[2]]
    assert returns(placed) == pytest.approx([0.5, 0.5, -1.0, -1.0, 2.0, 2.0])


# --- 3: exploration bonuses -------------------------------------------------------------------------------


def test_bonus_worked_numbers() -> None:
    keys = ["5", "5", "7", "9"]
    e = episodic_bonus(keys)
    g = global_bonus(keys, {"5": 3, "9": 0})
    assert e == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2), 1.0, 1.0])
    assert g == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert combine_bonus(e, g, "product") == pytest.approx([0.35355, 0.35355, 1.0, 1.0], abs=1e-5)
    assert combine_bonus(e, g, "sum") == pytest.approx([1.20711, 1.20711, 2.0, 2.0], abs=1e-5)
    b = combine_bonus(e, g, "product")
    assert gated_bonus([0, 0, 0, 0], b, 0.1) == pytest.approx([0.035355, 0.035355, 0.1, 0.1], abs=1e-6)
    assert gated_bonus([1, 0, 0, 0], b, 0.1) == [1.0, 0.0, 0.0, 0.0]  # gate shut: there is a correct answer
    # capped: beta 2 shrinks to cap * gap = 0.5 * 1
    assert gated_bonus([1, 0, 0, 0], b, 2.0, "capped") == pytest.approx(
        [1.17678, 0.17678, 0.5, 0.5], abs=1e-5
    )


@pytest.mark.parametrize("gate", ["zero_variance", "capped"])
@pytest.mark.parametrize("how", ["product", "sum", "episodic", "global"])
def test_bonus_never_outranks_a_better_outcome(gate: str, how: str) -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(2, 8)
        outcomes = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(n)]
        keys = [rng.choice("abcd") for _ in range(n)]
        hist = {k: rng.randint(0, 5) for k in "abcd"}
        bonus = [min(1.0, x) for x in combine_bonus(episodic_bonus(keys), global_bonus(keys, hist), how)]  # type: ignore[arg-type]
        values = gated_bonus(outcomes, bonus, rng.uniform(0, 5), gate)  # type: ignore[arg-type]
        for i in range(n):
            for j in range(n):
                if outcomes[i] > outcomes[j]:
                    assert values[i] > values[j]


def test_explore_module_counts_then_checkpoints() -> None:
    reg = default_registry()
    mod = reg.create("explore_bonus", {"beta": 0.1})
    group = [Sample("Q", c, "4") for c in ("5", "5", "7", "9")]
    first = [o.scalar for o in mod.score_group(group)]
    assert first == pytest.approx([0.1 / math.sqrt(2)] * 2 + [0.1, 0.1])  # no history yet: b_g = 1
    second = [o.scalar for o in mod.score_group(group)]
    # history now {5: 2, 7: 1, 9: 1}: b_g = 1/sqrt(3) for '5', 1/sqrt(2) for the others
    assert second == pytest.approx([0.1 / math.sqrt(2) / math.sqrt(3)] * 2 + [0.1 / math.sqrt(2)] * 2)
    mod.score_group([Sample("Q", "5", "4")])  # a group of one (greedy evaluation) is not counted
    state = mod.state_dict()  # type: ignore[attr-defined]
    assert state == {"history": {"5": 4, "7": 2, "9": 2}}
    fresh = reg.create("explore_bonus", {"beta": 0.1})
    fresh.load_state_dict(state)  # type: ignore[attr-defined]
    assert [o.scalar for o in fresh.score_group(group)] == [o.scalar for o in mod.score_group(group)]
    with pytest.raises(RewardError):
        reg.create("explore_bonus", {"gate": "always"})


# --- 5: ArenaRL -------------------------------------------------------------------------------------------


def _by(scores: Sequence[float]):  # type: ignore[no-untyped-def]
    return lambda i, j: 0.5 if scores[i] == scores[j] else float(scores[i] > scores[j])


def test_round_robin_and_seeded_single_elimination_worked_numbers() -> None:
    scores = [0.50, 0.52, 0.51, 0.50]
    rr, made = round_robin(4, _by(scores))
    assert made == 6 and rr == pytest.approx([0.5 / 3, 1.0, 2 / 3, 0.5 / 3])
    # seeds best first [1, 2, 0, 3]; bracket 1v4, 2v3: (1 vs 3) -> 1, (2 vs 0) -> 2; final 1 vs 2 -> 1
    se, made = seeded_single_elimination([1, 2, 0, 3], _by(scores))
    assert made == 3 and se == pytest.approx([1 / 3, 1.0, 2 / 3, 0.0])


def test_single_elimination_is_linear_and_agrees_with_round_robin_at_the_top() -> None:
    rng = random.Random(3)
    for n in (2, 3, 5, 8, 13, 16):
        strength = [rng.random() for _ in range(n)]
        judge = _by(strength)
        rr, rr_made = round_robin(n, judge)
        seeds = sorted(range(n), key=lambda i: -strength[i] + rng.gauss(0, 0.05))  # noisy seeding
        se, se_made = seeded_single_elimination(seeds, judge)
        assert se_made == n - 1 and rr_made == n * (n - 1) // 2
        assert max(range(n), key=se.__getitem__) == max(range(n), key=rr.__getitem__)
        assert sorted(se) == pytest.approx(
            [q / (n - 1) for q in range(n)]
        )  # squeezed scores spread to [0, 1]


def test_arena_module_numeric_judge() -> None:
    arena = default_registry().create("arena", {"judge": "numeric", "tournament": "round_robin"})
    group = [Sample("5+7=", c, "12") for c in ("12", "13", "20", "x")]
    assert [o.scalar for o in arena.score_group(group)] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    se = default_registry().create("arena", {"judge": "numeric"})
    out = se.score_group(group)
    assert [o.scalar for o in out] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert out[0].info["matches"] == 3


# --- 6: HERON ---------------------------------------------------------------------------------------------


def test_heron_worked_numbers() -> None:
    assert heron_compare([1.0, 0.0], [0.0, 1.0], [0.0, 0.0]) == 1.0
    assert heron_compare([0.0, 0.52], [0.0, 0.50], [0.0, 0.1]) == 0.5  # inside the margin: tie
    assert heron_compare([None, 1.0], [0.0, 0.0], [0.0, 0.0]) == 0.0  # a missing factor ranks lowest
    assert heron_scores([[1, 0], [0, 1], [0, 0]], [0.0, 0.0]) == pytest.approx([1.0, 0.5, 0.0])


def test_heron_correct_but_badly_formatted_beats_wrong_but_well_formatted_whatever_the_scales() -> None:
    group = [
        Sample("5+7=", "12", "12"),  # correct, no answer tags
        Sample("5+7=", "<answer>13</answer>", "12"),  # wrong, well formatted
    ]
    fmt = {"pattern": r"<answer>.*</answer>"}
    for weight in (1.0, 100.0, 1e6):
        mods = [("exact_match", 1.0, {}), ("format", weight, fmt)]
        summed = build_pipeline(mods).score_group(group).rewards
        heron = build_pipeline(mods, combine={"mode": "heron"}).score_group(group).rewards
        assert heron == [1.0, 0.0]
        if weight > 1.0:
            assert summed[1] > summed[0]  # the weighted sum lets the format term win
    with pytest.raises(RewardError):
        build_pipeline([("exact_match", 1.0, {})], combine={"mode": "heron", "order": ["nope"]}).score_group(
            group
        )
    with pytest.raises(RewardError):
        build_pipeline([("exact_match", 1.0, {})], combine={"mode": "heron", "margins": {"exact_match": -1}})


# --- 8: TVM targets, 2: P2S, 4: OPRL math ----------------------------------------------------------------


def test_tvm_prefix_success_targets() -> None:
    ids = [[1, 2, 3], [1, 2, 4], [1, 5], [6]]
    out = [1.0, 0.0, 1.0, 0.0]
    # t=0: whole group 0.5; [1]: 3 share it (2/3); [1,2]: 2 share (1/2); [1,5] alone; [6] prefix [] only
    got = prefix_success_targets(ids, out)
    want = [[0.5, 2 / 3, 0.5], [0.5, 2 / 3, 0.5], [0.5, 2 / 3], [0.5]]
    assert [len(r) for r in got] == [len(r) for r in want]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w)


def test_p2s_step_rewards() -> None:
    assert p2s_step_rewards([0.2, 0.5, 0.9]) == pytest.approx([0.3, 0.4, 0.0])
    assert p2s_step_rewards([0.2, 0.5, 0.9], "absolute") == pytest.approx([0.5, 0.9, 0.0])
    assert p2s_step_rewards([0.7]) == [0.0]
    # delta form telescopes: more steps cannot add more than the final value minus the start
    v = [0.1, 0.3, 0.2, 0.6]
    assert sum(p2s_step_rewards(v)) == pytest.approx(v[-1] - v[0])


def test_oprl_dpo_loss_pairs_and_zscore() -> None:
    assert dpo_pair_loss(0.0, 0.0, 0.1) == pytest.approx(math.log(2))
    assert dpo_pair_loss(2.0, -3.0, 0.1) == pytest.approx(math.log1p(math.exp(-0.5)))
    assert dpo_pair_loss(-300.0, 300.0, 1.0) == pytest.approx(600.0)  # stable far out
    assert preference_pairs([1.0, 0.0, 1.0, 0.0], 3) == [(0, 3), (0, 1), (2, 3)]
    assert preference_pairs([1.0, 1.0], 4) == []
    assert zscore([1.0, 3.0]) == pytest.approx([-1.0, 1.0], abs=1e-5)
