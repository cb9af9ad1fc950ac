"""The inputs reward modules read from ``Sample.extras``: what this node provides, and filling them in.

Three kinds arrive, for own and external groups alike, always computed here (never taken from a peer):

* task columns (``Task.columns``: reference answers, unit tests, reference rewards, step labels), copied
  by :func:`swarmrl.node.rollouts.to_samples` from this node's own regeneration of the task;
* per-completion columns a task source computes (``TaskSource.completion_extras``: the ``code`` task's
  unit-test pass vector, run in its sandbox);
* reward-model scores (``rewards.reward_models``), and their reference-completion scores (``ref_key``).

:func:`provided_inputs` names every key a config provides; validation checks modules' declared inputs
against it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmrl.config import NodeConfig
from swarmrl.config.scorers import RewardModelSpec
from swarmrl.errors import ConfigError, TaskError
from swarmrl.protocol.types import RolloutGroup
from swarmrl.rewards import Sample
from swarmrl.rewards.requirements import POLICY_SCORER
from swarmrl.rewards.segment import TOKEN_OFFSETS
from swarmrl.tasks import Task, TaskSource, build_source

if TYPE_CHECKING:
    from swarmrl.trainer.reward_model import RewardModel

log = logging.getLogger(__name__)

#: Inputs every sample of a running node has: token offsets (the node always passes its tokenizer) and the
#: policy scorer (bound to the pipeline whenever a module needs one, ``trainer.scorer.attach_scorer``).
ALWAYS = frozenset({TOKEN_OFFSETS, POLICY_SCORER})


def _sources(config: NodeConfig) -> list[TaskSource]:
    t = config.tasks
    return [build_source(s.source, s.dataset, s.config, t.seed, t.size) for s in t.sources]


def source_columns(sources: Sequence[TaskSource]) -> frozenset[str]:
    """Task columns and per-completion columns of ``sources``."""
    keys: set[str] = set()
    for src in sources:
        keys |= set(src.columns) | set(src.completion_columns)
    return frozenset(keys)


def provided_inputs(config: NodeConfig, sources: Sequence[TaskSource] | None = None) -> frozenset[str]:
    """Every ``Sample.extras`` key a node with ``config`` fills: the configured task sources' columns (and
    completion columns), the keys of the configured reward models, ``token_offsets`` and the policy scorer. ``sources``: the
    already built task sources (else they are built from the config; TaskError when one cannot be)."""
    built = list(sources) if sources is not None else _sources(config)
    keys = set(ALWAYS) | source_columns(built)
    for spec in config.rewards.reward_models:
        keys |= spec.keys()
    return frozenset(keys)


def check_inputs(config: NodeConfig, sources: Sequence[TaskSource] | None = None) -> None:
    """ConfigError naming the field when a reward model cannot be found or reads a column no task source
    has; a model directory is checked for ``config.json`` (a hub id is only checked when loaded)."""
    specs = config.rewards.reward_models
    if not specs:
        return
    columns = source_columns(list(sources) if sources is not None else _sources(config))
    for i, spec in enumerate(specs):
        field = f"rewards.reward_models[{i}]"
        local = Path(spec.path).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise ConfigError(
                    f"{field}.path",
                    f"'{spec.path}' has no config.json; fix: a directory saved with save_pretrained",
                )
        elif spec.path.startswith(("/", ".", "~")) or spec.path.count("/") > 1:
            raise ConfigError(f"{field}.path", f"'{spec.path}' does not exist (relative to {Path.cwd()})")
        if spec.ref_key and spec.references != "answer" and spec.references not in columns:
            have = ", ".join(sorted(columns)) or "none"
            raise ConfigError(
                f"{field}.references",
                f"no task source has a column '{spec.references}' (columns: {have}); fix: use 'answer' or "
                "map the field with tasks.sources[i].config.columns",
            )


class NodeInputs:
    """Fills per-completion extras before the reward pipeline: task sources' completion columns and reward
    model scores. Reward models are loaded here (``swarmrl.trainer.reward_model``), once per node."""

    def __init__(self, config: NodeConfig, sources: Sequence[TaskSource]) -> None:
        self.sources = list(sources)
        self.models: list[tuple[RewardModelSpec, RewardModel]] = []
        if config.rewards.reward_models:
            from swarmrl.trainer.reward_model import RewardModel

            for spec in config.rewards.reward_models:
                self.models.append((spec, RewardModel(spec)))
                log.info("reward model '%s' from %s -> extras['%s']", spec.name, spec.path, spec.score_key)

    def _owner(self, task: Task) -> TaskSource | None:
        return next((s for s in self.sources if s.owns(task.ref)), None)

    def fill(
        self, groups: Sequence[RolloutGroup], tasks: Sequence[Task | None], samples: Sequence[list[Sample]]
    ) -> None:
        for task, group_samples in zip(tasks, samples, strict=True):
            src = self._owner(task) if task is not None else None
            if task is None or src is None or not src.completion_columns:
                continue
            extra = src.completion_extras(task, [s.completion for s in group_samples])
            for s, values in zip(group_samples, extra, strict=True):
                s.extras.update(values)
        flat = [s for group_samples in samples for s in group_samples]
        if not flat:
            return
        for spec, model in self.models:
            scores = model.score([s.prompt for s in flat], [s.completion for s in flat])
            for s, v in zip(flat, scores, strict=True):
                s.extras[spec.score_key] = v
            if spec.ref_key:
                self._references(spec, model, groups, tasks, samples)

    def _references(
        self,
        spec: RewardModelSpec,
        model: RewardModel,
        groups: Sequence[RolloutGroup],
        tasks: Sequence[Task | None],
        samples: Sequence[list[Sample]],
    ) -> None:
        for group, task, group_samples in zip(groups, tasks, samples, strict=True):
            refs = reference_texts(spec, task)
            if not refs:
                continue
            values = model.score([group.question] * len(refs), refs)
            for s in group_samples:
                s.extras[spec.ref_key] = list(values)


def reference_texts(spec: RewardModelSpec, task: Task | None) -> list[str]:
    """The reference completions ``spec`` scores for ``task``: its gold answer, or a column's strings
    (none for a task this node could not regenerate)."""
    if task is None:
        return []
    if spec.references == "answer":
        return [task.answer]
    raw: Any = task.columns.get(spec.references)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return list(raw)
    raise TaskError(
        f"rewards.reward_models '{spec.name}': column '{spec.references}' must hold a string or a list of "
        f"strings, got {type(raw).__name__}"
    )
