"""Build task sources from config, sample questions, and regenerate a task from a peer's TaskRef.

Sources by name: the built-ins (``arithmetic``, ``multistep``, ``reasoning_gym``, ``dataset``) and the
``swarmrl.tasks`` entry-point group, whose entries are ``TaskSource`` subclasses (constructed as
``cls(dataset, config, seed, size)``) or factories with the same signature returning one. A plugin's
``source`` attribute is what its ``TaskRef`` carries: receivers need the same plugin to regenerate its tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from swarmrl.errors import DatasetUnavailableError, TaskError
from swarmrl.protocol.types import TaskRef
from swarmrl.tasks.arithmetic import ArithmeticSource, MultiStepSource
from swarmrl.tasks.base import Task, TaskSource
from swarmrl.tasks.dataset import DatasetSource
from swarmrl.tasks.schedule import RecoveringScheduler

ENTRY_POINT_GROUP = "swarmrl.tasks"
#: Built-in source names (``reasoning_gym`` is imported only when used).
BUILTIN = ("arithmetic", "multistep", "reasoning_gym", "dataset")
#: Sources whose tasks come from local files: an unknown ref of theirs is "not held here".
FILE_BACKED = frozenset({DatasetSource.source})

SOURCES: dict[str, type[TaskSource]] = {
    ArithmeticSource.source: ArithmeticSource,
    MultiStepSource.source: MultiStepSource,
    DatasetSource.source: DatasetSource,
}

SourceFactory = Callable[[str, dict[str, Any], int, int], TaskSource]


def plugin_names() -> list[str]:
    """Names registered in the ``swarmrl.tasks`` entry-point group (not loaded)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTIN))


def available() -> list[str]:
    """Every task source name this installation can build."""
    return [*BUILTIN, *plugin_names()]


def _plugin(source: str) -> SourceFactory | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == source:
            try:
                loaded = ep.load()
            except Exception as exc:
                raise TaskError(f"task source plugin '{source}' ({ep.value}) failed to load: {exc}") from exc
            if not callable(loaded):
                raise TaskError(f"task source plugin '{source}' ({ep.value}) is not a class or factory")
            return loaded  # type: ignore[no-any-return]
    return None


def build_source(source: str, dataset: str, config: dict[str, Any], seed: int, size: int) -> TaskSource:
    if source == "reasoning_gym":
        from swarmrl.tasks.reasoning_gym_source import ReasoningGymSource

        return ReasoningGymSource(dataset, config, seed, size)
    cls: SourceFactory | None = SOURCES.get(source)
    if cls is None:
        cls = _plugin(source)
    if cls is None:
        raise TaskError(f"unknown task source '{source}'; use one of {', '.join(available())}")
    try:
        built = cls(dataset, config, seed, size)
    except TaskError:
        raise
    except Exception as exc:  # a plugin's own validation error: name the source
        raise TaskError(f"task source '{source}' cannot build dataset '{dataset}': {exc}") from exc
    if not isinstance(built, TaskSource):
        raise TaskError(f"task source plugin '{source}' returned {type(built).__name__}, not a TaskSource")
    return built


def regenerate(sources: Sequence[TaskSource], ref: TaskRef) -> tuple[str, str]:
    """Question and answer for ``ref`` from one of our own sources (see ``resolve``)."""
    task = resolve(sources, ref)
    return task.question, task.answer


def resolve(sources: Sequence[TaskSource], ref: TaskRef) -> Task:
    """The task ``ref`` names, from one of our own sources; TaskError if none owns it or the index is out of
    range (DatasetUnavailableError when the ref names a file-backed source: we do not hold that file)."""
    for src in sources:
        if src.owns(ref):
            if not 0 <= ref.index < src.size:
                raise TaskError(f"task index {ref.index} outside [0, {src.size})")
            return src.get(ref.index)
    file_backed = ref.source in FILE_BACKED or any(
        s.source == ref.source and getattr(s, "file_backed", False) for s in sources
    )
    if file_backed:
        same_name = [s for s in sources if s.source == ref.source and s.dataset == ref.dataset]
        held = (
            f"ours has digest {same_name[0].digest} (another version of the file)"
            if same_name
            else "this node does not hold it"
        )
        raise DatasetUnavailableError(
            f"{ref.source} dataset '{ref.dataset}' with digest {ref.config_digest}: {held}"
        )
    raise TaskError(f"no local task source matches {ref.source}/{ref.dataset} (digest {ref.config_digest})")


class TaskSampler:
    """Draws training questions from weighted sources; a held-out index range serves greedy evaluation.

    Training indices are drawn from ``[eval_questions, size)``; evaluation uses ``[0, eval_questions)`` of every
    source, so evaluation questions are never trained on by this node.
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
        for src in sources:
            if src.size <= eval_questions:
                raise TaskError(
                    f"task source {src.source}/{src.dataset} has {src.size} items, not more than the "
                    f"{eval_questions} held-out evaluation questions (tasks.eval_questions): lower "
                    "tasks.eval_questions or use more data"
                )
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

    def resolve(self, ref: TaskRef) -> Task:
        """The task a (peer's) TaskRef names, from our own sources, bounds-checked (see ``resolve``)."""
        return resolve(self.sources, ref)
