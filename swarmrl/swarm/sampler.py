"""The SAPO sampler: which external groups from the pool a node trains on this round.

Strategies (``sampling.strategy``):

- ``nonzero_advantage_uniform`` (default): re-score up to ``J * rescore_factor`` random candidates with the
  node's own reward pipeline, drop those whose rewards are all equal (zero GRPO advantage: no learning
  signal, and no signal under these local rewards ever, so they also leave the pool), then take J uniformly.
  Candidates whose sender's advisory rewards vary are looked at first (advisory rewards only order).
- ``uniform``: J uniformly at random, no filtering (the SAPO paper's plain sampler).
- ``top_reward``: re-score candidates as above and take the J with the highest mean local reward.
- ``adaptive``: J is chosen each round by ``AdaptiveController`` from the node's own evidence, then groups
  are drawn as in ``nonzero_advantage_uniform``.

Rewards always come from the injected ``rescore`` callable (the local reward pipeline); the chosen
groups carry them in ``group.rewards``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from swarmrl.errors import RewardError
from swarmrl.protocol.types import RolloutGroup
from swarmrl.swarm.pool import PoolEntry, RolloutPool

Strategy = Literal["nonzero_advantage_uniform", "uniform", "top_reward", "adaptive"]
#: The node's reward pipeline: one list of per-completion rewards per group.
Rescore = Callable[[list[RolloutGroup]], list[list[float]]]

_EQUAL_TOL = 1e-9
#: ``RolloutGroup.extras`` key a rescorer may set: whether the group carries any learning signal under the
#: local pipeline (e.g. dense per-token rewards that differ while the totals are equal). Without it the
#: sampler falls back to "the totals are not all equal".
HAS_SIGNAL = "has_signal"


def has_advantage(rewards: list[float]) -> bool:
    """True when a group's rewards are not all equal (GRPO advantages are not all zero)."""
    return bool(rewards) and max(rewards) - min(rewards) > _EQUAL_TOL


def has_signal(group: RolloutGroup) -> bool:
    """True when a re-scored group gives a gradient: the rescorer's verdict, else unequal total rewards."""
    flag = group.extras.get(HAS_SIGNAL)
    return bool(flag) if flag is not None else has_advantage(group.rewards)


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    window: int = 8
    min_evidence: int = 3
    harm_margin: float = 0.01
    probe_every: int = 5
    confidence_z: float = 2.0


