"""``swarm-node rewards compare``: score the rollouts a node recorded with two reward pipelines and compare.

A pipeline comes from a YAML file: a full node config, a file with only a ``rewards:`` section, or a bare
rewards section (``modules: [...]`` at the top level). The groups come from ``DATA/rollouts.log`` (one record
per round, written when ``node.record_rollouts`` is on). Each group's task is regenerated from its
``TaskRef`` (so step and dataset rewards see the gold steps and the dataset's scorer), using the task
sources of either config, else the source's preset; an unknown task keeps only the recorded answer.
Recorded text has no token ids, so dense rewards count in the trajectory return but are not placed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from swarmrl.config import NodeConfig, format_validation_error, load_config
from swarmrl.errors import ConfigError, RewardError, SwarmRLError
from swarmrl.protocol.types import TaskRef
from swarmrl.rewards.base import Sample
from swarmrl.rewards.compare import RewardComparison, compare_rewards
from swarmrl.rewards.pipeline import RewardPipeline

ROLLOUTS_FILE = "rollouts.log"


def load_pipeline_config(path: Path) -> NodeConfig:
    """A node config from a full config file, a ``rewards:``-only file or a bare rewards section."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if isinstance(raw, dict) and "modules" in raw and "rewards" not in raw:
        try:
            return NodeConfig.model_validate({"rewards": raw})
        except ValidationError as exc:
            raise format_validation_error(exc) from None
    return load_config(path)


def build_from(path: Path) -> tuple[RewardPipeline, NodeConfig]:
    from swarmrl.node.validate import build_reward_pipeline, check_semantics

    cfg = load_pipeline_config(path)
    check_semantics(cfg)
    pipeline = build_reward_pipeline(cfg)
    if pipeline.needs_scorer:
        raise ConfigError(
            f"{path}: rewards",
            "this pipeline has modules that score with the policy (likelihood, IGPO, PRIME, progress, "
            "sampled Co-Reward); `rewards compare` scores recorded text without a model, so leave them out",
        )
    return pipeline, cfg


@dataclass
class RecordedGroups:
    groups: list[list[Sample]]
    rounds: int
    unknown_tasks: int


class _Tasks:
    """Regenerates recorded tasks from the configs' sources (or the source's preset)."""

    def __init__(self, configs: Sequence[NodeConfig]) -> None:
        from swarmrl.tasks import TaskSource, build_source

        self.sources: list[TaskSource] = []
        self.size = configs[0].tasks.size if configs else 1_000_000
        for cfg in configs:
            for spec in cfg.tasks.sources:
                try:
                    self.sources.append(
                        build_source(spec.source, spec.dataset, spec.config, cfg.tasks.seed, cfg.tasks.size)
                    )
                except SwarmRLError:
                    continue
        self._build = build_source

    def find(self, ref: TaskRef, question: str) -> Any:
        candidates = [s for s in self.sources if s.owns(ref)]
        if not candidates:
            try:
                src = self._build(ref.source, ref.dataset, {}, ref.seed, max(self.size, ref.index + 1))
            except SwarmRLError:
                return None
            if src.owns(ref):
                self.sources.append(src)
                candidates = [src]
        for src in candidates:
            try:
                task = src.get(ref.index)
            except SwarmRLError:
                continue
            if task.question == question:
                return task
        return None


def read_groups(data_dir: Path, configs: Sequence[NodeConfig], max_rounds: int = 0) -> RecordedGroups:
    """Recorded groups (the last ``max_rounds`` rounds; 0 = all) as reward samples."""
    from swarmrl.node.journal import read_journal

    path = data_dir / ROLLOUTS_FILE
    if not path.is_file():
        raise ConfigError(
            "--journal",
            f"'{path}' does not exist; point --journal at a node data directory recorded with "
            "node.record_rollouts: true",
        )
    records = [r for r in read_journal(path) if r.get("kind") == "rollouts"]
    if max_rounds > 0:
        records = records[-max_rounds:]
    tasks = _Tasks(configs)
    groups: list[list[Sample]] = []
    unknown = 0
    for rec in records:
        for g in rec.get("groups", []):
            ref = TaskRef(*g["task"]) if isinstance(g.get("task"), list) and len(g["task"]) == 5 else None
            task = tasks.find(ref, g["question"]) if ref is not None else None
            unknown += task is None
            groups.append(
                [
                    Sample(
                        prompt=g["question"],
                        completion=text,
                        answer=g["answer"],
                        task=ref,
                        gold_steps=task.steps if task is not None else (),
                        origin=str(g.get("origin", "local")),
                        scorer=task.scorer if task is not None else None,
                    )
                    for text in g["completions"]
                ]
            )
    return RecordedGroups(groups, len(records), unknown)


@dataclass
class CompareResult:
    comparison: RewardComparison
    mean_a: float
    mean_b: float
    recorded: RecordedGroups

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.comparison.as_dict(),
            "rounds": self.recorded.rounds,
            "unknown_tasks": self.recorded.unknown_tasks,
            "reward_mean_a": self.mean_a,
            "reward_mean_b": self.mean_b,
        }


def compare_journal(a: Path, b: Path, journal: Path, max_rounds: int = 0) -> CompareResult:
    """Build both pipelines, score the recorded groups with each, compare their trajectory returns."""
    pa, ca = build_from(a)
    pb, cb = build_from(b)
    recorded = read_groups(journal, [ca, cb], max_rounds)
    if not recorded.groups:
        raise RewardError(f"no recorded groups in {journal / ROLLOUTS_FILE}")
    ta = [s.totals for s in pa.score(recorded.groups)]
    tb = [s.totals for s in pb.score(recorded.groups)]
    flat_a, flat_b = [x for g in ta for x in g], [x for g in tb for x in g]
    return CompareResult(
        compare_rewards(ta, tb),
        sum(flat_a) / len(flat_a) if flat_a else math.nan,
        sum(flat_b) / len(flat_b) if flat_b else math.nan,
        recorded,
    )


def format_table(result: CompareResult, a: str, b: str) -> str:
    """A plain-text table of the agreement figures."""

    def fmt(v: float | int | None) -> str:
        if v is None:
            return "n/a"
        return str(v) if isinstance(v, int) else f"{v:.4f}"

    c = result.comparison
    rows = [
        ("A", a),
        ("B", b),
        ("rounds / groups", f"{result.recorded.rounds} / {len(c.groups)}"),
        ("groups without a correlation", fmt(c.undefined_groups)),
        ("tasks not regenerated", fmt(result.recorded.unknown_tasks)),
        ("mean reward A / B", f"{fmt(result.mean_a)} / {fmt(result.mean_b)}"),
        ("Pearson (mean over groups)", fmt(c.pearson_mean)),
        ("Spearman (mean over groups)", fmt(c.spearman_mean)),
        ("STARC distance mean (0 same .. 2 opposite)", fmt(c.starc_mean)),
        ("STARC distance median", fmt(c.starc_median)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
