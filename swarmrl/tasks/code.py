"""The ``code`` task source: write a small Python function; unit tests run in a sandbox decide.

Rows (JSON Lines) have ``question`` (the prompt), ``prefix`` (source code the completion is appended to,
e.g. ``def add3(x):\\n    return ``), ``solution`` (a reference completion: the gold answer and the warm-start
target) and ``tests`` (Python expressions that are ``True`` when the function is right). Dataset ``tiny``
is the project's own file (``data/code_tiny.jsonl``, made by ``data/make_code_tiny.py``); any other dataset
name needs ``config.path``.

Each task carries the columns ``tests`` and ``code_prefix``; every completion gets
``extras[results_key]`` (default ``test_results``, what ``verpo`` reads): one 0/1 per test from running
``prefix + completion`` in :class:`~swarmrl.tasks.sandbox.Sandbox`. A receiver runs a peer's completions in
its own sandbox against the tests of its own copy of the task. The task's own scorer (``dataset_score``) is
1 when every test passes.

Config (``tasks.sources[i].config``): ``path``, ``results_key``, ``isolation`` (``auto|bwrap|unshare|none``),
``cpu_seconds`` (2), ``wall_seconds`` (5), ``per_test_seconds`` (1), ``memory_mb`` (256), ``file_mb`` (1),
``workers`` (parallel sandboxes, 2), ``cache`` (results kept for repeated completions, 4096). Only the file's
contents enter the ``TaskRef`` digest: nodes with other limits still share tasks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarmrl.errors import TaskConfigError
from swarmrl.protocol.types import config_digest
from swarmrl.tasks.base import Task, TaskSource
from swarmrl.tasks.dataset import _jsonl, content_hash
from swarmrl.tasks.sandbox import Sandbox, SandboxLimits

SHIPPED = {"tiny": Path(__file__).with_name("data") / "code_tiny.jsonl"}


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field("", description="JSONL file of functions with tests ('' = the shipped dataset).")
    results_key: str = Field("test_results", min_length=1, description="Sample.extras key of the results.")
    isolation: Literal["auto", "bwrap", "unshare", "none"] = "auto"
    cpu_seconds: int = Field(2, ge=1, le=600)
    wall_seconds: float = Field(5.0, gt=0, le=600)
    per_test_seconds: float = Field(1.0, gt=0, le=600)
    memory_mb: int = Field(256, ge=64, le=65536)
    file_mb: int = Field(1, ge=0, le=65536)
    workers: int = Field(2, ge=1, le=64)
    cache: int = Field(4096, ge=0, le=1_000_000)


def _options(config: dict[str, Any]) -> CodeOptions:
    try:
        return CodeOptions.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise TaskConfigError(f"config.{loc}", str(err["msg"])) from None


class CodeSource(TaskSource):
    """Functions with unit tests; ``size`` is the number of rows."""

    source = "code"
    columns = frozenset({"tests", "code_prefix"})

    def __init__(self, dataset: str, config: dict[str, Any], seed: int, size: int) -> None:
        super().__init__(dataset, config, 0, size)
        opts = _options(config)
        self.options = opts
        if opts.path:
            path = Path(opts.path).expanduser()
        elif dataset in SHIPPED:
            path = SHIPPED[dataset]
        else:
            raise TaskConfigError(
                "config.path", f"dataset '{dataset}' is not shipped ({', '.join(SHIPPED)}); give config.path"
            )
        if not path.is_file():
            raise TaskConfigError("config.path", f"'{path}' is not a file")
        self.rows = [self._row(r, i, path) for i, r in enumerate(_jsonl(path))]
        if not self.rows:
            raise TaskConfigError("config.path", f"'{path}' has no rows")
        self.size = len(self.rows)
        self.digest = config_digest({"dataset": dataset, "sha256": content_hash(path)})
        self.completion_columns = frozenset({opts.results_key})
        limits = SandboxLimits(
            cpu_seconds=opts.cpu_seconds,
            wall_seconds=opts.wall_seconds,
            per_test_seconds=opts.per_test_seconds,
            memory_mb=opts.memory_mb,
            file_mb=opts.file_mb,
        )
        self._sandbox: Sandbox | None = None
        self._limits = limits
        self._cache: OrderedDict[tuple[int, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _row(row: dict[str, Any], i: int, path: Path) -> dict[str, Any]:
        for key, kind in (("question", str), ("prefix", str), ("solution", str), ("tests", list)):
            if not isinstance(row.get(key), kind):
                raise TaskConfigError(
                    "config.path", f"row {i} of '{path.name}' needs '{key}' ({kind.__name__})"
                )
        if not row["tests"] or not all(isinstance(t, str) and t for t in row["tests"]):
            raise TaskConfigError("config.path", f"row {i} of '{path.name}': tests must be non-empty strings")
        return row

    @property
    def sandbox(self) -> Sandbox:
        """Built on first use (probing the isolation costs a few process starts)."""
        with self._lock:
            if self._sandbox is None:
                self._sandbox = Sandbox(self._limits, self.options.isolation)
            return self._sandbox

    def run_tests(self, index: int, completion: str) -> list[float]:
        """The pass vector of ``completion`` for task ``index`` (cached for repeated completions)."""
        index %= self.size
        key = (index, completion)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return list(hit)
        row = self.rows[index]
        result = self.sandbox.run(row["prefix"] + completion, row["tests"])
        with self._lock:
            if self.options.cache:
                self._cache[key] = result
                while len(self._cache) > self.options.cache:
                    self._cache.popitem(last=False)
        return list(result)

    def get(self, index: int) -> Task:
        index %= self.size
        row = self.rows[index]

        def scorer(answer_text: str) -> float:
            return 1.0 if all(p > 0.5 for p in self.run_tests(index, answer_text)) else 0.0

        return Task(
            row["question"],
            row["solution"],
            self.ref(index),
            family=str(row.get("name", self.dataset)),
            metadata={"row": index},
            columns={"tests": list(row["tests"]), "code_prefix": row["prefix"]},
            scorer=scorer,
        )

    def completion_extras(self, task: Task, completions: Sequence[str]) -> list[dict[str, Any]]:
        if not self.owns(task.ref):
            return [{} for _ in completions]
        unique = list(dict.fromkeys(completions))
        workers = min(self.options.workers, len(unique)) or 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(
                zip(unique, pool.map(lambda c: self.run_tests(task.ref.index, c), unique), strict=True)
            )
        return [{self.options.results_key: results[c]} for c in completions]
