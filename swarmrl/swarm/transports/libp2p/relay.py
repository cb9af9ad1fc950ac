"""Circuit relay v2 for nodes that cannot be dialled (behind a NAT): py-libp2p 0.8.1's own protocol.

* Every node speaks the *stop* side: it accepts connections relayed to it.
* ``swarm.relay: true``: the node also serves *hop*: other nodes reserve a slot on it and are reached through
  it (``/ip4/<relay>/tcp/<port>/p2p/<relay id>/p2p-circuit/p2p/<node id>``). Limits: ``RELAY_LIMITS``.
* ``swarm.relay_reserve: true`` (a node behind a NAT): the node reserves a slot on each of its bootstrap
  peers that serves as a relay, and advertises the resulting ``/p2p-circuit`` addresses with its own (peer
  exchange, peer caches), so the others reach it through the relay. py-libp2p refreshes the reservation.

py-libp2p's swarm drops ``/p2p-circuit`` addresses from ``host.connect`` ("this node has no relay
transport"), so dials go through ``connect`` here: direct addresses first, then each circuit address with the
circuit transport (those the peer advertised, and, for a node that holds reservations itself, the peer
through each of its own relays: two NATed members of one relay find each other even when they learned only
each other's private addresses), whose connection is upgraded (Noise, yamux) and registered like any other; pubsub and push
then use it unchanged.

Not done: DCUtR (hole punching, upgrading a relayed connection to a direct one) is not wired in; a relayed
connection stays relayed. Where the NATed node can reach its peer directly (the peer is public), its own dials
(peer exchange dials every learned member) already give a direct connection.
"""

from __future__ import annotations

import logging
import time

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

logger = logging.getLogger(__name__)

#: What a relay grants each circuit and in total (a swarm node's traffic is small: groups of text).
RELAY_LIMITS = RelayLimits(duration=3600, data=256 * 1024 * 1024, max_circuit_conns=64, max_reservations=64)
#: A failed reservation is retried this often.
_RETRY_S = 5.0


def is_circuit(addr: multiaddr.Multiaddr | str) -> bool:
    return "/p2p-circuit" in str(addr)


class RelaySupport:
    """Relay roles of one stack incarnation (see the module doc)."""

    def __init__(self, host: IHost, serve: bool, reserve_on: tuple[str, ...]) -> None:
        self.host = host
        self.serve = serve
        self.protocol = CircuitV2Protocol(host, limits=RELAY_LIMITS, allow_hop=serve)
        roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if serve else RelayRole(0))
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=roles, limits=RELAY_LIMITS)
        )
        self._candidates = [_split(a) for a in reserve_on]
        self._reserved: dict[ID, str] = {}
        self._next_try: dict[ID, float] = {}
        self.circuit_addrs: tuple[str, ...] = ()

    async def run(self) -> None:
        async with background_trio_service(self.protocol), trio.open_nursery() as nursery:
            while True:
                if self._candidates:
                    await self._reserve_all(nursery)
                await trio.sleep(1.0)

    async def _reserve_all(self, nursery: trio.Nursery) -> None:
        connected = set(self.host.get_connected_peers())
        for relay, base in self._candidates:
            if relay is None:
                continue
            if relay not in connected:
                if self._reserved.pop(relay, None) is not None:
                    self._publish_addrs()
                continue
            if relay in self._reserved or self._next_try.get(relay, 0.0) > time.monotonic():
                continue
            ok = False
            try:
                with trio.move_on_after(10.0):
                    stream = await self.host.new_stream(relay, [HOP_PROTOCOL])
                    ok = await self.transport.reserve(stream, relay, nursery)
            except Exception as exc:
                logger.debug("relay reservation on %s failed: %r", relay, exc)
            if not ok:
                self._next_try[relay] = time.monotonic() + _RETRY_S
                continue
            me = self.host.get_id().to_base58()
            self._reserved[relay] = f"{base}/p2p/{relay.to_base58()}/p2p-circuit/p2p/{me}"
            logger.info("reserved a relay slot on %s; reachable at %s", relay, self._reserved[relay])
            self._publish_addrs()

    def _publish_addrs(self) -> None:
        self.circuit_addrs = tuple(self._reserved.values())

    async def connect(self, info: PeerInfo) -> None:
        """``host.connect`` that also dials ``/p2p-circuit`` addresses (direct ones first)."""
        direct = [a for a in info.addrs if not is_circuit(a)]
        circuit = [a for a in info.addrs if is_circuit(a)]
        error: BaseException | None = None
        if direct:
            try:
                await self.host.connect(PeerInfo(info.peer_id, direct))
                return
            except Exception as exc:
                error = exc
        suffix = f"/p2p/{info.peer_id.to_base58()}"
        # a member learned only by its private address may hold a slot on one of our relays
        for relay in self._reserved:
            base = dict((r, b) for r, b in self._candidates if r is not None).get(relay)
            guess = f"{base}/p2p/{relay.to_base58()}/p2p-circuit"
            if base is not None and all(str(a) != guess for a in circuit):
                circuit.append(multiaddr.Multiaddr(guess))
        for addr in circuit:
            text = str(addr)
            full = multiaddr.Multiaddr(text if text.endswith(suffix) else text + suffix)
            try:
                await self.transport.dial(full)
                logger.info("connected to %s through a relay (%s)", info.peer_id, full)
                return
            except Exception as exc:
                logger.info("dial of %s through a relay (%s) failed: %r", info.peer_id, full, exc)
                error = exc
        if error is not None:
            raise error
        raise ConnectionError(f"no dialable address for {info.peer_id}")


def _split(addr: str) -> tuple[ID | None, str]:
    """(peer id, address without /p2p/...) of a bootstrap multiaddr."""
    try:
        ma = multiaddr.Multiaddr(addr)
        pid = ma.get_peer_id()
        if pid is None:
            return None, addr
        return ID.from_base58(pid), str(ma.decapsulate(multiaddr.Multiaddr(f"/p2p/{pid}")))
    except Exception:
        return None, addr
