"""What a reward module needs from the node that runs it, declared as data (issue 15).

A module declares its own inputs with ``requires(self) -> Requirements``, derived from its configured key
names (``Column(key="rm")`` needs ``Sample.extras['rm']``, not ``'score'``). :func:`requirements_of` adds
the inputs of a composite's sub-modules; :func:`first_missing` compares a pipeline's needs against the set
of inputs a node provides (``swarmrl.node.inputs.provided_inputs`` plus node capabilities) and returns the
first one that cannot arrive, so ``config check`` and ``run`` refuse the config instead of training on a
reward that is always None.

Input names: a bare string is a ``Sample.extras`` key; the constants below name the other inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

POLICY_SCORER = "policy_scorer"
"""The trainer's model handle (``RewardPipeline.bind_scorer``); a node binds one whenever a module asks."""
GOLD_STEPS = "gold_steps"
"""``Sample.gold_steps``: verifiable intermediate results from a multi-step task source (``Task.steps``)."""
STEPS = "steps"
"""The pipeline's step segmentation (``rewards.segment``); every pipeline provides it."""
BATCH = "batch"
"""All of a round's groups at once (``score_batch``); every pipeline provides it."""

SPECIAL = {
    POLICY_SCORER: "the policy scorer",
    GOLD_STEPS: "gold steps (Task.steps)",
    STEPS: "step segmentation",
    BATCH: "the round's batch",
}


@dataclass(frozen=True)
class Need:
    """One input: its name (see the module docstring) and how a user provides it."""

    input: str
    how: str

    @property
    def label(self) -> str:
        return SPECIAL.get(self.input, f"Sample.extras['{self.input}']")


@dataclass(frozen=True)
class Requirements:
    needs: tuple[Need, ...] = ()

    def __or__(self, other: Requirements) -> Requirements:
        seen = {n.input for n in self.needs}
        return Requirements(self.needs + tuple(n for n in other.needs if n.input not in seen))

    @property
    def inputs(self) -> frozenset[str]:
        return frozenset(n.input for n in self.needs)


def column(key: str, what: str = "column") -> Need:
    """An extras column: a task source that declares it (``Task.columns``) or a scorer that fills it."""
    return Need(
        key,
        f"use a task source whose tasks carry the {what} '{key}' (Task.columns) or a reward_model scorer "
        f"that writes it, or set the module's key parameter to a column that is provided",
    )


def scorer() -> Need:
    return Need(POLICY_SCORER, "run it in a node (the node binds its policy as the scorer)")


def gold_steps() -> Need:
    return Need(GOLD_STEPS, "use a multi-step task source such as 'multistep' (its tasks carry gold steps)")


def steps() -> Need:
    return Need(STEPS, "set rewards.segment")


def batch() -> Need:
    return Need(BATCH, "score through a RewardPipeline")


def needs(*items: Need) -> Requirements:
    return Requirements(tuple(items))


def own_requirements(module: Any) -> Requirements:
    """What ``module`` itself declares (``requires()``), without its sub-modules."""
    get = getattr(module, "requires", None)
    got = get() if callable(get) else None
    return got if isinstance(got, Requirements) else Requirements()


def _walk(module: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    path = (*path, str(getattr(module, "name", type(module).__name__)))
    yield path, module
    children = getattr(module, "children", None)
    if callable(children):
        for child in children():
            yield from _walk(child, path)


def requirements_of(module: Any) -> Requirements:
    """Everything ``module`` needs, its sub-modules' needs included."""
    out = Requirements()
    for _, m in _walk(module, ()):
        out = out | own_requirements(m)
    return out


@dataclass(frozen=True)
class Missing:
    """A module (``path``: top-level name first, then the sub-module that needs it) and its missing input."""

    path: tuple[str, ...]
    need: Need

    def message(self) -> str:
        via = f" (through its sub-module '{self.path[-1]}')" if len(self.path) > 1 else ""
        return (
            f"reward module '{self.path[0]}'{via} needs {self.need.label}, which this node does not provide; "
            f"fix: {self.need.how}"
        )


def first_missing(module: Any, provided: Iterable[str], name: str | None = None) -> Missing | None:
    """The first input of ``module`` (or a sub-module) that is not in ``provided``; None when all arrive.
    ``name``: the name the module was configured under (an alias such as ``prm_delta``), for the message."""
    have = set(provided) | {STEPS, BATCH}
    for path, m in _walk(module, ()):
        for need in own_requirements(m).needs:
            if need.input not in have:
                return Missing((name or path[0], *path[1:]), need)
    return None
