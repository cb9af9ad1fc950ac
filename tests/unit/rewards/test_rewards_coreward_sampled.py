"""Co-Reward with paraphrase rollouts sampled from the policy (a scripted scorer stands in for it)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from swarmrl.errors import ConfigError, RewardError
from swarmrl.rewards import Sample, build_pipeline
from swarmrl.rewards.catalogue.outcome import paraphrase_question


class Scripted:
    """Answers each paraphrased prompt with a fixed list of texts and records what it was asked."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        raise AssertionError("not used")

    ref_logprobs = logprobs

    def sample(
        self, prompts: Sequence[str], n: int, prefixes: Sequence[str] | None = None
    ) -> list[list[str]]:
        self.asked += [(p, n) for p in prompts]
        return [self.answers[p][:n] for p in prompts]


def test_paraphrase_rules() -> None:
    assert paraphrase_question("3+4=", "reverse") == "4+3="
    assert paraphrase_question("1+2+7=", "reverse") == "7+2+1="
    assert paraphrase_question("3-4=", "reverse") == "3-4="  # not commutative: unchanged
    assert paraphrase_question("3+4*2=", "reverse") == "3+4*2="  # mixed operators: unchanged
    assert paraphrase_question("3+4=", "Compute {question}") == "Compute 3+4="


def test_sampled_paraphrase_votes_label_the_original_rollouts() -> None:
    pipe = build_pipeline(
        [("co_reward", 1.0, {"paraphrase": "reverse", "extract": "text", "samples": 4})], report=[]
    )
    scorer = Scripted({"4+3=": ["7", "8", "7", ""]})
    pipe.bind_scorer(scorer)
    group = [Sample("3+4=", c, "7") for c in ("7", "8", " 7 ", "")]
    (sg,) = pipe.score([group])
    assert sg.rewards == [1.0, 0.0, 1.0, 0.0]
    assert scorer.asked == [("4+3=", 4)]


def test_recorded_paraphrase_view_wins_over_sampling() -> None:
    pipe = build_pipeline([("co_reward", 1.0, {"paraphrase": "reverse", "extract": "text"})], report=[])
    scorer = Scripted({})
    pipe.bind_scorer(scorer)
    views = ["original", "original", "paraphrase", "paraphrase"]
    group = [
        Sample("3+4=", c, "7", extras={"view": v}) for c, v in zip(["7", "8", "8", "8"], views, strict=True)
    ]
    (sg,) = pipe.score([group])
    assert sg.rewards == [0.0, 1.0, 0.0, 0.0]
    assert scorer.asked == []


def test_bad_paraphrase_and_missing_scorer() -> None:
    with pytest.raises((RewardError, ConfigError)):
        build_pipeline([("co_reward", 1.0, {"paraphrase": "no placeholder"})])
    pipe = build_pipeline([("co_reward", 1.0, {"paraphrase": "reverse", "extract": "text"})], report=[])
    assert pipe.needs_scorer
    with pytest.raises(RewardError, match="needs the policy"):
        pipe.score([[Sample("3+4=", "7", "7")]])
