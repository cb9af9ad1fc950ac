"""The task-source interface and the Task record."""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from swarmrl.protocol.types import TaskRef, config_digest


@dataclass(frozen=True)
class Task:
    """One question with its gold answer, provenance and the dataset's own scorer.

    ``steps`` holds verifiable intermediate results for multi-step tasks (empty otherwise). ``columns`` are
    named, JSON-able values the source attaches to the task (reference answers, unit tests, reference
    rewards, step labels); the node copies them into every ``Sample.extras[name]`` of the task's group. A
    receiver regenerates them from the ``TaskRef`` with its own source, never from a peer's message.
    """

    question: str
    answer: str
    ref: TaskRef
    family: str = ""
    steps: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    columns: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    scorer: Callable[[str], float] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.columns, MappingProxyType):
            object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))

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
    """A deterministic, indexable set of tasks: ``get(i)`` is the same on every node for the same config.

    ``columns`` names the ``Task.columns`` its tasks carry; ``completion_columns`` the per-completion
    ``Sample.extras`` keys that :meth:`completion_extras` fills (e.g. a code task's unit-test results).
    """

    source: str = ""
    columns: frozenset[str] = frozenset()
    completion_columns: frozenset[str] = frozenset()

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

    def completion_extras(self, task: Task, completions: Sequence[str]) -> list[dict[str, Any]]:
        """Per-completion values computed from the task (``completion_columns``); none by default."""
        return [{} for _ in completions]
