"""Wires the swarm into a node: identity, transport, the Swarm facade and the task regeneration hook.

A node always holds a ``Swarm``; training alone (``swarm.transport: none``) is the null transport, with a
throw-away identity and no files in the data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swarmrl.config import NodeConfig
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.receive import Regenerate
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.factory import build_transport


def identity_path(cfg: NodeConfig, data_dir: Path) -> Path:
    path = Path(cfg.swarm.identity_file).expanduser()
    return path if path.is_absolute() else data_dir / path


def load_identity(cfg: NodeConfig, data_dir: Path) -> Identity:
    return Identity.load_or_create(identity_path(cfg, data_dir))


def build_swarm(
    cfg: NodeConfig, data_dir: Path, regenerate: Regenerate, events: SwarmEvents, hub: Any = None
) -> Swarm:
    """The swarm the config names; the receive path checks peers' tasks with ``regenerate`` (our sources)."""
    alone = cfg.swarm.transport == "none"
    identity = Identity.generate() if alone else load_identity(cfg, data_dir)
    where = None if alone else data_dir
    transport = build_transport(cfg, identity, where, events=events, hub=hub)
    return Swarm(cfg, identity, transport, regenerate, events, data_dir=where)
