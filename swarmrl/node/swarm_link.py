"""Wires the swarm into a node: identity, transport, the Swarm facade and the task regeneration hook."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from swarmrl.swarm.identity import Identity
from swarmrl.swarm.service import Swarm, build_transport

if TYPE_CHECKING:
    from swarmrl.node.node import Node


def load_identity(node: Node) -> Identity:
    path = Path(node.cfg.swarm.identity_file).expanduser()
    if not path.is_absolute():
        path = node.data_dir / path
    return Identity.load_or_create(path)


async def start_swarm(node: Node) -> Swarm:
    """Build and start the swarm the config names; the receive path checks tasks with our own sources."""
    cfg = node.cfg
    identity = load_identity(node)
    transport = build_transport(cfg, identity, node.data_dir, events=node.metrics, hub=node.hub)
    swarm = Swarm(cfg, identity, transport, node.tasks.regenerate, node.metrics, data_dir=node.data_dir)
    await swarm.start()
    return swarm
