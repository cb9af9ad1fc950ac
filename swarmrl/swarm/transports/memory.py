"""In-process transport: a hub that moves envelope bytes between transports on one asyncio loop.

For tests and for simulating hundreds of lightweight nodes (dissemination, pool quality, abuse) without
sockets. Delivery is asynchronous (scheduled on the loop, optionally delayed and lossy), so a publisher
never runs receivers' code inside ``publish`` and the timing resembles a network.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from swarmrl.errors import TransportError
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.transports.base import EnvelopeHandler, PeerFilter, PeerState, Transport


@dataclass
class MemoryHub:
    """The shared medium. ``latency_s`` delays every delivery, ``drop_rate`` loses that share of them."""

    latency_s: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    transports: dict[str, MemoryTransport] = field(default_factory=dict)
    delivered: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def transport(self, peer_id: str, events: SwarmEvents | None = None) -> MemoryTransport:
        """A new transport on this hub for the node with ``peer_id`` (base58)."""
        return MemoryTransport(self, peer_id, events)

    def _deliver(self, sender: MemoryTransport, data: bytes) -> int:
        sent = 0
        for peer_id, receiver in list(self.transports.items()):
            if receiver is sender or not sender._admits(peer_id) or not receiver._admits(sender.peer_id):
                continue
            sent += 1
            if self.drop_rate and self._rng.random() < self.drop_rate:
                self.dropped += 1
                continue
            receiver._schedule(data, sender.peer_id, self.latency_s)
            self.delivered += 1
        return sent


class MemoryTransport(Transport):
    """One node's attachment to a MemoryHub; its peers are every other started transport on the hub."""

    def __init__(self, hub: MemoryHub, peer_id: str, events: SwarmEvents | None = None) -> None:
        self.hub = hub
        self._events = events
        self.peer_id = peer_id
        self._handler: EnvelopeHandler | None = None
        self._admit: PeerFilter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0

    async def start(self) -> None:
        if self.peer_id in self.hub.transports:
            raise TransportError(f"peer id {self.peer_id} is already attached to this memory hub")
        self._loop = asyncio.get_running_loop()
        self.hub.transports[self.peer_id] = self

    async def publish(self, data: bytes) -> None:
        if self._loop is None:
            raise TransportError("memory transport used before start(); call `await transport.start()` first")
        sent = self.hub._deliver(self, data)
        self.sent += sent
        if self._events is not None and sent:
            self._events.messages_sent(sent)

    def subscribe(self, handler: EnvelopeHandler) -> None:
        self._handler = handler

    def set_peer_filter(self, admit: PeerFilter) -> None:
        self._admit = admit

    def peers(self) -> list[PeerState]:
        return [
            PeerState(peer_id=p, address=f"memory://{p}")
            for p in self.hub.transports
            if p != self.peer_id and self._admits(p)
        ]

    def listen_addrs(self) -> list[str]:
        return [f"memory://{self.peer_id}"]

    async def close(self) -> None:
        if self.hub.transports.get(self.peer_id) is self:
            del self.hub.transports[self.peer_id]
        self._loop = None

    def _admits(self, peer_id: str) -> bool:
        return self._admit is None or self._admit(peer_id)

    def _schedule(self, data: bytes, from_peer: str, delay: float) -> None:
        if self._loop is None:
            return
        # thread-safe scheduling: simulations may run hubs' nodes on several loops
        if delay > 0:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._dispatch, data, from_peer)
        else:
            self._loop.call_soon_threadsafe(self._dispatch, data, from_peer)

    def _dispatch(self, data: bytes, from_peer: str) -> None:
        if self._handler is not None and self._loop is not None:
            self._handler(data, from_peer)
