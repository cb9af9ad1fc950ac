"""Shared helpers for the swarm tests: an arithmetic task source that regenerates a+b from a TaskRef,
groups built from it, and signed envelopes."""

from __future__ import annotations

from swarmrl.errors import TaskError
from swarmrl.protocol import envelope as wire
from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef
from swarmrl.swarm.identity import Identity

SOURCE = "arith"


def task(index: int) -> TaskRef:
    return TaskRef(SOURCE, "add", "cafe", 7, index)


def regenerate(ref: TaskRef) -> tuple[str, str]:
    """(question, answer) of item ``index``: a = index // 100, b = index % 100, answer a + b."""
    if ref.source != SOURCE or ref.dataset != "add":
        raise TaskError(f"unknown task source {ref.source}/{ref.dataset}")
    a, b = divmod(ref.index, 100)
    return f"What is {a}+{b}?", str(a + b)


def group(index: int, texts: list[str] | None = None, *, answer: str | None = None) -> RolloutGroup:
    q, a = regenerate(task(index))
    texts = texts if texts is not None else [a, "wrong", a, "0"]
    return RolloutGroup(
        task=task(index),
        question=q,
        answer=a if answer is None else answer,
        completions=[Completion(text=t) for t in texts],
    )


def envelope(
    identity: Identity,
    groups: list[RolloutGroup],
    *,
    seq: int = 1,
    swarm_id: str = "test-swarm",
    sent_unix_ms: int = 1_700_000_000_000,
) -> bytes:
    return wire.seal(identity, swarm_id, seq, wire.encode_batch(groups), sent_unix_ms)


def exact_match(groups: list[RolloutGroup]) -> list[list[float]]:
    """A local reward pipeline: 1.0 for a completion equal to the answer, else 0.0."""
    return [[1.0 if c.text == g.answer else 0.0 for c in g.completions] for g in groups]
