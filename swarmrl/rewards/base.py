"""The reward-module interface.

A module scores one group (the completions of one question) and returns one ``RewardOutput`` per completion:
a scalar (or ``None`` for "not applicable"), optional step rewards (aligned to the group's step segmentation)
and optional token rewards (aligned to the completion's tokens).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from swarmrl.protocol.types import TaskRef


@dataclass
class Sample:
    """One completion in the context a reward needs. ``extras`` carries dataset columns (TRL-style)."""

    prompt: str
    completion: str
    answer: str
    task: TaskRef | None = None
    completion_ids: list[int] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    gold_steps: tuple[str, ...] = ()
    origin: str = "local"
    scorer: Callable[[str], float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class RewardOutput:
    scalar: float | None = None
    step_rewards: list[float] | None = None
    token_rewards: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RewardModule(Protocol):
    """Anything with a ``name`` and ``score_group``."""

    name: str

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]: ...


def extract_answer(completion: str) -> str:
    """The answer part of a completion: inside ``<answer>...</answer>`` when present, else the stripped text."""
    start = completion.find("<answer>")
    if start >= 0:
        end = completion.find("</answer>", start)
        if end >= 0:
            return completion[start + len("<answer>") : end].strip()
    return completion.strip()


def trajectory_value(o: RewardOutput) -> float | None:
    """The value a module gives a whole completion (metrics, sub-module input): its scalar, else the sum of its
    step rewards, else the sum of its token rewards; None when it gave nothing (or NaN)."""
    if o.scalar is not None and not math.isnan(o.scalar):
        return float(o.scalar)
    if o.step_rewards is not None:
        return float(sum(o.step_rewards))
    if o.token_rewards is not None:
        return float(sum(o.token_rewards))
    return None
