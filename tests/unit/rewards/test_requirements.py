"""Issue 15: modules declare their inputs (``requires``), derived from their configured key names; a pipeline
module whose input a node does not provide is found with the path to the sub-module that needs it. Also the
PRIME advantage (``prime_rloo_returns``, whitened) and the DeepSeekMath process-supervision credit."""

from __future__ import annotations

import math

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.credit import CreditConfig
from swarmrl.rewards.pipeline import build_pipeline
from swarmrl.rewards.registry import default_registry
from swarmrl.rewards.requirements import GOLD_STEPS, POLICY_SCORER, first_missing, requirements_of
from swarmrl.rewards.shaping import prime_rloo_returns, prime_token_rewards


def _mod(name: str, **params: object) -> object:
    return default_registry().create(name, dict(params))


def test_requirements_follow_configured_keys_and_sub_modules() -> None:
    assert requirements_of(_mod("column")).inputs == {"score"}
    assert requirements_of(_mod("column", key="rm")).inputs == {"rm"}
    assert requirements_of(_mod("verpo", key="passes")).inputs == {"passes"}
    assert requirements_of(_mod("lsc")).inputs == {"ref_rewards", "score"}
    assert requirements_of(_mod("lsc", refs={"column": 0.5})).inputs == {"score"}  # fixed reference
    assert requirements_of(_mod("co_reward")).inputs == {"view"}
    assert requirements_of(_mod("co_reward", paraphrase="reverse")).inputs == {POLICY_SCORER}
    assert GOLD_STEPS in requirements_of(_mod("gra")).inputs
    assert requirements_of(_mod("exact_match")).inputs == frozenset()
    assert requirements_of(_mod("prime")).inputs == {POLICY_SCORER}
    assert requirements_of(_mod("prime", prm="columns")).inputs == {"prm_logprobs", "ref_logprobs"}


def test_first_missing_names_the_module_path_and_the_fix() -> None:
    got = first_missing(_mod("prm_clip_delta"), {POLICY_SCORER}, "prm_delta")
    assert got is not None and got.path == ("prm_delta", "column_steps") and got.need.input == "step_scores"
    msg = got.message()
    assert "'prm_delta' (through its sub-module 'column_steps')" in msg and "fix:" in msg
    assert first_missing(_mod("prm_clip_delta"), {"step_scores"}) is None
    gold = first_missing(_mod("step_match"), set())
    assert gold is not None and "multistep" in gold.message()


def test_prime_rloo_advantage_is_the_whitened_prime_returns() -> None:
    prm = [[-1.0, -0.5], [-0.2, -0.4, -0.1], [-2.0]]
    ref = [[-1.2, -0.5], [-0.3, -0.1, -0.1], [-1.0]]
    texts = ["4", "5", "4"]
    group = [
        Sample(
            "2+2=", t, "4", completion_ids=list(range(len(p))), extras={"prm_logprobs": p, "ref_logprobs": r}
        )
        for t, p, r in zip(texts, prm, ref, strict=True)
    ]
    pipe = build_pipeline([("prime", 1.0, {"prm": "columns", "norm": "none"})])  # returns credit (default)
    scored = pipe.score_group(group)
    implicit = [prime_token_rewards(a, b, 0.05) for a, b in zip(prm, ref, strict=True)]
    want = prime_rloo_returns(implicit, [1.0, 0.0, 1.0], 5.0, 5.0)
    flat = [v for r in want for v in r]
    mean = sum(flat) / len(flat)
    sd = math.sqrt(sum((v - mean) ** 2 for v in flat) / (len(flat) - 1) + 1e-8)
    assert scored.token_rewards is not None
    for got, w in zip(scored.token_rewards, want, strict=True):
        assert got == pytest.approx([(v - mean) / sd for v in w], abs=1e-6)
    assert scored.rewards == [0.0, 0.0, 0.0]  # the outcome is inside PRIME's advantage, not counted twice
    wrong = [Sample(s.prompt, "7", s.answer, completion_ids=s.completion_ids, extras=s.extras) for s in group]
    filtered = pipe.score_group(wrong)  # accuracy 0 is outside the default filter band [0.2, 0.8]
    assert filtered.token_rewards is not None and all(v == 0.0 for r in filtered.token_rewards for v in r)
    off = build_pipeline([("prime", 1.0, {"prm": "columns", "norm": "none", "accuracy_filter": []})])
    unfiltered = off.score_group(wrong).token_rewards
    assert unfiltered is not None and any(v != 0.0 for r in unfiltered for v in r)
    single = pipe.score_group(group[:1])  # a group of one (greedy evaluation): no advantage
    assert single.token_rewards is not None and all(v == 0.0 for v in single.token_rewards[0])


def test_process_grpo_credit_baseline() -> None:
    group = [
        Sample(
            "q", "a;b", "x", steps=["a", "b"], completion_ids=[0, 1, 2], extras={"step_scores": [1.0, 0.0]}
        ),
        Sample("q", "c", "x", steps=["c"], completion_ids=[0, 1], extras={"step_scores": [0.0]}),
    ]
    pipe = build_pipeline(
        [("column_steps", 1.0, {})],
        credit={"baseline": "process_grpo"},
        segment={"rule": "regex", "pattern": ";"},
    )
    tok = pipe.score_group(group).token_rewards
    # step ends at tokens 0, 2 / 0; z = [1.1547, -0.57735], [-0.57735]; token t gets the sum from its step on
    assert tok is not None
    assert tok[0] == pytest.approx([1.1547 - 0.57735, -0.57735, -0.57735], abs=1e-4)
    assert tok[1] == pytest.approx([-0.57735, 0.0], abs=1e-4)  # after the last step: 0
    with pytest.raises(RewardError, match="process_grpo"):
        CreditConfig.from_config({"mode": "raw", "baseline": "process_grpo"})
