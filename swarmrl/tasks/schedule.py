"""Task-family scheduling under recovering rewards (Simchi-Levi, Zheng & Zhu, "Offline Planning and Online
Learning under Recovering Rewards", arXiv 2106.14813; ICML 2021 as "Dynamic Planning and Learning under
Recovering Rewards").

The arms are the node's task sources; each round the node pulls up to K of them (``arms_per_round``) and its
local questions come from the pulled arms. An arm's reward is the learning signal it gave: the share of its
groups with a non-zero advantage. The paper's model (TEXT): the expected reward of an arm drops right after a
pull and recovers, non-parametrically, with its idle time d, up to a cap (``max_gap``); its policy is
**purely periodic** (each arm pulled every ``p_k`` rounds), planned offline from the recovery curves
``R_k(d)``, and online with UCB estimates of those curves, re-planned in epochs.

Our choices (UNCONFIRMED): the offline plan searches all period vectors with ``p_k <= max_period`` (or
"never") ranked by the paper's per-round value ``sum_k R_k(min(p_k, max_gap)) / p_k`` and takes the best one
that a conflict-free cycle realises (1..K arms every round); UCB bonus ``c * sqrt(2 ln t / n)``; unseen
(arm, gap) cells are optimistic (``prior``); re-planning every ``replan_every`` rounds. ``recovering`` is the
same policy with plug-in means (c = 0), ``ucb`` with c > 0, ``fixed`` is the weighted random draw.
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from swarmrl.errors import TaskError

Mode = Literal["fixed", "recovering", "ucb"]


@dataclass(frozen=True)
class Plan:
    """A purely periodic schedule: arm k is pulled at rounds ``start + offsets[k] + j * periods[k]``
    (period 0 = never); ``value`` is the planned reward per round."""

    periods: tuple[int, ...]
    offsets: tuple[int, ...]
    value: float

    def due(self, step: int) -> list[int]:
        return [
            k for k, (p, o) in enumerate(zip(self.periods, self.offsets, strict=True)) if p and step % p == o
        ]


def periodic_value(curves: Sequence[Sequence[float]], periods: Sequence[int]) -> float:
    """``sum_k R_k(min(p_k, d_max)) / p_k`` (``curves[k][d - 1] = R_k(d)``), the steady-state reward per round."""
    total = 0.0
    for curve, p in zip(curves, periods, strict=True):
        if p:
            total += float(curve[min(p, len(curve)) - 1]) / p
    return total


def _offsets(periods: Sequence[int], k_max: int) -> tuple[int, ...] | None:
    """Offsets giving every round of the cycle between 1 and ``k_max`` pulled arms, or None."""
    active = [k for k, p in enumerate(periods) if p]
    if not active:
        return None
    length = math.lcm(*[periods[k] for k in active])
    load = [0] * length
    chosen = [0] * len(periods)

    def place(i: int) -> bool:
        if i == len(active):
            return all(1 <= x <= k_max for x in load)
        k = active[i]
        p = periods[k]
        for o in range(p):
            slots = range(o, length, p)
            if any(load[s] >= k_max for s in slots):
                continue
            for s in slots:
                load[s] += 1
            chosen[k] = o
            if place(i + 1):
                return True
            for s in slots:
                load[s] -= 1
        return False

    return tuple(chosen) if place(0) else None


def offline_plan(curves: Sequence[Sequence[float]], k_max: int = 1, max_period: int = 6) -> Plan:
    """The best realisable purely periodic plan for known recovery curves (see the module docstring)."""
    n = len(curves)
    if n == 0 or k_max < 1 or max_period < 1:
        raise TaskError("planning needs at least one arm, arms_per_round >= 1 and max_period >= 1")
    candidates = []
    for periods in itertools.product(range(max_period + 1), repeat=n):
        if not any(periods):
            continue
        density = sum(1.0 / p for p in periods if p)
        if density > k_max + 1e-9 or density < 1.0 - 1e-9:
            continue  # more than K pulls per round, or rounds with nothing to pull
        candidates.append((periodic_value(curves, periods), periods))
    candidates.sort(key=lambda c: (-c[0], -sum(1 for p in c[1] if p), c[1]))  # ties: more arms
    for value, periods in candidates:
        offsets = _offsets(periods, k_max)
        if offsets is not None:
            return Plan(tuple(periods), offsets, value)
    # no periodic cycle fits (cannot happen with period 1 allowed); fall back to pulling arm 0 every round
    return Plan((1,) + (0,) * (n - 1), (0,) * n, periodic_value(curves, (1,) + (0,) * (n - 1)))


def cycle_value(sequence: Sequence[Sequence[int]], curves: Sequence[Sequence[float]]) -> float:
    """Steady-state reward per round of repeating ``sequence`` (each entry: the arms pulled that round) forever:
    every pull earns ``R_k(gap)`` with the cyclic gap since the arm's previous pull, capped at ``d_max``."""
    length = len(sequence)
    total = 0.0
    for t, arms in enumerate(sequence):
        for k in arms:
            gap = next(d for d in range(1, length + 1) if k in sequence[(t - d) % length])
            total += float(curves[k][min(gap, len(curves[k])) - 1])
    return total / length


