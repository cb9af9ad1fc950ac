"""Reward modules (pure functions over groups), registry, shaping, combination and the pipeline.

Never imports torch at module level: modules that need a model receive a scorer handle from the trainer.
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