class AdaptiveController:
    """Chooses J each round from the node's own evidence; refusing is the default. The rule, in order:

    1. Evidence. After each round the node reports its own mean reward, the share of its own groups with
       zero advantage, and how many external groups it trained on. The change of own mean reward from one
       round to the next is credited to the previous round's choice: into the "with external" record if
       that round trained on external groups, else into "without". Each record keeps the last ``window``
       changes.
    2. Take only what helps. When both records hold ``min_evidence`` changes and the mean change with
       external groups beats the one without by more than ``harm_margin`` *and* by more than
       ``confidence_z`` standard errors (Welch), J = J_max.
    3. Otherwise J = 0: with no verdict, or when external groups do not help, the node trains on its own
       groups alone. (Round-to-round reward noise is several times a plausible gain, so a rule that acts on
       a raw mean difference flips at random and keeps paying the cost of unhelpful groups.)
    4. Probe. Every ``probe_every`` rounds the decision flips so that both records stay fresh: a refusing
       node takes J = ceil(J_max * (1 + z) / 2) groups, where z is the share of its own groups with zero
       advantage (more need for signal, more groups), and a taking node takes none.
    """

    def __init__(self, settings: AdaptiveSettings) -> None:
        self.settings = settings
        self._with: deque[float] = deque(maxlen=settings.window)
        self._without: deque[float] = deque(maxlen=settings.window)
        self._last_reward: float | None = None
        self._last_used = 0
        self._zero_share = 1.0
        self._rounds = 0

    def observe(self, reward_mean: float, zero_advantage_share: float, external_used: int) -> None:
        """Report one finished round of the node."""
        if self._last_reward is not None and math.isfinite(reward_mean):
            (self._with if self._last_used > 0 else self._without).append(reward_mean - self._last_reward)
        if math.isfinite(reward_mean):
            self._last_reward = reward_mean
        self._last_used = external_used
        self._zero_share = min(1.0, max(0.0, zero_advantage_share))
        self._rounds += 1

    def verdict(self) -> Literal["helps", "hurts", "unknown"]:
        s = self.settings
        if len(self._with) < s.min_evidence or len(self._without) < s.min_evidence:
            return "unknown"
        mean_w, mean_wo = _mean_var(self._with), _mean_var(self._without)
        delta = mean_w[0] - mean_wo[0]
        se = math.sqrt(mean_w[1] / len(self._with) + mean_wo[1] / len(self._without))
        if delta > s.harm_margin and delta > s.confidence_z * se:
            return "helps"
        if delta < -s.harm_margin:
            return "hurts"
        return "unknown"

    def decide(self, j_max: int) -> int:
        """J for the coming round (0 <= J <= j_max)."""
        if j_max <= 0:
            return 0
        need = math.ceil(j_max * (1.0 + self._zero_share) / 2.0)
        j = j_max if self.verdict() == "helps" else 0
        if self._rounds and self._rounds % self.settings.probe_every == 0:
            j = need if j == 0 else 0
        return max(0, min(j_max, j))


def _mean_var(values: deque[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var


class Sampler:
    """Draws J groups from a RolloutPool with one of the strategies above."""

    def __init__(
        self,
        strategy: Strategy,
        rng: random.Random,
        rescore_factor: int = 4,
        adaptive: AdaptiveController | None = None,
    ) -> None:
        self.strategy = strategy
        self.rng = rng
        self.rescore_factor = rescore_factor
        self.adaptive = adaptive or AdaptiveController(AdaptiveSettings())
        self.last_j = 0

    def sample(self, pool: RolloutPool, j: int, rescore: Rescore) -> list[RolloutGroup]:
        """Remove and return up to J groups from the pool (fewer if the pool lacks useful ones)."""
        if self.strategy == "adaptive":
            j = self.adaptive.decide(j)
        self.last_j = j
        entries = pool.entries()
        if j <= 0 or not entries:
            return []
        if self.strategy == "uniform":
            chosen = self.rng.sample(entries, min(j, len(entries)))
            return [e.group for e in pool.take([i for i, _ in chosen])]
        candidates = self._candidates(entries, j)
        rewards = rescore([e.group for _, e in candidates])
        if len(rewards) != len(candidates) or any(
            len(r) != e.group.size for r, (_, e) in zip(rewards, candidates, strict=False)
        ):
            raise RewardError("rescore must return one reward per completion for every group it is given")
        for (_, entry), values in zip(candidates, rewards, strict=True):
            entry.group.rewards = [float(v) for v in values]
        if self.strategy == "top_reward":
            ranked = sorted(candidates, key=lambda c: -_mean(c[1].group.rewards))
            return [e.group for e in pool.take([i for i, _ in ranked[:j]])]
        useful = [i for i, e in candidates if has_signal(e.group)]
        pool.discard([i for i, e in candidates if not has_signal(e.group)])
        return [e.group for e in pool.take(useful[:j])]

    def _candidates(self, entries: list[tuple[int, PoolEntry]], j: int) -> list[tuple[int, PoolEntry]]:
        """Up to J * rescore_factor entries in random order, those with varying advisory rewards first."""
        shuffled = list(entries)
        self.rng.shuffle(shuffled)
        shuffled.sort(key=lambda c: 0 if has_advantage(c[1].group.advisory_rewards) else 1)
        return shuffled[: j * self.rescore_factor]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("-inf")
