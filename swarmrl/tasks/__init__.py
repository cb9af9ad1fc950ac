"""Task sources: questions with verifiable answers and a TaskRef to regenerate them anywhere.

Torch-free and independent of the runtime (never imports rewards, trainer, swarm or node): a receiver
regenerates a peer's task from its TaskRef with its own source, and the gossip-only app loads it too.

- ``base``: ``Task`` and the ``TaskSource`` interface (``owns``, ``get(index)``, ``size``, its TaskRef digest).
- ``arithmetic`` / ``word_problems``: built-in procedural sources; ``dataset``: the user's own JSONL/CSV file;
  ``reasoning_gym_source``: reasoning-gym datasets.
- ``registry``: sources by name (built-ins and the ``swarmrl.tasks`` entry-point group), ``TaskSampler``
  (weighted sampling, the held-out evaluation range), ``resolve`` (a peer's TaskRef, bounds-checked).
- ``extract``: answer extraction and comparison; ``schedule``: task-family scheduling under recovering rewards.

Adding a task source: subclass ``TaskSource`` (deterministic ``get(index)`` from the seed and config, a
``config_digest`` that changes with anything that changes its tasks) and register it under the
``swarmrl.tasks`` entry-point group; peers need the same plugin to verify its groups.
"""

from swarmrl.tasks.base import Task, TaskSource
from swarmrl.tasks.registry import TaskSampler, build_source, regenerate

__all__ = ["Task", "TaskSampler", "TaskSource", "build_source", "regenerate"]
