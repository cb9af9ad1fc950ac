"""A transport that connects to nobody: ``swarm.transport: none`` (train alone) with the same node code."""

from __future__ import annotations

from swarmrl.swarm.transports.base import EnvelopeHandler, PeerState, Transport


class NullTransport(Transport):
    """Publishing goes nowhere and nothing is ever received."""

    reaches_peers = False

    async def start(self) -> None:
        return None

    async def publish(self, data: bytes) -> None:
        del data

    def subscribe(self, handler: EnvelopeHandler) -> None:
        del handler

    def peers(self) -> list[PeerState]:
        return []

    def listen_addrs(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None
