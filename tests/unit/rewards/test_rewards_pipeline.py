"""Pipeline: segmentation, dense channel, credit assignment, combination modes, batch modules."""

from __future__ import annotations

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.pipeline import ScoredGroup, build_pipeline, token_advantages
from swarmrl.rewards.segment import Segmenter, locate, step_token_ends
from swarmrl.tasks.arithmetic import MultiStepSource


def sample(completion: str, answer: str = "", gold: tuple[str, ...] = (), **extras: object) -> Sample:
    """Character-level token ids, so step ends map exactly to tokens."""
    return Sample(
        "q",
        completion,
        answer,
        completion_ids=list(range(len(completion))),
        gold_steps=gold,
        extras=dict(extras),
    )


def multistep_group(completions: list[str]) -> list[Sample]:
    task = MultiStepSource("custom", {"terms": 3}, seed=7, size=10).get(0)
    return [
        Sample(
            task.question, c, task.answer, task.ref, completion_ids=list(range(len(c))), gold_steps=task.steps
        )
        for c in completions
    ]


def test_segmenter_rules() -> None:
    assert Segmenter().steps("1;8") == ["1", "8"]
    assert Segmenter().steps("a\n\n b \n\n\nc") == ["a", "b", "c"]
    assert Segmenter(rule="lines").steps("a\nb\n\nc") == ["a", "b", "c"]
    assert Segmenter(rule="separator", separator="||").steps("a||b") == ["a", "b"]
    assert Segmenter(rule="none").steps(" ab ") == ["ab"]
    assert Segmenter(region="answer").steps("x;y <answer>1;8</answer>") == ["1", "8"]
    spans = Segmenter().split("1; 8")
    assert [(s.start, s.end) for s in spans] == [(0, 1), (3, 4)]
    with pytest.raises(RewardError):
        Segmenter.from_config({"rule": "words"})
    with pytest.raises(RewardError):
        Segmenter.from_config({"pattern": "("})


def test_locate_and_token_ends() -> None:
    assert [(s.start, s.end) for s in locate("ab;cd", ["ab", "cd"])] == [(0, 2), (3, 5)]
    with pytest.raises(RewardError):
        locate("ab;cd", ["zz"])
    # real offsets: tokens "ab", ";", "cd" -> steps end on tokens 0 and 2
    assert step_token_ends("ab;cd", ["ab", "cd"], 3, [(0, 2), (2, 3), (3, 5)]) == [0, 2]
    assert step_token_ends("ab;cd", ["ab", "cd"], 5) == [1, 4]  # proportional = exact for chars


def test_step_match_on_multistep_task() -> None:
    group = multistep_group(["", "", ""])
    gold = list(group[0].gold_steps)
    assert len(gold) == 2 and group[0].answer == ";".join(gold)
    texts = [";".join(gold), f"{gold[0]};999", "5"]
    group = multistep_group(texts)
    pipe = build_pipeline([("step_match", 1.0, {"scalar": "mean"})], credit={"mode": "raw"})
    scored = pipe.score_group(group)
    assert scored.rewards == [1.0, 0.5, 0.0]
    assert scored.modules["step_match"] == [1.0, 0.5, 0.0]
    # dense: 1.0 on the last char of each matched step
    row = scored.token_rewards
    assert row is not None
    assert row[0][len(gold[0]) - 1] == 1.0 and row[0][-1] == 1.0
    assert row[1][-1] == 0.0 and sum(row[2]) == 0.0


def test_gra_end_to_end_on_multistep() -> None:
    task_group = multistep_group(["", ""])
    gold = list(task_group[0].gold_steps)
    right = ";".join(gold)
    wrong_final = f"{gold[0]};12345"
    group = multistep_group([right, wrong_final])
    pipe = build_pipeline([("gra", 1.0, {"threshold": 1.0})])
    scored = pipe.score_group(group)
    assert scored.rewards == [1.0, 0.0]  # outcome channel: exact match
    assert scored.token_rewards is not None
    # returns: the right answer carries both gated step rewards from its first token
    assert scored.token_rewards[0][0] == 2.0
    # the gate is closed for the wrong answer: its correct first step earns nothing
    assert all(v == 0.0 for v in scored.token_rewards[1])
    assert scored.modules["gra"] == [1.0, 0.0]


