"""``RoundRecord``: what one round did, as one typed record.

The node builds it at the end of a round; the journal stores it as one record (``as_dict``: a msgpack map, CRC-checked); the metrics,
progress line, trackers, control service, report, model card, experiment harness and benchmarks read it back
(``RoundRecord.from_dict`` on a journal record, or ``read_rounds`` on a journal file). Journals written before a
field existed read back with that field's default, so an old data directory still reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmrl.errors import JournalError

KIND = "round"


@dataclass(frozen=True)
class RoundRecord:
    """One round. Rewards and accuracy are over this node's own groups (before any filtering); ``trained_*``
    over what the step trained on (own kept groups plus external ones)."""

    round: int
    time: float = 0.0
    policy_version: int = 0
    generated_version: int | None = None
    reward_mean: float = 0.0
    reward_std: float = 0.0
    accuracy: float = 0.0
    modules: dict[str, float] = field(default_factory=dict)
    zero_variance_fraction: float = 0.0
    local_groups: int = 0
    external_groups: int = 0
    external_reward_mean: float | None = None
    trained_reward_mean: float = 0.0
    loss: float = 0.0
    kl: float = 0.0
    clip_fraction: float = 0.0
    clip_fraction_by_origin: dict[str, float] = field(default_factory=dict)
    ratio_mean_by_origin: dict[str, float] = field(default_factory=dict)
    external_is_weight: float | None = None
    truncated_fraction: float = 0.0
    truncated_masked: int = 0
    lr: float = 0.0
    generation_tokens: int = 0
    generation_seconds: float = 0.0
    tokens_per_second: float = 0.0
    train_seconds: float = 0.0
    optimizer_steps: int = 0
    round_seconds: float = 0.0
    eval_accuracy: float | None = None
    eval_by_source: dict[str, Any] | None = None
    kind: str = KIND

    def as_dict(self) -> dict[str, Any]:
        """The journal record (msgpack/JSON-able; ``kind`` first so a reader can tell record kinds apart)."""
        out = {"kind": self.kind}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "kind"})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        """A journal record back as a ``RoundRecord``; unknown keys are ignored, missing ones take their defaults."""
        if data.get("kind", KIND) != KIND:
            raise JournalError(f"not a round record (kind {data.get('kind')!r})")
        if "round" not in data:
            raise JournalError("a round record without 'round'")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def rounds_of(records: Iterable[Mapping[str, Any]]) -> list[RoundRecord]:
    """The round records among journal lines of any kind, in order."""
    return [RoundRecord.from_dict(r) for r in records if r.get("kind") == KIND]
