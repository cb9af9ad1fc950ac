"""The root config model."""

from __future__ import annotations

from pydantic import Field

from swarmrl.config.base import Section
from swarmrl.config.sections import (
    GenerationSection,
    ModelSection,
    NodeSection,
    RewardsSection,
    TasksSection,
    TrainerSection,
)
from swarmrl.config.swarm import SamplingSection, SwarmSection


class NodeConfig(Section):
    """Everything a node needs; every section has defaults, so an empty file is a valid config."""

    node: NodeSection = Field(default_factory=NodeSection)
    model: ModelSection = Field(default_factory=ModelSection)
    tasks: TasksSection = Field(default_factory=TasksSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    trainer: TrainerSection = Field(default_factory=TrainerSection)
    rewards: RewardsSection = Field(default_factory=RewardsSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    swarm: SwarmSection = Field(default_factory=SwarmSection)
