"""The reward inputs a node's config provides (issue 15): what reaches ``Sample`` besides text and answer.

``provided_inputs(config)`` is the set of input names (``swarmrl.rewards.requirements``: a bare name is a
``Sample.extras`` key) that every group scored by a node built from ``config`` carries.
"""

from __future__ import annotations

from swarmrl.config import NodeConfig
from swarmrl.rewards.requirements import POLICY_SCORER
from swarmrl.rewards.segment import TOKEN_OFFSETS


def provided_inputs(config: NodeConfig) -> frozenset[str]:
    """``token_offsets`` (``rollouts.to_samples`` always fills it) and the policy scorer (the node binds its
    policy to the pipeline whenever a module needs one, ``trainer.scorer.attach_scorer``)."""
    del config  # today nothing in the config adds extras columns
    return frozenset({TOKEN_OFFSETS, POLICY_SCORER})