def test_gra_threshold_equality_module() -> None:
    group = [
        Sample("q", "1;2", "1;2", completion_ids=[0, 1, 2], gold_steps=("1", "2"), extras={"score": 0.5})
    ]
    spec = {"outcome": {"name": "column", "params": {"key": "score"}}, "threshold": 0.5}
    ge = build_pipeline([("gra", 1.0, spec)]).score_group(group)
    gt = build_pipeline([("gra", 1.0, {**spec, "comparator": ">"})]).score_group(group)
    assert ge.token_rewards == [[2.0, 1.0, 1.0]] and ge.rewards == [0.5]
    assert gt.token_rewards == [[0.0, 0.0, 0.0]]


def test_equal_totals_different_steps_give_different_token_advantages() -> None:
    # two rollouts, same text shape, same outcome, same step-reward TOTAL (1.0), different placement
    a = sample("1;2", "9", step_scores=[1.0, 0.0])
    b = sample("1;2", "9", step_scores=[0.0, 1.0])
    c = sample("3;4", "9", step_scores=[0.0, 0.0])
    pipe = build_pipeline([("exact_match", 1.0, {}), ("column_steps", 1.0, {})])
    scored = pipe.score_group([a, b, c])
    assert scored.dense_totals == [1.0, 1.0, 0.0]
    assert scored.totals[0] == scored.totals[1]
    adv = token_advantages([scored], [[a, b, c]], "grpo")
    assert adv[0][0] != adv[0][1]
    assert adv[0][0][0] == adv[0][1][0]  # first token: return = 1.0 for both
    assert adv[0][0][2] != adv[0][1][2]  # last token: 0 vs 1
    assert not scored.zero_variance


def test_zero_variance_groups() -> None:
    g = [sample("1;2", "1;2"), sample("1;2", "1;2")]
    scored = build_pipeline([("exact_match", 1.0, {})]).score_group(g)
    assert scored.zero_variance and scored.token_rewards is None
    adv = token_advantages([scored], [g])
    assert adv == [[[0.0] * 3, [0.0] * 3]]
    same = [sample("1;2", "9", step_scores=[0.5, 0.5]) for _ in range(2)]
    assert build_pipeline([("column_steps", 1.0, {})]).score_group(same).zero_variance


def test_pure_strict_min_credit_and_masking() -> None:
    g = [sample("a;b;c", "z", step_scores=[0.8, -0.4, 0.6])]
    strict = build_pipeline(
        [("pure_min_form", 1.0, {"mode": "strict"})], credit={"mode": "strict_min"}
    ).score_group(g)
    assert strict.token_rewards is not None
    # tokens: a ; b ; c -> step ends at 0, 2, 4
    assert strict.token_rewards[0] == pytest.approx([-0.4, -0.4, -0.4, 0.6, 0.6])
    soft = build_pipeline([("pure_min_form", 1.0, {})]).score_group(g)
    assert soft.token_rewards is not None
    assert soft.token_rewards[0][0] == pytest.approx(-0.399947, abs=1e-6)
    assert soft.modules["pure_min_form"][0] == pytest.approx(-0.399947, abs=1e-6)
    unmasked = build_pipeline(
        [("pure_min_form", 1.0, {"mode": "strict"})], credit={"mode": "strict_min", "mask_non_steps": False}
    ).score_group(g)
    assert unmasked.token_rewards is not None
    assert unmasked.token_rewards[0] == pytest.approx([-0.4, -0.4, -0.4, 0.0, 0.6])


def test_pure_with_verifiable_reward_at_last_token() -> None:
    g = [sample("a;b", "a;b", step_scores=[0.2, 0.4])]
    scored = build_pipeline([("pure_min_form", 1.0, {"mode": "sum"}), ("at_last_step", 1.0, {})]).score_group(
        g
    )
    assert scored.rewards == [0.0]  # VR moved to the dense channel
    assert scored.token_rewards == [pytest.approx([1.6, 1.4, 1.4])]


