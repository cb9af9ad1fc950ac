"""What the swarm reports to its owner (the node turns these into Prometheus metrics).

The swarm never imports the node; it calls an object that satisfies ``SwarmEvents``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


class SwarmEvents(Protocol):
    def published(self, groups: int) -> None:
        """``groups`` own rollout groups were handed to the transport."""

    def accepted(self, groups: int, delay_seconds: float) -> None:
        """``groups`` external groups passed validation; ``delay_seconds`` from sender timestamp."""

    def rejected(self, reason: str, count: int = 1) -> None:
        """Groups or envelopes dropped, by short reason label (bounded set)."""

    def peers_connected(self, count: int) -> None:
        """Current number of connected peers."""

    def messages_sent(self, count: int = 1) -> None:
        """Envelopes actually written to the network by this node."""

    def messages_received(self, count: int = 1) -> None:
        """Envelopes that arrived from the network (before validation)."""


@dataclass
class CountingEvents:
    """A plain in-memory SwarmEvents, for tests, simulations and gossip-only processes."""

    published_groups: int = 0
    accepted_groups: int = 0
    delays: list[float] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    peers: int = 0
    sent: int = 0
    received: int = 0

    def published(self, groups: int) -> None:
        self.published_groups += groups

    def accepted(self, groups: int, delay_seconds: float) -> None:
        self.accepted_groups += groups
        self.delays.append(delay_seconds)

    def rejected(self, reason: str, count: int = 1) -> None:
        self.rejections[reason] += count

    def peers_connected(self, count: int) -> None:
        self.peers = count

    def messages_sent(self, count: int = 1) -> None:
        self.sent += count

    def messages_received(self, count: int = 1) -> None:
        self.received += count
