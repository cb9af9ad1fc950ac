"""The libp2p gossipsub transport: py-libp2p 0.8.1 in a supervised trio thread, bridged to asyncio.

Wiring (plain arguments, so this module does not depend on config field names)::

    transport = Libp2pTransport(
        private_key,                 # 32-byte raw ed25519 private key (seed) or a libp2p KeyPair;
                                     # the peer id is libp2p's id of that key (the identity file's key)
        swarm_id,                    # topic is f"/swarmrl/{swarm_id}/rollouts/1"
        listen_host="127.0.0.1",     # IPv4 address to bind ("0.0.0.0" for all interfaces)
        listen_port=0,               # 0 = any free port; listen_addrs() reports the bound one
        bootstrap=["/ip4/1.2.3.4/tcp/4001/p2p/12D3Koo..."],  # must end in /p2p/<peer id>
        psk=None,                    # 32-byte private-network key; peers with another key never talk
        peer_cache_path=None,        # JSON file of known peers, rewritten atomically; dialled at start
        mdns=False,                  # LAN discovery (also dials peers mDNS finds)
        heartbeat_s=1.0,             # gossipsub heartbeat (1 s keeps the message caches small)
        max_message_bytes=MAX_MESSAGE_BYTES,  # larger publishes raise TransportError
        publish_rate=50.0,           # own messages per second, paced (< router_rate_limit)
        router_rate_limit=500.0,     # gossipsub spam limit per forwarding peer per topic per second
        mesh_grace_s=2.0,            # how long a publish waits for a newly connected peer to subscribe
        connect_timeout_s=5.0,       # per dial; start() waits at most about this long for a first peer
        redial_s=5.0,                # period of the redial loop (with per-peer exponential backoff)
        direct_push=True,            # push own envelopes over direct streams, exchange peer lists
        max_peers=24,                # peer exchange dials learned members up to this many connections
        push_queue=256,              # frames waiting per push stream (then bounded wait, then counted drop)
        events=None,                 # SwarmEvents: messages_sent() and peers_connected() are reported
    )
    await transport.start(); transport.subscribe(handler); await transport.publish(envelope_bytes)

Design: py-libp2p is trio-only, so the stack runs under ``trio.run`` in a dedicated daemon thread
(``libp2p_stack``), supervised: if it dies (for example a hostile peer triggers an upstream bug the
hardened classes in ``libp2p_hardened`` do not catch) it is rebuilt with the same key and port and redials
its peers; queued publishes survive. A thread rather than a sidecar process keeps start-up, identity and
shutdown simple; the crash isolation a process would add is replaced by catching at the input boundaries
and restarting. Calls into trio go through ``TrioToken.run_sync_soon``; deliveries come back through
``loop.call_soon_threadsafe``, so the handler always runs on the asyncio loop that called ``start()``.

Data path (``libp2p_push``): own envelopes are pushed as frames over one persistent stream per directly
connected member, and nodes exchange peer lists so that every member dials every other one (up to
``max_peers``): the mesh becomes full and delivery is one hop, without gossipsub's per-message cost. While
this node knows of a member it has no push stream to (not yet dialled, over ``max_peers``, an old version),
it also gossips, and receivers drop the second copy by envelope hash.

Delivery semantics: gossipsub is best effort. Own messages are flood-published to every subscribed peer,
publishing is paced under the spam limit and waits briefly for newly connected peers to subscribe, and the
subscription is drained continuously; ``stats()`` counts what was published and what was delivered so the
caller can see losses. The handler receives (envelope bytes, base58 peer id of the message's origin, as
authenticated by gossipsub's strict signing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import multiaddr
import trio
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from swarmrl.errors import ConfigError, TransportError
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.transports.base import EnvelopeHandler, PeerFilter, PeerState, Transport
from swarmrl.swarm.transports.libp2p.instance import IdentityInUseError
from swarmrl.swarm.transports.libp2p.settings import StackCallbacks, StackConfig, finite_positive, psk_to_hex
from swarmrl.swarm.transports.libp2p.stack import OUTBOX_SIZE, Libp2pStack

logger = logging.getLogger(__name__)

#: Largest envelope accepted by ``publish``: gossipsub silently drops RPCs over 1 MiB, and the RPC adds the
#: topic, sender, sequence number, signature, key and a signed peer record (well under 8 KiB) to the data.
MAX_MESSAGE_BYTES = 1024 * 1024 - 8 * 1024


def topic_for(swarm_id: str) -> str:
    """The gossipsub topic of a swarm: one per swarm id, versioned."""
    return f"/swarmrl/{swarm_id}/rollouts/1"


@dataclass(frozen=True, slots=True)
class Libp2pStats:
    """A snapshot of the transport's counters.

    ``published``: envelopes handed to gossipsub by this node. ``delivered``: envelopes from peers passed to
    the handler. ``malformed_dropped``: hostile or broken frames/messages dropped at the input boundary.
    ``restarts``: times the supervised stack was rebuilt. ``dial_failures``: failed or timed-out dials.
    ``gossiped``: own envelopes also sent through gossipsub (push did not cover every known member).
    ``pushed``: envelope frames queued on push streams; ``push_dropped``: frames dropped on a full push
    queue; ``push_received``: envelopes that arrived over push; ``duplicates_dropped``: second copies
    (push + gossip) dropped before the handler. ``direct_peers``: members with a push stream;
    ``push_covers_members``: push reaches every member this node knows of (own envelopes are not gossiped).
    ``relayed_peers``: peers reached only through a circuit relay now; ``hole_punches``: relayed connections
    that DCUtR upgraded to direct ones.
    """

    published: int
    delivered: int
    malformed_dropped: int
    restarts: int
    dial_failures: int
    gossiped: int = 0
    pushed: int = 0
    push_dropped: int = 0
    push_received: int = 0
    duplicates_dropped: int = 0
    direct_peers: int = 0
    push_covers_members: bool = False
    relayed_peers: int = 0
    hole_punches: int = 0


def _key_pair(private_key: bytes | KeyPair) -> KeyPair:
    if isinstance(private_key, KeyPair):
        return private_key
    if not isinstance(private_key, bytes | bytearray) or len(private_key) != 32:
        raise ConfigError(
            "libp2p.private_key",
            "expected the 32-byte raw ed25519 private key (seed) or a libp2p KeyPair; "
            "load it with swarmrl.swarm.identity",
        )
    try:
        secret = Ed25519PrivateKey.new(bytes(private_key))
    except ValueError as exc:
        raise ConfigError("libp2p.private_key", f"unusable ed25519 key: {exc}") from exc
    return KeyPair(secret, secret.get_public_key())


def _check_bootstrap(addrs: Sequence[str]) -> tuple[str, ...]:
    for addr in addrs:
        try:
            peer = multiaddr.Multiaddr(addr).get_peer_id()
        except Exception as exc:
            raise ConfigError("libp2p.bootstrap", f"{addr!r} is not a multiaddr: {exc}") from exc
        if peer is None:
            raise ConfigError(
                "libp2p.bootstrap",
                f"{addr!r} must end in /p2p/<peer id> (copy it from the peer's listen_addrs)",
            )
    return tuple(addrs)


class Libp2pTransport(Transport):
    """Gossipsub over py-libp2p (Noise, strict signing, optional private network). See the module doc."""

    def __init__(
        self,
        private_key: bytes | KeyPair,
        swarm_id: str,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        bootstrap: Sequence[str] = (),
        psk: bytes | None = None,
        peer_cache_path: Path | None = None,
        mdns: bool = False,
        heartbeat_s: float = 1.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        publish_rate: float = 50.0,
        router_rate_limit: float = 500.0,
        mesh_grace_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        redial_s: float = 5.0,
        direct_push: bool = True,
        max_peers: int = 24,
        push_queue: int = 256,
        max_connections: int = 128,
        max_pending_handshakes: int = 32,
        max_pending_handshakes_per_address: int = 4,
        handshake_timeout_s: float = 5.0,
        push_frame_timeout_s: float = 10.0,
        relay: bool = False,
        relay_reserve: bool = False,
        ingress_groups_per_round: int = 0,
        events: SwarmEvents | None = None,
    ) -> None:
        if not swarm_id:
            raise ConfigError("libp2p.swarm_id", "must not be empty")
        if not 0 <= listen_port <= 65535:
            raise ConfigError("libp2p.listen_port", "must be 0 (any free port) or a TCP port number")
        if psk is not None and len(psk) != 32:
            raise ConfigError("libp2p.psk", "the private-network key must be exactly 32 bytes")
        if not 0 < max_message_bytes <= MAX_MESSAGE_BYTES:
            raise ConfigError(
                "libp2p.max_message_bytes",
                f"must be between 1 and {MAX_MESSAGE_BYTES} (gossipsub's 1 MiB cap)",
            )
        for name, value in (
            ("heartbeat_s", heartbeat_s),
            ("publish_rate", publish_rate),
            ("router_rate_limit", router_rate_limit),
            ("connect_timeout_s", connect_timeout_s),
            ("redial_s", redial_s),
            ("handshake_timeout_s", handshake_timeout_s),
            ("push_frame_timeout_s", push_frame_timeout_s),
        ):
            if not finite_positive(value):
                raise ConfigError(f"libp2p.{name}", "must be a finite number > 0")
        if not 1 <= max_peers <= 1000:
            raise ConfigError("libp2p.max_peers", "must be between 1 and 1000")
        if max_connections < 8 or max_pending_handshakes < 1:
            raise ConfigError(
                "libp2p.max_connections", "needs max_connections >= 8, max_pending_handshakes >= 1"
            )
        if not 1 <= max_pending_handshakes_per_address <= max_pending_handshakes:
            raise ConfigError(
                "libp2p.max_pending_handshakes_per_address",
                f"must be between 1 and max_pending_handshakes ({max_pending_handshakes})",
            )
        if not 2 <= push_queue <= 65536:
            raise ConfigError("libp2p.push_queue", "must be between 2 and 65536 frames")
        if not 0 <= mesh_grace_s < 60:
            raise ConfigError("libp2p.mesh_grace_s", "must be between 0 and 60 seconds")
        if publish_rate >= router_rate_limit:
            raise ConfigError(
                "libp2p.publish_rate",
                f"must stay below router_rate_limit ({router_rate_limit}/s) or peers drop messages as spam",
            )
        self.swarm_id = swarm_id
        self.topic = topic_for(swarm_id)
        self.max_message_bytes = max_message_bytes
        self._events = events
        self._config = StackConfig(
            key_pair=_key_pair(private_key),
            topic=self.topic,
            listen_host=listen_host,
            listen_port=listen_port,
            bootstrap=_check_bootstrap(bootstrap),
            psk_hex=psk_to_hex(psk) if psk is not None else None,
            peer_cache_path=peer_cache_path,
            mdns=mdns,
            heartbeat_s=heartbeat_s,
            publish_rate=publish_rate,
            router_rate_limit=router_rate_limit,
            mesh_grace_s=mesh_grace_s,
            connect_timeout_s=connect_timeout_s,
            redial_s=redial_s,
            direct_push=direct_push,
            max_peers=max_peers,
            push_queue=push_queue,
            max_connections=max_connections,
            max_pending_handshakes=max_pending_handshakes,
            max_pending_handshakes_per_address=max_pending_handshakes_per_address,
            handshake_timeout_s=handshake_timeout_s,
            push_frame_timeout_s=push_frame_timeout_s,
            relay=relay,
            relay_reserve=relay_reserve,
            bounded_ingress=ingress_groups_per_round > 0,
            # the wire cap, not the configured envelope limit: an envelope over that limit must reach the
            # receive path (rejected as 'oversized', charged to the peer) exactly as it would over gossip
            max_frame_bytes=MAX_MESSAGE_BYTES + 8 * 1024,
        )
        self._stack: Libp2pStack | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler: EnvelopeHandler | None = None
        self._admit: PeerFilter | None = None
        self._slots: asyncio.Semaphore | None = None  # free outbox slots, counted on the asyncio side
        self._delivered = 0
        # envelopes handed over by the libp2p thread, drained on the loop: one wake-up per burst, not per
        # envelope (each call_soon_threadsafe is a self-pipe write and a loop wake-up)
        self._arrivals: deque[tuple[bytes, str]] = deque()
        self._arrivals_lock = threading.Lock()
        self._drain_scheduled = False
        self._closed = False

    # ------------------------------------------------------------------ Transport
    async def start(self) -> None:
        """Bind, join the topic and dial bootstrap/cached peers (returns after the first peer or dial round)."""
        if self._stack is not None or self._closed:
            raise TransportError("libp2p transport can be started once; create a new one to restart")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._slots = asyncio.Semaphore(OUTBOX_SIZE)
        ready: asyncio.Future[BaseException | None] = loop.create_future()
        events = self._events
        callbacks = StackCallbacks(
            deliver=self._arrived,
            ready=lambda error: self._call(_resolve, ready, error),
            sent=(lambda n: self._call(events.messages_sent, n)) if events is not None else (lambda _n: None),
            peers_changed=(
                (lambda n: self._call(events.peers_connected, n)) if events is not None else (lambda _n: None)
            ),
            # hostile gossip frames/messages are visible as rollouts_rejected_total{reason="malformed"}
            malformed=(lambda: self._call(events.rejected, "malformed"))
            if events is not None
            else (lambda: None),
            admit=self._admit,
        )
        stack = Libp2pStack(self._config, callbacks)
        self._stack = stack
        self._thread = threading.Thread(target=stack.run, name=f"libp2p-{self.swarm_id}", daemon=True)
        self._thread.start()
        try:
            error = await asyncio.wait_for(ready, timeout=self._config.connect_timeout_s + 30.0)
        except TimeoutError:
            error = TimeoutError("libp2p stack did not come up in time")
        in_use = _find_in_use(error)
        if in_use is not None:
            await self.close()
            raise in_use
        if error is not None:
            await self.close()
            raise TransportError(
                f"libp2p transport failed to start on {self._config.listen_host}:{self._config.listen_port}: "
                f"{error!r} (is the port free and the address local?)"
            ) from error
        logger.info("libp2p transport %s listening on %s", stack.peer_id, ", ".join(self.listen_addrs()))

    async def publish(self, data: bytes) -> None:
        """Queue one envelope for gossip; waits only while the paced outbox is full, never on peers."""
        if len(data) > self.max_message_bytes:
            raise TransportError(
                f"envelope of {len(data)} bytes exceeds the libp2p limit of {self.max_message_bytes} bytes "
                "(gossipsub silently drops messages over 1 MiB); publish fewer or shorter groups per envelope"
            )
        stack, loop = self._stack, self._loop
        if stack is None or loop is None or self._closed:
            raise TransportError(
                "libp2p transport is not running: call start() first (and not after close())"
            )
        slots = self._slots
        if slots is None:
            raise TransportError("libp2p transport is not running: call start() first")
        await slots.acquire()
        if self._closed:
            slots.release()  # wake the next waiter too
            raise TransportError("libp2p transport closed before the envelope was queued")
        try:
            stack.submit(bytes(data), lambda: self._call(slots.release))
        except trio.RunFinishedError as exc:
            slots.release()
            raise TransportError("libp2p stack has stopped; the transport was closed") from exc

    def subscribe(self, handler: EnvelopeHandler) -> None:
        """Register the receive handler; it runs on the asyncio loop with (bytes, origin peer id)."""
        self._handler = handler

    def set_peer_filter(self, admit: PeerFilter) -> None:
        """Private swarms: peers ``admit`` refuses are disconnected, never dialled, never sent to, and
        whatever they originate or forward is dropped by pubsub. ``admit`` runs in the libp2p thread."""
        self._admit = admit

    def peers(self) -> list[PeerState]:
        """Currently connected peers (refreshed every 200 ms by the stack)."""
        return list(self._stack.peer_snapshot) if self._stack is not None else []

    def members(self) -> list[str]:
        """Members with a push stream: the senders bounded ingress can select (and ask to push)."""
        return list(self._stack.member_snapshot) if self._stack is not None else []

    def far_members(self) -> list[str]:
        """Members learned by peer exchange that this node is not connected to (dialled when selected)."""
        return list(self._stack.far_snapshot) if self._stack is not None else []

    def select_senders(self, senders: frozenset[str] | None) -> None:
        """Bounded ingress: tell the push peers whether this node wants their envelopes (and dial the chosen
        senders it is not connected to)."""
        if self._stack is not None:
            self._stack.select(senders)

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs including /p2p/<peer id>, with the real bound port."""
        return list(self._stack.addr_snapshot) if self._stack is not None else []

    async def close(self) -> None:
        """Stop the stack and its thread; idempotent and never raises on shutdown races."""
        if self._closed:
            return
        self._closed = True
        stack, thread = self._stack, self._thread
        if stack is not None:
            stack.stop()
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, 15.0)
            if thread.is_alive():
                logger.warning("libp2p thread did not stop within 15 s; leaving it (daemon) behind")
        if self._slots is not None:
            self._slots.release()  # publishers waiting for a slot wake up, see _closed and raise

    # ------------------------------------------------------------------ extras
    @property
    def peer_id(self) -> str:
        """This node's libp2p peer id (base58)."""
        return ID.from_pubkey(self._config.key_pair.public_key).to_base58()

    def stats(self) -> Libp2pStats:
        """Counters since start (see ``Libp2pStats``)."""
        c = self._stack.counters if self._stack is not None else None
        return Libp2pStats(
            published=c.published if c else 0,
            delivered=self._delivered,
            malformed_dropped=c.malformed_dropped if c else 0,
            restarts=c.restarts if c else 0,
            dial_failures=c.dial_failures if c else 0,
            gossiped=c.gossiped if c else 0,
            pushed=c.push.pushed if c else 0,
            push_dropped=c.push.push_dropped if c else 0,
            push_received=c.push.push_received if c else 0,
            duplicates_dropped=c.push.duplicates_dropped if c else 0,
            direct_peers=c.direct_peers if c else 0,
            push_covers_members=c.push_covers_members if c else False,
            relayed_peers=c.relayed_peers if c else 0,
            hole_punches=c.hole_punches if c else 0,
        )

    def _inject_fault(self) -> None:
        """Crash the running libp2p stack on purpose (tests of the supervisor)."""
        if self._stack is not None:
            self._stack.inject_fault()

    # ------------------------------------------------------------------ bridge
    def _call(self, fn: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closed while we were shutting down
            loop.call_soon_threadsafe(fn, *args)

    def _arrived(self, data: bytes, peer: str) -> None:
        """Libp2p thread: queue one envelope; schedule a drain on the loop unless one is pending."""
        self._arrivals.append((data, peer))
        with self._arrivals_lock:
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._call(self._drain_arrivals)

    def _drain_arrivals(self) -> None:
        """Loop thread: hand every queued envelope to the handler. The flag is cleared before draining, so
        an envelope queued during the drain either is drained here or schedules the next drain."""
        with self._arrivals_lock:
            self._drain_scheduled = False
        while self._arrivals:
            data, peer = self._arrivals.popleft()
            self._deliver(data, peer)

    def _deliver(self, data: bytes, peer: str) -> None:
        handler = self._handler
        if handler is None or self._closed:
            return
        self._delivered += 1
        try:
            handler(data, peer)
        except Exception:
            logger.exception("libp2p receive handler failed for an envelope from %s", peer)


def _find_in_use(error: BaseException | None) -> IdentityInUseError | None:
    """The IdentityInUseError in ``error`` (trio wraps what a nursery body raises in an exception group)."""
    if isinstance(error, IdentityInUseError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _find_in_use(inner)
            if found is not None:
                return found
    return None


def _resolve(fut: asyncio.Future[BaseException | None], value: BaseException | None) -> None:
    if not fut.done():
        fut.set_result(value)


def read_psk(path: Path) -> bytes:
    """A 32-byte private-network key from a file: go-libp2p's ``swarm.key`` format
    (``/key/swarm/psk/1.0.0/``, ``/base16/``, hex), bare hex, or 32 raw bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("swarm.psk_file", f"cannot read '{path}': {exc.strerror}") from None
    text = raw.decode("ascii", errors="replace").strip().splitlines()
    candidate = text[-1].strip() if text else ""
    if len(candidate) == 64:
        try:
            return bytes.fromhex(candidate)
        except ValueError:
            pass
    if len(raw) == 32:
        return raw
    raise ConfigError(
        "swarm.psk_file",
        f"'{path}' must hold a 32-byte key: 64 hex characters (swarm.key format) or raw bytes",
    )