def test_clip_delta_module_with_success() -> None:
    g = [sample("a;b;c;d", "a;b;c;d", step_scores=[0.7, 0.2, 0.4, 0.8])]
    scored = build_pipeline(
        [("prm_delta", 1.0, {"success": "exact_match"})], credit={"mode": "raw"}
    ).score_group(g)
    assert scored.dense_totals == [pytest.approx(0.9)]
    steps = [scored.token_rewards[0][i] for i in (0, 2, 4, 6)]  # type: ignore[index]
    assert steps == pytest.approx([0.5, -0.2, -0.4, 1.0])


def test_credit_baselines() -> None:
    g = [sample("a;b", "z", step_scores=[1.0, 0.0]), sample("a;b", "z", step_scores=[0.0, 0.0])]
    pos = build_pipeline([("column_steps", 1.0, {})], credit={"baseline": "position_mean"}).score_group(g)
    assert pos.token_rewards == [pytest.approx([0.5, 0.0, 0.0]), pytest.approx([-0.5, 0.0, 0.0])]
    rloo = build_pipeline([("column_steps", 1.0, {})], credit={"baseline": "rloo_token"}).score_group(g)
    # returns rows [1,0,0] and [0,0,0]; L_max 3, n 2: baselines 0/3 and 1/3
    assert rloo.token_rewards == [pytest.approx([1.0, 0.0, 0.0]), pytest.approx([-1 / 3] * 3)]


def test_sum_to_outcome_credit() -> None:
    g = [sample("a;b", "z", step_scores=[1.0, 0.5]), sample("a;b", "z", step_scores=[0.0, 0.0])]
    scored = build_pipeline([("column_steps", 2.0, {})], credit={"mode": "sum_to_outcome"}).score_group(g)
    assert scored.rewards == [3.0, 0.0] and scored.token_rewards is None


def test_dense_without_token_ids_is_recorded_not_placed() -> None:
    g = [Sample("q", "a;b", "z", extras={"step_scores": [1.0, 0.0]})]
    scored = build_pipeline([("column_steps", 1.0, {})]).score_group(g)
    assert scored.token_rewards == [[]] and scored.info["dense_unplaced"] == 1
    assert scored.totals == [1.0]


def test_step_count_mismatch_is_an_error() -> None:
    g = [sample("a;b", "z", step_scores=[1.0])]
    with pytest.raises(RewardError, match="step scores"):
        build_pipeline([("column_steps", 1.0, {})]).score_group(g)


def test_custom_segmentation_used_for_scoring_and_placement() -> None:
    g = [sample("a b", "z", step_scores=[1.0, 2.0])]
    scored = build_pipeline(
        [("column_steps", 1.0, {})], credit={"mode": "raw"}, segment={"rule": "separator", "separator": " "}
    ).score_group(g)
    assert scored.token_rewards == [[1.0, 0.0, 2.0]]


def test_combine_modes() -> None:
    g = [sample("x", "x", s1=1.0, s2=-1.0, ref_rewards={"s1": [1.0, 2.5, 0.0]})]
    cols = [("column", 1.0, {"key": "s1"})]
    lsc = build_pipeline(
        [("column", 1.0, {"key": "s1"})], combine={"mode": "lsc_and", "refs": {"column": 0.5}}
    ).score_group(g)
    assert lsc.rewards[0] == pytest.approx(-0.474077, abs=1e-6)
    par = build_pipeline(
        cols,
        combine={"mode": "par"},
    )
    g2 = [sample("x", "x", s1=2.0, ref_rewards=[1.0, 2.5, 0.0])]
    assert par.score_group(g2).rewards[0] == pytest.approx(0.663132, abs=1e-6)
    gate = build_pipeline(
        [("exact_match", 1.0, {}), ("column", 0.5, {"key": "s1"})], combine={"mode": "gate", "threshold": 1.0}
    )
    assert gate.score_group(g).rewards == [1.5]
    assert gate.score_group([sample("y", "x", s1=1.0)]).rewards == [0.0]
    ens = build_pipeline(
        [("column", 1.0, {"key": "s1"}), ("exact_match", 1.0, {})],
        combine={"mode": "ensemble", "aggregate": "worst_case"},
    )
    assert ens.score_group([sample("y", "x", s1=1.0)]).rewards == [0.0]
    with pytest.raises(RewardError):
        build_pipeline(cols, combine={"mode": "product"})
    with pytest.raises(RewardError):
        build_pipeline(cols, credit={"mode": "gae"})


