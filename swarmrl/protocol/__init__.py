"""Wire and domain types. A leaf package: imports nothing else from swarmrl except errors."""

from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup, TaskRef

__all__ = ["Completion", "PolicyInfo", "RolloutGroup", "TaskRef"]
