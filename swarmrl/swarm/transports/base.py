"""The transport interface: moves opaque, already-signed envelope bytes between nodes.

Transports know nothing of rollouts: the receive path (validation, trust) is shared by all of them, so a
message is judged the same whatever carried it. Handlers run on the node's asyncio loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

#: Called with (envelope bytes, transport-level id of the peer that handed them to us).
EnvelopeHandler = Callable[[bytes, str], None]
#: Admission test on a peer id (base58): True if envelopes may be exchanged with that peer.
PeerFilter = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class PeerState:
    """A connected peer as the transport sees it."""

    peer_id: str
    address: str = ""


class Transport(ABC):
    """publish / subscribe / peers / close. One topic per swarm id."""

    #: False only for the null transport: nothing is ever sent or received, so publishing is skipped.
    reaches_peers: bool = True

    @abstractmethod
    async def start(self) -> None:
        """Bind, connect to bootstrap peers and join the topic. Raises TransportError on failure."""

    @abstractmethod
    async def publish(self, data: bytes) -> None:
        """Send one encoded envelope to the swarm. Never blocks on a slow peer."""

    @abstractmethod
    def subscribe(self, handler: EnvelopeHandler) -> None:
        """Register the receive handler (one per transport)."""

    def set_peer_filter(self, admit: PeerFilter) -> None:
        """Exchange envelopes only with peers for which ``admit(peer_id)`` is true (private swarms).

        Call before ``start``. Transports that know their peers' ids (gRPC after its Hello, memory, libp2p)
        should neither send to nor deliver from other peers; the default ignores the filter, which is still
        safe because the receive path drops envelopes from senders outside the allowlist.
        """
        del admit

    def members(self) -> list[str]:
        """Peer ids (base58) of the swarm members this node could select as senders (bounded ingress, see
        ``swarmrl.swarm.ingress``): those the transport can ask for envelopes. Default: connected peers."""
        return [p.peer_id for p in self.peers()]

    def far_members(self) -> list[str]:
        """Members this node knows of but is not connected to, which ``select_senders`` would dial
        (libp2p: learned by peer exchange). Default: none (every selectable member is in ``members``)."""
        return []

    def select_senders(self, senders: frozenset[str] | None) -> None:
        """Bounded ingress: ask only ``senders`` for their envelopes (``None``: everyone, the old behaviour).

        Transports that cannot ask (gRPC static peers) ignore it; the receive path still drops what this
        node did not select before any signature work, so the bound on CPU and pool holds, not the one on
        bytes.
        """
        del senders

    @abstractmethod
    def peers(self) -> list[PeerState]:
        """Peers currently connected."""

    @abstractmethod
    def listen_addrs(self) -> list[str]:
        """Addresses others can dial (multiaddrs for libp2p, host:port for gRPC)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the swarm and release sockets and threads. Idempotent."""