def test_length_rewards_use_per_group_min_max() -> None:
    g1 = [sample("a" * n, "z") for n in (100, 200, 300, 400)]
    g2 = [sample("b" * n, "z") for n in (10, 20)]
    for s in g1[:3] + g2:
        s.extras["ok"] = 1.0
    pipe = build_pipeline([("kimi_length", 1.0, {"correct": {"name": "column", "params": {"key": "ok"}}})])
    together = pipe.score([g1, g2])
    assert together[0].rewards == pytest.approx([0.5, 1 / 6, -1 / 6, -0.5])
    assert together[1].rewards == pytest.approx([0.5, -0.5])  # not normalised by g1's lengths
    assert pipe.score([g2])[0].rewards == together[1].rewards


def test_grpo_lambda_is_batch_level() -> None:
    def group(ratio_ok: int) -> list[Sample]:
        g = [sample("a" * n, "z") for n in (100, 200, 300, 400)]
        for s in g[:ratio_ok]:
            s.extras["ok"] = 1.0
        return g

    batch = [group(4), group(3), group(1), group(0)]
    pipe = build_pipeline(
        [("grpo_lambda", 1.0, {"correct": {"name": "column", "params": {"key": "ok"}}, "lam": 0.5})]
    )
    scored = pipe.score(batch)
    assert scored[1].rewards == pytest.approx([1.5, 7 / 6, 5 / 6, -0.5])  # length penalty on
    assert scored[2].rewards == [1.0, 0.0, 0.0, 0.0]  # plain 0/1
    assert scored[0].rewards == pytest.approx([1.5, 7 / 6, 5 / 6, 0.5])


def test_batch_and_group_scoring_agree_for_group_modules() -> None:
    g = [sample("1;2", "1;2"), sample("1", "1;2")]
    pipe = build_pipeline([("exact_match", 1.0, {}), ("format", 0.1, {})], report=["r1_format"])
    assert pipe.score([g])[0].rewards == pipe.score_group(g).rewards == [1.1, 0.1]
    assert "r1_format" in pipe.score_group(g).modules


def test_scored_group_defaults_are_backward_compatible() -> None:
    sg = ScoredGroup(rewards=[1.0, 0.0], modules={}, accuracy=[1.0, 0.0])
    assert sg.token_rewards is None and sg.totals == [1.0, 0.0] and not sg.zero_variance


def test_rewards_package_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, swarmrl.rewards, swarmrl.rewards.catalogue, swarmrl.rewards.compare;"
        "from swarmrl.rewards.registry import default_registry; default_registry(load_plugins=False);"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_non_finite_reward_is_not_applicable_and_never_nan() -> None:
    from swarmrl.rewards.base import RewardOutput, Sample
    from swarmrl.rewards.pipeline import RewardPipeline, token_advantages

    class LogZero:
        name = "log_zero"

        def score_group(self, group: list[Sample]) -> list[RewardOutput]:
            return [RewardOutput(float("-inf") if i == 0 else -1.0) for i, _ in enumerate(group)]

    group = [Sample("q", str(i), "1", completion_ids=[1, 2]) for i in range(3)]
    scored = RewardPipeline([("log_zero", 1.0, LogZero())]).score([group])
    assert scored[0].modules["log_zero"] == [None, -1.0, -1.0]
    adv = token_advantages(scored, [group], "grpo")
    assert all(a == a for row in adv[0] for a in row)  # no NaN reaches the loss
