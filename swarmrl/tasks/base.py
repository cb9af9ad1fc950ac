"""The task-source interface and the Task record."""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarmrl.protocol.types import TaskRef, config_digest


@dataclass(frozen=True)
class Task:
    """One question with its gold answer, provenance and the dataset's own scorer.

    ``steps`` holds verifiable intermediate results for multi-step tasks (empty otherwise).
    """

    question: str
    answer: str
    ref: TaskRef
    family: str = ""
    steps: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    scorer: Callable[[str], float] | None = field(default=None, compare=False, repr=False)

    def score(self, answer_text: str) -> float:
        """The dataset's own score of an extracted answer (exact match when the source has none)."""
        if self.scorer is not None:
            return float(self.scorer(answer_text))
        return 1.0 if answer_text.strip() == self.answer.strip() else 0.0


def item_rng(*parts: object) -> random.Random:
    """A deterministic RNG for one item: the same parts give the same stream on every machine."""
    seed = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8]
    return random.Random(int.from_bytes(seed, "big"))


class TaskSource(ABC):
    """A deterministic, indexable set of tasks: ``get(i)`` is the same on every node for the same config."""

    source: str = ""

    def __init__(self, dataset: str, config: dict[str, Any], seed: int, size: int) -> None:
        self.dataset = dataset
        self.config = dict(config)
        self.seed = int(seed)
        self.size = int(size)
        self.digest = config_digest({"dataset": dataset, **self.config})

    def ref(self, index: int) -> TaskRef:
        return TaskRef(self.source, self.dataset, self.digest, self.seed, index % self.size)

    def owns(self, ref: TaskRef) -> bool:
        return (ref.source, ref.dataset, ref.config_digest, ref.seed) == (
            self.source,
            self.dataset,
            self.digest,
            self.seed,
        )

    @abstractmethod
    def get(self, index: int) -> Task:
        """The task at ``index`` (wrapped into ``[0, size)``)."""
