"""What a finished round leaves behind: its ``RoundRecord`` (journal, metrics, progress, trackers) and its
``rollouts.log`` entry (the text of every own group, for ``swarm-node rewards compare``)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarmrl.node.evaluation import EvalResult
from swarmrl.node.records import RoundRecord
from swarmrl.protocol.types import RolloutGroup
from swarmrl.rewards.pipeline import ScoredGroup
from swarmrl.trainer.learner import StepStats


def mean(values: list[float]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def truncated_fraction(groups: list[RolloutGroup]) -> float:
    """Share of the completions that hit ``generation.max_new_tokens`` without an end-of-sequence token."""
    return mean([0.0 if c.finished else 1.0 for g in groups for c in g.completions])


@dataclass
class Generated:
    """This round's own groups and what generating them cost."""

    groups: list[RolloutGroup]
    tasks: list[Any]  # swarmrl.tasks.Task, one per group
    seconds: float
    tokens: int

    def __add__(self, other: Generated) -> Generated:
        return Generated(
            self.groups + other.groups,
            self.tasks + other.tasks,
            self.seconds + other.seconds,
            self.tokens + other.tokens,
        )

    def first(self, n: int) -> Generated:
        """The first ``n`` groups (a surplus is not trained on; its generation cost stays counted)."""
        return Generated(self.groups[:n], self.tasks[:n], self.seconds, self.tokens)


def round_record(
    round_: int,
    *,
    version: int,
    own: Generated,
    own_scored: list[ScoredGroup],
    trained: list[ScoredGroup],
    external: int,
    stats: StepStats,
    module_names: list[str],
    started: float,
    eval_result: EvalResult | None,
) -> RoundRecord:
    """The record of a round: own rewards over ``own_scored`` (all own groups, before filtering), trained
    figures over ``trained`` (the batch: kept own groups, then ``external`` peer groups last)."""
    rewards = [r for s in own_scored for r in s.totals]
    accuracy = [a for s in own_scored for a in s.accuracy]
    modules = {
        name: mean([float(v) for s in own_scored for v in s.modules.get(name, []) if v is not None])
        for name in module_names
    }
    ext_rewards = [r for s in trained[len(trained) - external :] for r in s.totals] if external else []
    gen_s = own.seconds
    return RoundRecord(
        round=round_,
        time=time.time(),
        policy_version=version,
        generated_version=own.groups[0].policy.version if own.groups else None,
        reward_mean=mean(rewards),
        reward_std=float(np.std(rewards)) if rewards else 0.0,
        accuracy=mean(accuracy),
        modules=modules,
        zero_variance_fraction=mean([float(s.zero_variance) for s in own_scored]),
        local_groups=len(trained) - external,
        external_groups=external,
        external_reward_mean=mean(ext_rewards) if ext_rewards else None,
        trained_reward_mean=mean([r for s in trained for r in s.totals]),
        loss=stats.loss,
        kl=stats.kl,
        clip_fraction=stats.clip_fraction,
        clip_fraction_by_origin=stats.clip_fraction_by_origin,
        ratio_mean_by_origin=stats.ratio_mean_by_origin,
        external_is_weight=stats.external_is_weight,
        truncated_fraction=truncated_fraction(own.groups),
        truncated_masked=stats.truncated_masked,
        lr=stats.lr,
        generation_tokens=own.tokens,
        generation_seconds=gen_s,
        tokens_per_second=own.tokens / gen_s if gen_s > 0 else 0.0,
        train_seconds=stats.seconds,
        optimizer_steps=stats.optimizer_steps,
        round_seconds=time.perf_counter() - started,
        eval_accuracy=eval_result.greedy_accuracy if eval_result is not None else None,
        eval_by_source=eval_result.by_source() if eval_result is not None else None,
    )


def rollouts_entry(round_: int, groups: list[RolloutGroup]) -> dict[str, Any]:
    """The ``rollouts.log`` line of a round: every own group's task, texts and local rewards."""
    return {
        "kind": "rollouts",
        "round": round_,
        "groups": [
            {
                "task": [g.task.source, g.task.dataset, g.task.config_digest, g.task.seed, g.task.index],
                "question": g.question,
                "answer": g.answer,
                "origin": g.origin,
                "completions": [c.text for c in g.completions],
                "rewards": g.rewards,
            }
            for g in groups
        ],
    }
