"""Reward modules (pure functions over groups), registry, shaping, combination and the pipeline.

Never imports torch, ``trainer``, ``swarm``, ``node`` or ``apps``: modules that need a model receive a scorer
handle (``scorer.PolicyScorer``) that the trainer implements.

- ``base``: the ``RewardModule`` interface, ``Sample`` (one completion with its task and extras) and
  ``RewardOutput`` (per-completion scalars, optional per-step and per-token values).
- ``builtin`` and ``catalogue/`` (``outcome``, ``process``, ``model``, ``textual``, ``literature``): the modules,
  listed in ``CATALOGUE.md`` and by ``swarm-node rewards list``.
- ``registry``: modules by name (built-ins, the ``swarmrl.rewards`` entry-point group, TRL-style callables).
- ``pipeline``: segment -> score -> combine -> credit assignment, as a config assembles it.
- ``shaping`` / ``combine`` / ``credit`` / ``advantages`` / ``literature`` / ``text``: the pure math (docs/rewards.md
  has the formulas with worked numbers); ``segment`` / ``offsets``: steps and their token positions.
- ``compare``: two pipelines on recorded groups (``swarm-node rewards compare`` in ``apps``).

Adding a reward module: write a class with a ``name`` and ``score_group(group) -> list[RewardOutput]`` (one
output per completion, pure over the group's ``Sample``s), then add it to a catalogue module's
``register_all`` or ship it in your own package under the ``swarmrl.rewards`` entry-point group (a plain
``f(prompts, completions, **columns)`` callable works too); its config keys are its constructor's keyword
arguments.
"""

from swarmrl.rewards.base import RewardModule, RewardOutput, Sample
from swarmrl.rewards.pipeline import RewardPipeline, ScoredGroup, build_pipeline
from swarmrl.rewards.registry import available, create

__all__ = [
    "RewardModule",
    "RewardOutput",
    "RewardPipeline",
    "Sample",
    "ScoredGroup",
    "available",
    "build_pipeline",
    "create",
]
