"""The modules the default node needs: exact match, the dataset's own scorer, and answer format."""

from __future__ import annotations

import re
from collections.abc import Sequence

from swarmrl.rewards.base import RewardOutput, Sample, extract_answer


class ExactMatch:
    """1.0 when the stripped extracted answer equals the stripped gold answer, else 0.0."""

    name = "exact_match"

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return [RewardOutput(1.0 if extract_answer(s.completion) == s.answer.strip() else 0.0) for s in group]


class DatasetScore:
    """The task source's own scorer (reasoning-gym's ``score_answer``; exact match for built-ins).

    Partial-credit scorers can rise while exact-match accuracy stays at zero: report both.
    """

    name = "dataset_score"

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            answer = extract_answer(s.completion)
            if s.scorer is None:
                out.append(RewardOutput(1.0 if answer == s.answer.strip() else 0.0))
            else:
                out.append(RewardOutput(float(s.scorer(answer))))
        return out


class AnswerFormat:
    """1.0 when the completion is a well-formed answer for its task, else 0.0.

    ``pattern`` (regex, full match on the stripped completion) defaults to an integer or a ``;``-separated
    chain of integers, which is the answer format of the built-in tasks.
    """

    name = "format"

    def __init__(self, pattern: str = r"-?\d+(;-?\d+)*") -> None:
        self.pattern = re.compile(pattern, re.DOTALL)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return [RewardOutput(1.0 if self.pattern.fullmatch(s.completion.strip()) else 0.0) for s in group]
