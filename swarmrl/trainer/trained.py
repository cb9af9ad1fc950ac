"""The policy a node trained, rebuilt outside the node: its model (from the node's config) with the weights of
one of its checkpoints, for ``swarm-node export`` and ``swarm-node eval --data-dir``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from swarmrl.config import NodeConfig
from swarmrl.errors import ModelError
from swarmrl.trainer.checkpoint import load_model_state
from swarmrl.trainer.policy import Policy, load_policy


@dataclass
class TrainedPolicy:
    policy: Policy
    round: int
    policy_version: int
    checkpoint: Path
    #: dtype of the floating-point tensors as the node held them
    trained_dtype: torch.dtype


def load_trained_policy(
    cfg: NodeConfig,
    data_dir: Path,
    round_: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> TrainedPolicy:
    """The node's model (as ``cfg`` describes it, LoRA adapters included) with checkpoint ``round_``'s weights
    (default: the newest valid one). ``device``/``dtype`` override the config's (export uses the CPU)."""
    ckpt = load_model_state(Path(data_dir) / "checkpoints", round_)
    updates: dict[str, Any] = {}
    if device is not None:
        updates["device"] = device
    if dtype is not None:
        updates["dtype"] = dtype
    model_cfg = cfg.model.model_copy(update=updates)
    policy = load_policy(model_cfg, cfg.tasks, Path(data_dir), cfg.node.seed)
    try:
        policy.model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"checkpoint {ckpt.path.name} does not fit the model the node config describes ({first}); "
            "pass --config with the config the node ran with"
        ) from exc
    floats = [t.dtype for t in ckpt.model_state.values() if torch.is_floating_point(t)]
    return TrainedPolicy(
        policy, ckpt.round, ckpt.policy_version, ckpt.path, floats[0] if floats else torch.float32
    )


def is_peft(model: Any) -> bool:
    return callable(getattr(model, "merge_and_unload", None))


def merged_model(model: Any) -> PreTrainedModel:
    """A plain transformers model: LoRA adapters merged into the base weights (the model itself otherwise)."""
    if is_peft(model):
        merged: PreTrainedModel = model.merge_and_unload()
        return merged
    plain: PreTrainedModel = model
    return plain
