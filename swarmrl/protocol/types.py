"""Domain dataclasses shared by every subsystem (pure Python, no torch)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Provenance of a question: enough for any node to regenerate the same question and answer.

    ``source`` names the task source (``arithmetic``, ``reasoning_gym``), ``dataset`` the dataset inside it,
    ``config_digest`` a digest of the dataset configuration, ``seed`` the dataset seed and ``index`` the item.
    """

    source: str
    dataset: str
    config_digest: str
    seed: int
    index: int

    def key(self) -> str:
        return f"{self.source}/{self.dataset}/{self.config_digest}/{self.seed}/{self.index}"


def config_digest(config: dict[str, Any]) -> str:
    """A short, stable digest of a JSON-serialisable dataset configuration."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(slots=True)
class Completion:
    """One sampled completion. ``token_ids``/``logprobs`` are those of the generating policy (local only)."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finished: bool = True
    #: Sequence log-prob under the generating policy as the sender stated it (wire field; None = not sent).
    #: For own completions it is filled at publish time from ``logprobs``; never trusted beyond a capped
    #: importance weight.
    behaviour_logprob: float | None = None


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """Who generated a group: model name, policy version and node id (advisory metadata)."""

    model: str = ""
    version: int = 0
    node: str = ""


@dataclass(slots=True)
class RolloutGroup:
    """The G completions of one question, with the question's provenance.

    ``origin`` is ``"local"`` or ``"external"``; ``peer`` is the sender's peer id for external groups.
    ``rewards`` are always computed locally; ``advisory_rewards`` are what a sender claimed (never trusted).
    ``policy_version`` is the local policy version that generated the group (local groups only).
    """

    task: TaskRef
    question: str
    answer: str
    completions: list[Completion]
    policy: PolicyInfo = field(default_factory=PolicyInfo)
    advisory_rewards: list[float] = field(default_factory=list)
    origin: str = "local"
    peer: str = ""
    round: int = 0
    rewards: list[float] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.completions)