class RecoveringScheduler:
    """Online purely periodic policy with plug-in (``recovering``) or UCB (``ucb``) recovery estimates."""

    def __init__(
        self,
        n_arms: int,
        mode: Mode = "ucb",
        arms_per_round: int = 1,
        max_gap: int = 8,
        max_period: int = 6,
        ucb_c: float = 1.0,
        replan_every: int = 10,
        prior: float = 1.0,
    ) -> None:
        if mode not in ("recovering", "ucb"):
            raise TaskError("scheduler mode must be recovering or ucb")
        if not 1 <= arms_per_round <= n_arms:
            raise TaskError(f"arms_per_round must be in [1, {n_arms}] (the number of task sources)")
        self.n, self.mode, self.k = n_arms, mode, arms_per_round
        self.max_gap, self.max_period, self.replan_every, self.prior = (
            max_gap,
            max_period,
            replan_every,
            prior,
        )
        self.c = ucb_c if mode == "ucb" else 0.0
        self.t = 0
        self.last: list[int | None] = [None] * n_arms
        self.sums = [[0.0] * max_gap for _ in range(n_arms)]
        self.counts = [[0] * max_gap for _ in range(n_arms)]
        self.plan: Plan | None = None
        self.plan_start = 0
        self.pending: deque[list[tuple[int, int]]] = deque()
        self._lock = threading.Lock()

    def gap(self, arm: int) -> int:
        last = self.last[arm]
        return self.max_gap if last is None else min(self.t - last, self.max_gap)

    def estimates(self) -> list[list[float]]:
        """``R_k(d)`` estimates for d = 1..max_gap: mean (+ UCB bonus), ``prior`` where never observed."""
        log_t = math.log(max(2, self.t))
        out = []
        for sums, counts in zip(self.sums, self.counts, strict=True):
            row = []
            for s, n in zip(sums, counts, strict=True):
                row.append(self.prior if n == 0 else s / n + self.c * math.sqrt(2.0 * log_t / n))
            out.append(row)
        return out

    def choose(self) -> list[int]:
        """The arms pulled this round (re-plans at the start of each epoch)."""
        with self._lock:
            if self.plan is None or (self.t - self.plan_start) % self.replan_every == 0:
                self.plan = offline_plan(self.estimates(), self.k, self.max_period)
                self.plan_start = self.t
            arms = self.plan.due(self.t - self.plan_start) or [0]
            self.pending.append([(a, self.gap(a)) for a in arms])
            for a in arms:
                self.last[a] = self.t
            self.t += 1
            return arms

    def observe(self, rewards: dict[int, float]) -> None:
        """Rewards of the oldest chosen round not observed yet (arms without groups are skipped)."""
        with self._lock:
            if not self.pending:
                return
            for arm, gap in self.pending.popleft():
                if arm in rewards:
                    self.sums[arm][gap - 1] += float(rewards[arm])
                    self.counts[arm][gap - 1] += 1

    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(
                {
                    "t": self.t,
                    "last": self.last,
                    "sums": self.sums,
                    "counts": self.counts,
                    "plan": None
                    if self.plan is None
                    else (self.plan.periods, self.plan.offsets, self.plan.value),
                    "plan_start": self.plan_start,
                }
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self._lock:
            if len(state["last"]) != self.n or len(state["sums"][0]) != self.max_gap:
                raise TaskError("the checkpointed task schedule has a different number of arms or max_gap")
            self.t, self.last = int(state["t"]), list(state["last"])
            self.sums = [list(r) for r in state["sums"]]
            self.counts = [list(r) for r in state["counts"]]
            plan = state.get("plan")
            self.plan = None if plan is None else Plan(tuple(plan[0]), tuple(plan[1]), float(plan[2]))
            self.plan_start = int(state["plan_start"])
            self.pending.clear()  # rounds in flight at the checkpoint run again and choose again
