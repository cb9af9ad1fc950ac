"""Circuit relay v2 for nodes that cannot be dialled (behind a NAT): py-libp2p 0.8.1's own protocol.

* Every node speaks the *stop* side: it accepts connections relayed to it.
* ``swarm.relay: true``: the node also serves *hop*: other nodes reserve a slot on it and are reached through
  it (``/ip4/<relay>/tcp/<port>/p2p/<relay id>/p2p-circuit/p2p/<node id>``). Limits: ``RELAY_LIMITS``.
* ``swarm.relay_reserve: true`` (a node behind a NAT): the node reserves a slot on each of its bootstrap
  peers that serves as a relay, and advertises the resulting ``/p2p-circuit`` addresses with its own (peer
  exchange, peer caches), so the others reach it through the relay. py-libp2p refreshes the reservation.

py-libp2p's swarm drops ``/p2p-circuit`` addresses from ``host.connect`` ("this node has no relay
transport"), so dials go through ``connect`` here: direct addresses first (for at most ``DIRECT_FIRST_S``
when the peer also has circuit addresses: a NATed peer's private address never answers, and the whole dial
has only ``connect_timeout_s``), then each circuit address with the circuit transport (those the peer
advertised, and, for a node that holds reservations itself, the peer through each of its own relays: two
NATed members of one relay find each other even when they learned only each other's private addresses),
whose connection is upgraded (Noise, yamux) and registered like any other; pubsub and push then use it
unchanged.

DCUtR (hole punching): every node runs py-libp2p's ``DCUtRProtocol``. For a peer reached only through a
relay it first tries a plain direct dial, then exchanges observed addresses over the relayed connection and
both sides dial each other at once from their listen ports (TCP simultaneous open, which endpoint-
independent NATs such as Linux MASQUERADE let through). Once a direct connection exists the relayed one is
closed after a grace period; pubsub and push move to the direct connection on their own (a stream whose
connection closed is reopened on a live one). ``RelaySupport`` watches the connections and logs each
upgrade ("hole punch: ... direct") and each relayed-only peer, with counters in ``StackCounters``.
"""

from __future__ import annotations

import logging
import math
import time

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

from swarmrl.swarm.transports.libp2p.settings import StackCounters

logger = logging.getLogger(__name__)

#: What a relay grants each circuit and in total (a swarm node's traffic is small: groups of text).
RELAY_LIMITS = RelayLimits(duration=3600, data=256 * 1024 * 1024, max_circuit_conns=64, max_reservations=64)
#: A failed reservation is retried this often.
_RETRY_S = 5.0
#: A dial to a peer that also has circuit addresses gives its direct addresses this long before the relay.
DIRECT_FIRST_S = 3.0
#: How often the connections are checked for relayed peers and upgrades.
_WATCH_S = 1.0


def is_circuit(addr: multiaddr.Multiaddr | str) -> bool:
    return "/p2p-circuit" in str(addr)


class RelaySupport:
    """Relay roles of one stack incarnation (see the module doc)."""

    def __init__(
        self, host: IHost, serve: bool, reserve_on: tuple[str, ...], counters: StackCounters
    ) -> None:
        self.host = host
        self.counters = counters
        self.serve = serve
        self.protocol = CircuitV2Protocol(host, limits=RELAY_LIMITS, allow_hop=serve)
        roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if serve else RelayRole(0))
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=roles, limits=RELAY_LIMITS)
        )
        self.dcutr = DCUtRProtocol(host)
        self._candidates = [_split(a) for a in reserve_on]
        self._reserved: dict[ID, str] = {}
        self._next_try: dict[ID, float] = {}
        self.circuit_addrs: tuple[str, ...] = ()
        self._relayed_only: set[ID] = set()
        self._upgraded: set[ID] = set()

    async def run(self) -> None:
        async with (
            background_trio_service(self.protocol),
            background_trio_service(self.dcutr),
            trio.open_nursery() as nursery,
        ):
            while True:
                if self._candidates:
                    await self._reserve_all(nursery)
                self._watch_connections()
                await trio.sleep(_WATCH_S)

    def _watch_connections(self) -> None:
        """Log peers reached only through a relay, their upgrade to a direct connection (DCUtR), and the
        relayed connection's close after it."""
        network = self.host.get_network()
        relayed_only: set[ID] = set()
        for peer, conns in list(network.get_connections_map().items()):
            kinds = [_is_relayed(c) for c in conns]
            if kinds and all(kinds):
                relayed_only.add(peer)
            elif peer in self._relayed_only and not all(kinds):
                self.counters.hole_punches += 1
                self._upgraded.add(peer)
                direct = [c for c, relayed in zip(conns, kinds, strict=True) if not relayed]
                logger.info(
                    "hole punch: the connection to %s is now direct (%s; it was relayed)",
                    peer,
                    _remote_addr(direct[0]),
                )
            elif peer in self._upgraded and not any(kinds):
                self._upgraded.discard(peer)
                logger.info("relayed connection to %s closed; the direct one carries its traffic", peer)
        for peer in relayed_only - self._relayed_only:
            logger.info("peer %s is reachable only through a relay; trying a hole punch (DCUtR)", peer)
        self._relayed_only = relayed_only
        self.counters.relayed_peers = len(relayed_only)

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
            # with a relay to fall back on, a direct address that does not answer soon is given up
            with trio.move_on_after(DIRECT_FIRST_S if circuit or self._reserved else math.inf):
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


def _is_relayed(conn: object) -> bool:
    """Whether a swarm connection runs through a relay (its type, else its actual transport addresses;
    never the peerstore's, which hold both kinds for a relayed peer)."""
    kind = getattr(conn, "get_connection_type", None)
    if kind is not None:
        name = getattr(kind(), "name", "")
        if name in ("RELAYED", "DIRECT"):
            return bool(name == "RELAYED")
    actual: list[multiaddr.Multiaddr] = getattr(conn, "_actual_transport_addresses", None) or []
    return any(is_circuit(a) for a in actual)


def _remote_addr(conn: object) -> str:
    """The remote end of a direct connection as ``ip:port`` (or "?")."""
    try:
        ip, port = conn.muxed_conn.get_remote_address()  # type: ignore[attr-defined]
        return f"{ip}:{port}"
    except Exception:
        return "?"


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
