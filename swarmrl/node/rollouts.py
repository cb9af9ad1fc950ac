"""Glue between tasks, rewards and the trainer: groups -> reward samples -> train sequences."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swarmrl.protocol.types import Completion, RolloutGroup
from swarmrl.rewards import Sample
from swarmrl.rewards.offsets import token_offsets
from swarmrl.rewards.pipeline import ScoredGroup, token_advantages
from swarmrl.rewards.segment import TOKEN_OFFSETS
from swarmrl.tasks import Task
from swarmrl.trainer.learner import TrainSequence
from swarmrl.trainer.policy import Policy
from swarmrl.trainer.prompts import completion_ids, prompt_ids

#: ``RolloutGroup.extras`` key of the prompt token ids generation used (own groups; never sent).
PROMPT_IDS = "prompt_ids"


def retokenize(policy: Policy, group: RolloutGroup) -> RolloutGroup:
    """External text gets local token ids (our tokenizer; a peer's ids mean nothing here).

    Log-probs are cleared: the learner computes them under the local policy when the group enters a batch.
    """
    for c in group.completions:
        c.token_ids = completion_ids(policy.tokenizer, c.text, eos=c.finished)
        if not c.token_ids:
            c.token_ids = completion_ids(policy.tokenizer, c.text, eos=True)
        c.logprobs = []
    return group


def to_samples(group: RolloutGroup, task: Task | None, tokenizer: Any = None) -> list[Sample]:
    """Reward samples for a group; ``task`` (our own regeneration) supplies the scorer and gold steps.

    With ``tokenizer``, ``extras["token_offsets"]`` gets each completion token's character span, so step
    rewards land exactly on a step's last token. The task's columns (reference answers, unit tests,
    reference rewards, ...) are copied into every sample's extras, for own and external groups alike: a
    receiver's ``task`` is its own regeneration, so a peer's message never supplies them.
    """
    columns = dict(task.columns) if task is not None else {}
    return [
        Sample(
            prompt=group.question,
            completion=c.text,
            answer=group.answer,
            task=group.task,
            completion_ids=list(c.token_ids),
            steps=[],
            gold_steps=task.steps if task is not None else (),
            origin=group.origin,
            scorer=task.scorer if task is not None else None,
            extras={**copy.deepcopy(columns), **_offsets_extra(tokenizer, c.text, c.token_ids)},
        )
        for c in group.completions
    ]


def _offsets_extra(tokenizer: Any, text: str, ids: Sequence[int]) -> dict[str, Any]:
    if tokenizer is None:
        return {}
    offsets = token_offsets(tokenizer, text, ids)
    return {} if offsets is None else {TOKEN_OFFSETS: offsets}


@dataclass(frozen=True, slots=True)
class ExternalPolicy:
    """How external completions enter the loss (``sampling.external_samples`` / ``offpolicy_*``).

    ``positive_only``: an external completion's per-token advantages are clamped at zero, so completions
    that did worse than their group's mean get zero weight (they would push down text this policy rarely
    emits); own completions are never changed. ``is_cap`` > 0: a completion that carries the sender's
    sequence log-prob gets the truncated importance weight min(pi_local / pi_sender, is_cap) in the loss.
    """

    positive_only: bool = False
    is_cap: float = 0.0

    @classmethod
    def from_config(cls, external_samples: str, correction: str, cap: float) -> ExternalPolicy:
        return cls(external_samples == "positive", cap if correction == "truncated_is" else 0.0)


PLAIN = ExternalPolicy()


def sequence_logprob(comp: Completion) -> float | None:
    """A completion's log-prob under the policy that generated it (sum of its token log-probs), if known."""
    if not comp.logprobs or len(comp.logprobs) != len(comp.token_ids):
        return None
    return float(sum(comp.logprobs))


def train_sequences(
    policy: Policy,
    groups: Sequence[RolloutGroup],
    samples: Sequence[Sequence[Sample]],
    scored: Sequence[ScoredGroup],
    estimator: str,
    skip_zero_variance: bool = True,
    external: ExternalPolicy = PLAIN,
) -> list[TrainSequence]:
    """Per-token advantages from the reward pipeline, paired with prompt and completion ids.

    Groups without any non-zero advantage are skipped: they contribute no gradient, only compute; so are
    external completions left with no non-zero advantage by ``external.positive_only``.
    """
    advs = token_advantages(scored, samples, estimator)
    out: list[TrainSequence] = []
    for group, group_adv in zip(groups, advs, strict=True):
        is_external = group.origin == "external"
        if is_external and external.positive_only:
            group_adv = [[max(a, 0.0) for a in row] for row in group_adv]
        if skip_zero_variance and all(abs(a) < 1e-12 for row in group_adv for a in row):
            continue
        known = group.extras.get(PROMPT_IDS)  # set by generation for own groups: not tokenized twice
        p_ids = list(known) if known else prompt_ids(policy.tokenizer, group.question)
        stale = bool(group.extras.get("stale"))
        origin = "stale" if stale else group.origin
        for comp, adv in zip(group.completions, group_adv, strict=True):
            if is_external and external.positive_only and all(abs(a) < 1e-12 for a in adv):
                continue
            fresh_local = group.origin == "local" and not stale and comp.logprobs
            old = list(comp.logprobs) if fresh_local else None
            behaviour = list(comp.logprobs) if stale and len(comp.logprobs) == len(comp.token_ids) else None
            seq = TrainSequence(p_ids, list(comp.token_ids), adv, old, origin, behaviour)
            if is_external and external.is_cap > 0 and comp.behaviour_logprob is not None:
                seq.sender_logprob, seq.is_cap = comp.behaviour_logprob, external.is_cap
            out.append(seq)
    return out
