"""A peer's group, prepared once: retokenized with our tokenizer, matched to our own regeneration of its task,
and scored by our reward pipeline, the first time the sampler (or the round) looks at it.

The result travels with the group (``RolloutGroup.extras[PREPARED]``) while it sits in the pool, so a
candidate that is looked at again in a later round is not retokenized or re-scored. The task is the one the
receive path regenerated (``REGENERATED_TASK``); only a group accepted without one (``allow_unverified_tasks``)
is looked up here, through the same bounds-checked lookup, and scored without a task when that fails. Never
the sender's rewards or answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swarmrl.errors import SwarmRLError
from swarmrl.node.rollouts import retokenize
from swarmrl.protocol.types import RolloutGroup, TaskRef
from swarmrl.rewards import Sample
from swarmrl.rewards.pipeline import ScoredGroup
from swarmrl.swarm.receive import REGENERATED_TASK
from swarmrl.swarm.sampler import HAS_SIGNAL
from swarmrl.tasks import Task
from swarmrl.trainer.policy import Policy

#: ``RolloutGroup.extras`` key of a peer group's local preparation (``Prepared``).
PREPARED = "prepared"

Score = Callable[[list[RolloutGroup], list[Task | None]], tuple[list[list[Sample]], list[ScoredGroup]]]


@dataclass(frozen=True)
class Prepared:
    """A peer group's samples and local scores (what the training batch needs from it)."""

    samples: list[Sample]
    scored: ScoredGroup


class ExternalScoring:
    """Prepares peers' groups once; ``rescore`` is the sampler's callback."""

    def __init__(self, policy: Policy, resolve: Callable[[TaskRef], Task], score: Score) -> None:
        self._policy = policy
        self._resolve = resolve
        self._score = score

    def _task(self, group: RolloutGroup) -> Task | None:
        task = group.extras.get(REGENERATED_TASK)
        if isinstance(task, Task):
            return task
        try:
            return self._resolve(group.task)
        except SwarmRLError:
            return None

    def prepare(self, groups: list[RolloutGroup]) -> list[Prepared]:
        """Each group's preparation, computing it for those not prepared yet."""
        fresh = [g for g in groups if not isinstance(g.extras.get(PREPARED), Prepared)]
        if fresh:
            for g in fresh:
                retokenize(self._policy, g)
            samples, scored = self._score(fresh, [self._task(g) for g in fresh])
            for g, smp, sc in zip(fresh, samples, scored, strict=True):
                g.extras[PREPARED] = Prepared(smp, sc)
                g.extras[HAS_SIGNAL] = not sc.zero_variance  # dense per-token rewards count as signal
        out: list[Prepared] = []
        for g in groups:
            p = g.extras[PREPARED]
            g.rewards = list(p.scored.totals)  # local rewards, never the sender's claims
            out.append(p)
        return out

    def rescore(self, groups: list[RolloutGroup]) -> list[list[float]]:
        """Local rewards for peers' groups (the sampler's ``rescore``)."""
        return [p.scored.totals for p in self.prepare(groups)]
