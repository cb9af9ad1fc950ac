"""In-process transport: a hub that moves envelope bytes between transports on one asyncio loop.

For tests and for simulating hundreds of lightweight nodes (dissemination, pool quality, abuse) without
sockets. Delivery is asynchronous (scheduled on the loop, optionally delayed and lossy), so a publisher
never runs receivers' code inside ``publish`` and the timing resembles a network.

Link model (``LinkModel``, used by ``swarm-node simulate``): a log-normal one-way latency per delivery, a
loss rate, and per-node uplink and downlink bandwidth (each node's sends leave one after another at its
uplink rate; each node's arrivals queue at its downlink rate). ``scheduler``/``now`` replace the asyncio
loop's timers with a virtual clock (a discrete-event simulation runs 1000 nodes on one core).

Bounded ingress (``select_senders``): a transport that selected senders receives only their envelopes;
one that never selected (or selected ``None``) receives everyone's, as before.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from swarmrl.errors import TransportError
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.transports.base import EnvelopeHandler, PeerFilter, PeerState, Transport

#: ``scheduler(delay_s, callback)``: run ``callback`` after ``delay_s`` (virtual) seconds.
Scheduler = Callable[[float, Callable[[], None]], None]


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Per-delivery latency (log-normal: ``latency_median_s * exp(latency_sigma * N(0,1))``), loss, and per-node
    bandwidth in bytes per second (0 = unlimited)."""

    latency_median_s: float = 0.0
    latency_sigma: float = 0.0
    loss: float = 0.0
    uplink_bytes_per_s: float = 0.0
    downlink_bytes_per_s: float = 0.0

    def latency(self, rng: random.Random) -> float:
        if self.latency_median_s <= 0:
            return 0.0
        return self.latency_median_s * math.exp(self.latency_sigma * rng.gauss(0.0, 1.0))


@dataclass
class MemoryHub:
    """The shared medium. ``latency_s`` delays every delivery, ``drop_rate`` loses that share of them;
    ``link`` (if set) replaces both with a ``LinkModel``; ``scheduler`` and ``now`` (both or neither) put
    deliveries on a virtual clock instead of the receivers' asyncio loops."""

    latency_s: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    link: LinkModel | None = None
    scheduler: Scheduler | None = None
    now: Callable[[], float] | None = None
    transports: dict[str, MemoryTransport] = field(default_factory=dict)
    delivered: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        #: bounded ingress: sender -> receivers that selected it; receivers that take everyone
        self._selected_by: dict[str, set[str]] = {}
        self._selection: dict[str, frozenset[str] | None] = {}
        self._uplink_free: dict[str, float] = {}
        self._downlink_free: dict[str, float] = {}

    def transport(self, peer_id: str, events: SwarmEvents | None = None) -> MemoryTransport:
        """A new transport on this hub for the node with ``peer_id`` (base58)."""
        return MemoryTransport(self, peer_id, events)

    def select(self, receiver: str, senders: frozenset[str] | None) -> None:
        """``receiver`` takes envelopes only from ``senders`` from now on (None: from everyone)."""
        old = self._selection.get(receiver)
        for peer in old or ():
            self._selected_by.get(peer, set()).discard(receiver)
        self._selection[receiver] = senders
        for peer in senders or ():
            self._selected_by.setdefault(peer, set()).add(receiver)

    def unselect(self, receiver: str) -> None:
        self.select(receiver, None)
        del self._selection[receiver]

    def _targets(self, sender: str) -> list[MemoryTransport]:
        chosen = self._selected_by.get(sender, set())
        out = []
        for peer_id, receiver in self.transports.items():
            if peer_id == sender:
                continue
            if self._selection.get(peer_id) is None or peer_id in chosen:
                out.append(receiver)
        return out

    def _deliver(self, sender: MemoryTransport, data: bytes) -> int:
        sent = 0
        link = self.link
        for receiver in self._targets(sender.peer_id):
            if not sender._admits(receiver.peer_id) or not receiver._admits(sender.peer_id):
                continue
            sent += 1
            loss = link.loss if link is not None else self.drop_rate
            if loss and self._rng.random() < loss:
                self.dropped += 1
                continue
            delay = self.latency_s if link is None else self._link_delay(link, sender, receiver, len(data))
            receiver._schedule(data, sender.peer_id, delay)
            self.delivered += 1
        return sent

    def _link_delay(
        self, link: LinkModel, sender: MemoryTransport, receiver: MemoryTransport, size: int
    ) -> float:
        """Seconds from now until ``receiver`` holds the bytes: uplink queue, latency, downlink queue."""
        now = self.now() if self.now is not None else asyncio.get_running_loop().time()
        leave = now
        if link.uplink_bytes_per_s > 0:
            leave = max(now, self._uplink_free.get(sender.peer_id, now)) + size / link.uplink_bytes_per_s
            self._uplink_free[sender.peer_id] = leave
        arrive = leave + link.latency(self._rng)
        if link.downlink_bytes_per_s > 0:
            free = self._downlink_free.get(receiver.peer_id, arrive)
            arrive = max(arrive, free) + size / link.downlink_bytes_per_s
            self._downlink_free[receiver.peer_id] = arrive
        return arrive - now


class MemoryTransport(Transport):
    """One node's attachment to a MemoryHub; its peers are every other started transport on the hub."""

    def __init__(self, hub: MemoryHub, peer_id: str, events: SwarmEvents | None = None) -> None:
        self.hub = hub
        self._events = events
        self.peer_id = peer_id
        self._handler: EnvelopeHandler | None = None
        self._admit: PeerFilter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._selection: frozenset[str] | None = None
        self.sent = 0

    async def start(self) -> None:
        if self.peer_id in self.hub.transports:
            raise TransportError(f"peer id {self.peer_id} is already attached to this memory hub")
        self._loop = asyncio.get_running_loop()
        self.hub.transports[self.peer_id] = self
        self.hub.select(self.peer_id, self._selection)  # kept across close and start (churn)

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

    def members(self) -> list[str]:
        return [p for p in self.hub.transports if p != self.peer_id and self._admits(p)]

    def select_senders(self, senders: frozenset[str] | None) -> None:
        self._selection = senders
        if self.hub.transports.get(self.peer_id) is self:
            self.hub.select(self.peer_id, senders)

    async def close(self) -> None:
        if self.hub.transports.get(self.peer_id) is self:
            del self.hub.transports[self.peer_id]
            self.hub.unselect(self.peer_id)
        self._loop = None

    def _admits(self, peer_id: str) -> bool:
        return self._admit is None or self._admit(peer_id)

    def _schedule(self, data: bytes, from_peer: str, delay: float) -> None:
        if self._loop is None:
            return
        if self.hub.scheduler is not None:
            self.hub.scheduler(delay, lambda: self._dispatch(data, from_peer))
            return
        # thread-safe scheduling: simulations may run hubs' nodes on several loops
        if delay > 0:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._dispatch, data, from_peer)
        else:
            self._loop.call_soon_threadsafe(self._dispatch, data, from_peer)

    def _dispatch(self, data: bytes, from_peer: str) -> None:
        if self._handler is not None and self._loop is not None:
            self._handler(data, from_peer)
