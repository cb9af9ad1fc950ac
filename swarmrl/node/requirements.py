"""Refuse a reward pipeline whose inputs this node cannot provide (issue 15), in ``config check`` and ``run``.

Each module declares what it needs (``requires()``, see ``swarmrl.rewards.requirements``); the node provides
``provided_inputs(config)`` plus gold steps when a configured task source has them. A module whose input can
never arrive would score None (or 0) on every group and silently train on nothing, so the config is refused
with one line naming the module, the missing input and how to provide it.
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.node.inputs import provided_inputs
from swarmrl.rewards.pipeline import RewardPipeline
from swarmrl.rewards.requirements import GOLD_STEPS, column, first_missing
from swarmrl.tasks import TaskSource


def available_inputs(cfg: NodeConfig, sources: Sequence[TaskSource]) -> frozenset[str]:
    """``provided_inputs(cfg)``, plus ``gold_steps`` when a task source's tasks carry steps."""
    extra = {GOLD_STEPS} if any(src.size and src.get(0).steps for src in sources) else set()
    return provided_inputs(cfg, sources) | extra


def check_requirements(cfg: NodeConfig, pipeline: RewardPipeline, sources: Sequence[TaskSource]) -> None:
    """Raise ConfigError (field ``rewards.modules[i]``, ``rewards.report`` or ``rewards.combine``) for
    the first module input, or combine-mode input, that this node cannot provide."""
    have = available_inputs(cfg, sources)
    for i, entry in enumerate(pipeline.entries):
        missing = first_missing(entry.module, have, entry.name)
        if missing is not None:
            raise ConfigError(f"rewards.modules[{i}]", missing.message())
    for module in pipeline.report:
        missing = first_missing(module, have)
        if missing is not None:
            raise ConfigError("rewards.report", missing.message())
    comb = pipeline.combine
    needs_refs = comb.mode == "par" or (
        comb.mode == "lsc_and" and any(e.name not in comb.refs for e in pipeline.entries)
    )
    if needs_refs and comb.ref_column not in have:
        need = column(comb.ref_column, "reference-reward column")
        raise ConfigError(
            "rewards.combine",
            f"combine mode '{comb.mode}' needs {need.label}, which this node does not provide; fix: {need.how}",
        )
