"""Task sources: questions with verifiable answers and a TaskRef to regenerate them anywhere.

Torch-free: the swarm imports this package to check a peer's question and answer.
"""

from swarmrl.tasks.base import Task, TaskSource
from swarmrl.tasks.registry import TaskSampler, build_source, regenerate

__all__ = ["Task", "TaskSampler", "TaskSource", "build_source", "regenerate"]
