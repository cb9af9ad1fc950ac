"""Build task sources from config, sample questions, and regenerate a task from a peer's TaskRef."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from swarmrl.errors import TaskError
from swarmrl.protocol.types import TaskRef
from swarmrl.tasks.arithmetic import ArithmeticSource, MultiStepSource
from swarmrl.tasks.base import Task, TaskSource
from swarmrl.tasks.schedule import RecoveringScheduler

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
        self,
        sources: Sequence[TaskSource],
        weights: Sequence[float],
        rng: random.Random,
        eval_questions: int,
        scheduler: RecoveringScheduler | None = None,
    ) -> None:
        if not sources:
            raise TaskError("at least one task source is needed")
        self.sources = list(sources)
        self.weights = list(weights)
        self.rng = rng
        self.eval_questions = eval_questions
        self.scheduler = scheduler

    def sample(self, n: int) -> list[Task]:
        """``n`` training questions: weighted random sources (``fixed``), or, with a scheduler, the sources it
        pulls this round, question i from pulled arm ``i mod K``."""
        arms = self.scheduler.choose() if self.scheduler is not None and n else None
        out = []
        for i in range(n):
            if arms is None:
                src = self.rng.choices(self.sources, weights=self.weights, k=1)[0]
            else:
                src = self.sources[arms[i % len(arms)]]
            lo = min(self.eval_questions, src.size - 1)
            out.append(src.get(self.rng.randrange(lo, src.size)))
        return out

    def observe(self, tasks: Sequence[Task | None], zero_variance: Sequence[bool]) -> dict[int, float]:
        """Tell the scheduler the learning signal of the oldest sampled round: per source, the share of its
        groups with a non-zero advantage. Returns that map (empty without a scheduler)."""
        if self.scheduler is None or not tasks:
            return {}  # no local questions were sampled this round: nothing was chosen
        hits: dict[int, list[float]] = {}
        for task, zero in zip(tasks, zero_variance, strict=True):
            if task is None:
                continue
            arm = next((k for k, src in enumerate(self.sources) if src.owns(task.ref)), None)
            if arm is not None:
                hits.setdefault(arm, []).append(0.0 if zero else 1.0)
        rewards = {arm: sum(v) / len(v) for arm, v in hits.items()}
        self.scheduler.observe(rewards)
        return rewards

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def eval_set(self) -> list[Task]:
        return [src.get(i) for src in self.sources for i in range(min(self.eval_questions, src.size))]

    def regenerate(self, ref: TaskRef) -> tuple[str, str]:
        return regenerate(self.sources, ref)

    def find(self, ref: TaskRef) -> Task:
        for src in self.sources:
            if src.owns(ref):
                return src.get(ref.index)
        raise TaskError(f"no local task source matches {ref.key()}")
