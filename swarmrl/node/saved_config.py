"""``DATA/node-config.yaml``: the effective config a node ran with, written on every start.

A data directory must say how its checkpoints were made (model, tasks, rewards, swarm settings), so that
``swarm-node export`` and ``swarm-node eval --data-dir`` can rebuild the policy and describe the run without
the original YAML file, flags or environment. The file is replaced atomically; a restart with other settings
overwrites it (the journal keeps the per-round history).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from swarmrl.config import NodeConfig, load_config
from swarmrl.errors import ConfigError, NodeError

FILE_NAME = "node-config.yaml"
HEADER = "# The effective config of the last `swarm-node run` in this data directory (written by the node).\n"


def config_path(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / FILE_NAME


def write_node_config(cfg: NodeConfig, data_dir: Path) -> Path:
    """Atomically replace ``DATA/node-config.yaml`` with ``cfg`` (every field, defaults included)."""
    target = config_path(data_dir)
    text = HEADER + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise NodeError(f"cannot write '{target}': {exc.strerror or exc}") from exc
    return target


def read_node_config(data_dir: Path, override: Path | None = None) -> NodeConfig:
    """The config the node in ``data_dir`` ran with (or ``override``, a config file, when given)."""
    if override is not None:
        return load_config(override, env={})
    path = config_path(data_dir)
    if not path.is_file():
        raise ConfigError(
            "--data-dir",
            f"'{path}' does not exist (a node writes it when it starts); pass --config with the node's "
            "config file, or point --data-dir at a node's data directory",
        )
    cfg = load_config(path, env={})
    # The directory may have moved since the run: it is where the checkpoints are now.
    return cfg.model_copy(update={"node": cfg.node.model_copy(update={"data_dir": Path(data_dir)})})
