"""reasoning-gym adapter: dataset name + config + seed -> questions, answers and the dataset's own scorer."""

from __future__ import annotations

from typing import Any

from swarmrl.errors import TaskError
from swarmrl.tasks.base import Task, TaskSource


class ReasoningGymSource(TaskSource):
    source = "reasoning_gym"

    def __init__(self, dataset: str, config: dict[str, Any], seed: int, size: int) -> None:
        super().__init__(dataset, config, seed, size)
        try:
            import reasoning_gym
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise TaskError("reasoning-gym is not installed; run `make install`") from exc
        try:
            self._ds = reasoning_gym.create_dataset(dataset, size=self.size, seed=self.seed, **self.config)
        except Exception as exc:  # the library raises many types for bad names/configs
            raise TaskError(
                f"reasoning-gym cannot build dataset '{dataset}' with {self.config}: {exc}"
            ) from exc

    def get(self, index: int) -> Task:
        index %= self.size
        entry = self._ds[index]
        ds = self._ds

        def scorer(answer_text: str) -> float:
            return float(ds.score_answer(answer_text, entry))

        return Task(
            str(entry["question"]),
            str(entry["answer"]),
            self.ref(index),
            family=self.dataset,
            metadata={"source_index": index},
            scorer=scorer,
        )
