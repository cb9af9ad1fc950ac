"""Build task sources from config, sample questions, and regenerate a task from a peer's TaskRef."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from swarmrl.errors import TaskError
from swarmrl.protocol.types import TaskRef
from swarmrl.tasks.arithmetic import ArithmeticSource, MultiStepSource
from swarmrl.tasks.base import Task, TaskSource

SOURCES: dict[str, type[TaskSource]] = {
    ArithmeticSource.source: ArithmeticSource,
    MultiStepSource.source: MultiStepSource,
}


def build_source(source: str, dataset: str, config: dict[str, Any], seed: int, size: int) -> TaskSource:
    if source == "reasoning_gym":
        from swarmrl.tasks.reasoning_gym_source import ReasoningGymSource

        return ReasoningGymSource(dataset, config, seed, size)
    cls = SOURCES.get(source)
    if cls is None:
        raise TaskError(f"unknown task source '{source}'; use one of {[*SOURCES, 'reasoning_gym']}")
    return cls(dataset, config, seed, size)


def regenerate(sources: Sequence[TaskSource], ref: TaskRef) -> tuple[str, str]:
    """Question and answer for ``ref`` from one of our own sources; TaskError if none owns it."""
    for src in sources:
        if src.owns(ref):
            if not 0 <= ref.index < src.size:
                raise TaskError(f"task index {ref.index} outside [0, {src.size})")
            task = src.get(ref.index)
            return task.question, task.answer
    raise TaskError(f"no local task source matches {ref.source}/{ref.dataset} (digest {ref.config_digest})")


class TaskSampler:
    """Draws training questions from weighted sources; a held-out index range serves greedy evaluation.

    Training indices are drawn from ``[eval_questions, size)``; evaluation uses ``[0, eval_questions)`` of the
    first source, so evaluation questions are never trained on by this node.
    """

    def __init__(
        self, sources: Sequence[TaskSource], weights: Sequence[float], rng: random.Random, eval_questions: int
    ) -> None:
        if not sources:
            raise TaskError("at least one task source is needed")
        self.sources = list(sources)
        self.weights = list(weights)
        self.rng = rng
        self.eval_questions = eval_questions

    def sample(self, n: int) -> list[Task]:
        out = []
        for _ in range(n):
            src = self.rng.choices(self.sources, weights=self.weights, k=1)[0]
            lo = min(self.eval_questions, src.size - 1)
            out.append(src.get(self.rng.randrange(lo, src.size)))
        return out

    def eval_set(self) -> list[Task]:
        return [src.get(i) for src in self.sources for i in range(min(self.eval_questions, src.size))]

    def regenerate(self, ref: TaskRef) -> tuple[str, str]:
        return regenerate(self.sources, ref)

    def find(self, ref: TaskRef) -> Task:
        for src in self.sources:
            if src.owns(ref):
                return src.get(ref.index)
        raise TaskError(f"no local task source matches {ref.key()}")
