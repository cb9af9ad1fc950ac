"""The trio side of the libp2p transport: one supervised py-libp2p stack in a dedicated thread.

py-libp2p is trio-only, the node is asyncio, so the stack runs in its own thread under ``trio.run``. Each
*incarnation* builds a host (Noise only, optional private-network key), starts Pubsub and GossipSub *before*
``host.run()`` (the other order crashes when a peer's stream arrives early), joins the topic and runs four
tasks: drain the subscription, publish from the outbox at a paced rate, dial bootstrap/cached peers, and
watch liveness (peers snapshot, peer cache). If anything escapes (a remote-triggered crash the hardened
classes did not catch, a dead service), the supervisor logs it and starts a new incarnation with the same
key and port, after a short backoff; messages waiting in the outbox survive the restart.

Crossing threads: the asyncio side calls in with ``TrioToken.run_sync_soon`` (never blocks), and the stack
calls out through the callbacks in ``StackCallbacks``, which must be thread-safe (the transport wraps them
in ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TSecurityOptions
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from swarmrl.swarm.fdlimit import connection_budget
from swarmrl.swarm.lru import LRU
from swarmrl.swarm.transports.base import PeerState
from swarmrl.swarm.transports.libp2p.dialing import Dialer, peer_addrs, refuse
from swarmrl.swarm.transports.libp2p.follow import protected_peers
from swarmrl.swarm.transports.libp2p.hardened import (
    FloodPublishGossipSub,
    HandshakeGate,
    HardenedPubsub,
    demote_remote_errors,
)
from swarmrl.swarm.transports.libp2p.instance import IdentityInUseError, InstanceGuard
from swarmrl.swarm.transports.libp2p.peercache import PeerCache
from swarmrl.swarm.transports.libp2p.push import (
    PUSH_PROTOCOL,
    SEEN_CAPACITY,
    SEEN_GOSSIP,
    SEEN_OWN,
    PushMesh,
    envelope_digest,
    first_on_path,
)
from swarmrl.swarm.transports.libp2p.relay import RelaySupport
from swarmrl.swarm.transports.libp2p.settings import (
    InjectedFault,
    StackCallbacks,
    StackConfig,
    StackCounters,
    StackDied,
    probe_port,
)

logger = logging.getLogger(__name__)

#: A publish waits for peers' outbound queues (32 RPCs upstream) to drop below this many entries ...
QUEUE_HIGH_WATER = 16
#: ... but for at most this long, so one stalled peer cannot stop publishing.
QUEUE_WAIT_S = 1.0
#: Outbox capacity (messages waiting to be paced out); ``publish`` waits while it is full.
OUTBOX_SIZE = 256
#: The peers snapshot and peer cache are refreshed at least this often (and at once on a peer change).
_SNAPSHOT_REFRESH_S = 2.0


@dataclass
class _Outgoing:
    data: bytes
    taken: Callable[[], None] | None = None


@dataclass
class Libp2pStack:
    """Owns the trio run. ``run()`` is the thread's entry point; the other public methods are thread-safe."""

    config: StackConfig
    callbacks: StackCallbacks
    counters: StackCounters = field(default_factory=StackCounters)
    peer_snapshot: tuple[PeerState, ...] = ()
    addr_snapshot: tuple[str, ...] = ()
    #: Members with a push stream (base58), the senders bounded ingress may select; refreshed with the peers.
    member_snapshot: tuple[str, ...] = ()
    far_snapshot: tuple[str, ...] = ()
    selection: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._root_scope: trio.CancelScope | None = None
        self._root_nursery: trio.Nursery | None = None
        self._bound_port = self.config.listen_port
        self._ready_reported = False
        self._fault: trio.Event | None = None  # created inside the trio run
        self._stop_requested = False
        self._inflight: _Outgoing | None = None
        self._first_seen: dict[ID, float] = {}
        self._cache = PeerCache.load(self.config.peer_cache_path)
        self._cache_dirty = False
        self._cache_saved_at = 0.0
        self._my_id = ID.from_pubkey(self.config.key_pair.public_key)
        self._outbox_send: trio.MemorySendChannel[_Outgoing] | None = None
        self._outbox_recv: trio.MemoryReceiveChannel[_Outgoing] | None = None
        # envelopes already delivered (or published): the push and gossip copies of one envelope
        self._seen: LRU[bytes, int] = LRU(SEEN_CAPACITY)
        self._push_mesh: PushMesh | None = None
        self._in_use: str | None = None  # a peer said this identity is live elsewhere (before ready)
        self.guard: InstanceGuard | None = None
        self._relay: RelaySupport | None = None
        self._own_addrs: tuple[str, ...] = ()

    # ----------------------------------------------------------------- called from other threads
    @property
    def peer_id(self) -> str:
        return self._my_id.to_base58()

    def run(self) -> None:
        """Thread entry point: run the supervisor until ``stop()``; never raises."""
        try:
            trio.run(self._main)
        except BaseException as exc:  # shutdown races such as "Nursery is closed to new arrivals"
            logger.debug("libp2p trio run ended with %r", exc)
            if not self._ready_reported:
                self._report_ready(exc)

    def stop(self) -> None:
        """Ask the trio run to finish (safe to call from any thread, any number of times)."""
        self._stop_requested = True
        token = self._token
        if token is None:
            return  # _main checks the flag once it has a token
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._cancel_root)

    def submit(self, data: bytes, taken: Callable[[], None]) -> None:
        """Queue ``data`` for publishing; ``taken()`` is called (in the trio thread) when the publisher takes
        it off the outbox, so the caller can count free outbox slots without a round trip per message.

        Raises ``trio.RunFinishedError`` when the stack is no longer running.
        """
        token = self._token
        if token is None:
            raise trio.RunFinishedError("libp2p stack not started")
        token.run_sync_soon(self._enqueue, _Outgoing(data, taken))

    def select(self, senders: frozenset[str] | None) -> None:
        """Bounded ingress: take pushes only from ``senders`` (kept across incarnations)."""
        self.selection = senders
        mesh, token = self._push_mesh, self._token
        if mesh is not None and token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(mesh.select, senders)

    def inject_fault(self) -> None:
        """Make the current incarnation fail (for supervisor tests)."""
        if self._token is not None:
            self._token.run_sync_soon(self._set_fault)

    # ----------------------------------------------------------------- trio thread
    def _cancel_root(self) -> None:
        if self._root_scope is not None:
            self._root_scope.cancel()

    def _set_fault(self) -> None:
        if self._fault is not None:
            self._fault.set()

    def _enqueue(self, item: _Outgoing) -> None:
        send = self._outbox_send
        nursery = self._root_nursery
        if send is None or nursery is None:
            return
        try:
            send.send_nowait(item)
        except trio.WouldBlock:
            nursery.start_soon(self._enqueue_blocking, item)
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return

    async def _enqueue_blocking(self, item: _Outgoing) -> None:
        if self._outbox_send is None:
            return
        await self._outbox_send.send(item)

    def _report_ready(self, error: BaseException | None) -> None:
        if self._ready_reported:
            return
        self._ready_reported = True
        self.callbacks.ready(error)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[_Outgoing](OUTBOX_SIZE)
        with trio.CancelScope() as scope:
            self._root_scope = scope
            if self._stop_requested:
                scope.cancel()
            async with trio.open_nursery() as nursery:
                self._root_nursery = nursery
                await self._supervise()
                nursery.cancel_scope.cancel()
        self._cache.save()

    async def _supervise(self) -> None:
        consecutive = 0
        while True:
            started = trio.current_time()
            try:
                await self._incarnation()
                raise StackDied("libp2p incarnation returned")
            except BaseException as exc:
                if self._root_scope is not None and self._root_scope.cancel_called:
                    raise
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                if not self._ready_reported:
                    self._report_ready(exc)
                    return
                if trio.current_time() - started > 30.0:
                    consecutive = 0
                consecutive += 1
                self.counters.restarts += 1
                delay = min(5.0, 0.1 * 2 ** (consecutive - 1))
                logger.warning(
                    "libp2p stack failed (%r); restarting in %.1fs (restart #%d)",
                    exc,
                    delay,
                    self.counters.restarts,
                )
                self.peer_snapshot = ()
                self.callbacks.peers_changed(0)
                await trio.sleep(delay)

    def _build(self) -> tuple[IHost, HardenedPubsub, FloodPublishGossipSub]:
        cfg = self.config
        security: TSecurityOptions = {
            NOISE_PROTOCOL_ID: NoiseTransport(
                cfg.key_pair, noise_privkey=create_x25519_key_pair().private_key
            )
        }
        listen = multiaddr.Multiaddr(f"/ip4/{cfg.listen_host}/tcp/{self._bound_port}")
        max_conns = connection_budget(cfg.max_connections, "swarm.max_connections")
        connections = ConnectionConfig(
            max_connections=max_conns,
            # py-libp2p keeps (max - min) slots for inbound connections
            min_connections=max(1, max_conns // 4),
            low_watermark=max(1, max_conns // 4),
            high_watermark=max_conns,
            inbound_upgrade_timeout=cfg.handshake_timeout_s,
        )
        host = new_host(
            key_pair=cfg.key_pair,
            sec_opt=security,
            listen_addrs=[listen],
            enable_mDNS=cfg.mdns,
            enable_metrics=False,
            psk=cfg.psk_hex,
            connection_config=connections,
        )
        HandshakeGate(
            cfg.max_pending_handshakes, cfg.handshake_timeout_s, cfg.max_pending_handshakes_per_address
        ).install(host.get_network())
        demote_remote_errors()
        gossipsub = FloodPublishGossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
            degree=cfg.degree,
            degree_low=cfg.degree_low,
            degree_high=cfg.degree_high,
            # The annotation says int; trio.sleep takes any real, and sub-second heartbeats are valid.
            heartbeat_interval=cfg.heartbeat_s,  # type: ignore[arg-type]
            # Adaptive gossip stretches a "moderately healthy" heartbeat to >= 60 s, which in a small
            # swarm re-creates the memory growth and slow mesh repair that a 1 s heartbeat avoids.
            adaptive_gossip_enabled=False,
            max_messages_per_topic_per_second=cfg.router_rate_limit,
        )
        pubsub = HardenedPubsub(host, gossipsub, strict_signing=True)
        pubsub.on_malformed = self._on_malformed
        pubsub.admit = self.callbacks.admit
        return host, pubsub, gossipsub

    def _on_malformed(self, where: str, peer: str, exc: BaseException) -> None:
        if where == "push":
            logger.warning("dropped malformed push stream from peer %s: %r", peer, exc)
        self.counters.malformed_dropped += 1
        self.callbacks.malformed()

    def _admits(self, peer: str) -> bool:
        admit = self.callbacks.admit
        return admit is None or admit(peer)

    def _build_push(self, host: IHost, pubsub: HardenedPubsub) -> PushMesh | None:
        cfg = self.config
        if not cfg.direct_push:
            return None
        push = PushMesh(
            host,
            cfg.topic,
            my_addrs=lambda: self.addr_snapshot,
            connect=self._connect_via(host),
            subscribers=lambda: pubsub.peer_topics.get(cfg.topic, set()),
            deliver=self._deliver_pushed,
            admits=self._admits,
            on_malformed=lambda peer, exc: self._on_malformed("push", peer, exc),
            seen=self._seen,
            counters=self.counters.push,
            max_frame_bytes=cfg.max_frame_bytes,
            queue_size=cfg.push_queue,
            max_peers=cfg.max_peers,
            connect_timeout_s=cfg.connect_timeout_s,
            frame_timeout_s=cfg.push_frame_timeout_s,
            protected=protected_peers(cfg.bootstrap),
        )
        host.set_stream_handler(PUSH_PROTOCOL, push.handle_inbound)
        push.select(self.selection)
        return push

    def _deliver_pushed(self, data: bytes, peer: str) -> None:
        self.counters.delivered += 1
        self.callbacks.deliver(data, peer)

    async def _incarnation(self) -> None:
        if self._bound_port:
            probe_port(self.config.listen_host, self._bound_port)
        host, pubsub, gossipsub = self._build()
        push = self._build_push(host, pubsub)
        self._push_mesh = push
        guard = self.guard = InstanceGuard(host, self.peer_id, self._on_in_use)
        guard.install()
        cfg = self.config
        relay = self._relay = RelaySupport(
            host, cfg.relay, cfg.bootstrap if cfg.relay_reserve else (), self.counters
        )
        self._fault = trio.Event()
        self._first_seen.clear()
        listen = multiaddr.Multiaddr(f"/ip4/{self.config.listen_host}/tcp/{self._bound_port}")
        # Order matters: Pubsub and GossipSub must run before the host accepts streams.
        async with (
            background_trio_service(pubsub),
            background_trio_service(gossipsub),
            host.run([listen]),
        ):
            subscription = await pubsub.subscribe(self.config.topic)
            self._remember_bound_port(host)
            self._own_addrs = tuple(self._full_addr(a) for a in host.get_addrs())
            self.addr_snapshot = self._own_addrs
            first_round = trio.Event()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._drain, subscription)
                    dialer = Dialer(
                        self.config,
                        self._cache,
                        self._my_id,
                        self._admits,
                        self._connect_via(host),
                        self.counters,
                    )
                    nursery.start_soon(dialer.run, host, first_round)
                    nursery.start_soon(self._watch, host, pubsub, gossipsub)
                    nursery.start_soon(guard.run)
                    nursery.start_soon(relay.run)
                    if push is not None:
                        nursery.start_soon(self._run_push, push, relay)
                    with trio.move_on_after(self.config.connect_timeout_s + 1.0):
                        await first_round.wait()
                    await self._settle_identity(guard)
                    self._report_ready(None)
                    nursery.start_soon(self._publisher, host, pubsub, push)
                    await self._fault.wait()
                    raise InjectedFault("fault injected on request")
            finally:
                self._save_cache(force=True)
                await self._close_host(host)

    async def _run_push(self, push: PushMesh, relay: RelaySupport) -> None:
        """A node behind a NAT opens its push streams (whose HELLO carries its addresses, once) after its
        relay reservation, so peers learn its /p2p-circuit address; bounded by ``connect_timeout_s``."""
        if self.config.relay_reserve:
            with trio.move_on_after(self.config.connect_timeout_s * 2):
                while not relay.circuit_addrs:
                    await trio.sleep(0.05)
            self.addr_snapshot = self._own_addrs + relay.circuit_addrs
        await push.run()

    def _connect_via(self, host: IHost) -> Callable[[PeerInfo], Awaitable[None]]:
        """Dial with the relay's connect (which also dials /p2p-circuit addresses) once it exists.

        Our dialers keep their own per-peer backoff, so py-libp2p's negative cache (a peer whose addresses
        all failed is refused for 60 s) is lifted first: without that a bootstrap peer that starts a few
        seconds after us stayed unreachable for about 75 s (its refusals restarted our backoff)."""

        async def connect(info: PeerInfo) -> None:
            unblock = getattr(host.get_network(), "unblock_peer", None)
            if unblock is not None:
                unblock(info.peer_id)
            relay = self._relay
            await (relay.connect(info) if relay is not None else host.connect(info))

        return connect

    async def _settle_identity(self, guard: InstanceGuard) -> None:
        """Before reporting ready: wait (bounded) for the first peers' answers to our instance hello, and
        fail the start if one says this identity is already live on another node."""
        if not self._ready_reported:
            with trio.move_on_after(self.config.connect_timeout_s):
                while not guard.settled() and self._in_use is None:
                    await trio.sleep(0.02)
        if self._in_use is not None and not self._ready_reported:
            raise IdentityInUseError(self._in_use)

    def _on_in_use(self, message: str) -> None:
        if self._ready_reported:
            logger.error("%s", message)
        elif self._in_use is None:
            self._in_use = message

    @staticmethod
    async def _close_host(host: IHost) -> None:
        """Close every connection explicitly: a cancelled host leaves its sockets open, and peers would keep
        a stale pubsub stream to us (they only reopen one once the old connection is gone)."""
        with trio.move_on_after(2.0) as scope:
            scope.shield = True
            try:
                await host.close()
            except Exception as exc:
                logger.debug("closing the libp2p host raised %r", exc)

    def _remember_bound_port(self, host: IHost) -> None:
        for addr in host.get_transport_addrs():
            port = addr.value_for_protocol("tcp")
            if port is not None:
                self._bound_port = int(port)
                return

    def _full_addr(self, addr: multiaddr.Multiaddr) -> str:
        text = str(addr)
        suffix = f"/p2p/{self.peer_id}"
        return text if text.endswith(suffix) else text + suffix

    async def _drain(self, subscription: object) -> None:
        """Empty the subscription continuously (it holds 32 messages, then drops) and hand messages out."""
        get = subscription.get  # type: ignore[attr-defined]
        my_id = self._my_id.to_bytes()
        while True:
            msg = await get()
            if msg.from_id == my_id:
                continue  # own publish, echoed locally by pubsub
            data = bytes(msg.data)
            try:
                origin = ID(msg.from_id).to_base58()
            except Exception:
                continue
            if not first_on_path(self._seen, data, SEEN_GOSSIP):
                self.counters.push.duplicates_dropped += 1
                continue  # already arrived over a push stream
            self.counters.delivered += 1
            self.callbacks.deliver(data, origin)

    async def _publisher(self, host: IHost, pubsub: HardenedPubsub, push: PushMesh | None) -> None:
        """Send the outbox: push to direct peers, and gossip (paced, ``publish_rate``) unless push covers
        every member this node knows of."""
        recv = self._outbox_recv
        if recv is None:
            return
        interval = 1.0 / self.config.publish_rate
        next_at = trio.current_time()
        while True:
            if self._inflight is None:
                self._inflight = await recv.receive()
                if self._inflight.taken is not None:
                    self._inflight.taken()
            await self._await_subscribers(host, pubsub, push)
            data = self._inflight.data
            gossip = True
            if push is not None:
                await push.wait_for_room(QUEUE_WAIT_S)
                gossip = not push.covers_all_members()
                if self.config.bounded_ingress and push.ready_peers():
                    gossip = False  # receivers chose their senders: no flooding (docs/scale.md)
                push.push(data)
            else:
                self._seen.put(envelope_digest(data), SEEN_OWN)
            if gossip:
                await trio.sleep_until(next_at)
                await self._await_queue_room(pubsub)
                await pubsub.publish(self.config.topic, data)
                self.counters.gossiped += 1
                next_at = max(next_at + interval, trio.current_time())
            self._inflight = None
            self.counters.published += 1
            self.callbacks.sent(1)

    async def _await_subscribers(self, host: IHost, pubsub: HardenedPubsub, push: PushMesh | None) -> None:
        """Wait (up to ``mesh_grace_s`` after each connects) until connected peers can be reached.

        A peer is reachable once it has a push stream, or has joined the topic and has a pubsub stream. A
        message published while a peer is connected but not yet reachable reaches it only through the
        cache replay; waiting here closes that window. Peers that never join (another swarm) stop delaying
        publishes ``mesh_grace_s`` after they were first seen.
        """
        grace = self.config.mesh_grace_s
        while True:
            now = trio.current_time()
            subscribed = pubsub.peer_topics.get(self.config.topic, set())
            pushed = push.ready_peers() if push is not None else set()
            waiting = False
            for peer in host.get_connected_peers():
                first = self._first_seen.setdefault(peer, now)
                ready = peer in pushed or (peer in subscribed and peer in pubsub.peers)
                if not ready and now - first < grace:
                    waiting = True
                    break
            if not waiting:
                return
            await trio.sleep(0.01)

    @staticmethod
    async def _await_queue_room(pubsub: HardenedPubsub) -> None:
        """Wait (at most ``QUEUE_WAIT_S``) until every peer's outbound queue is at most half full.

        Upstream drops an RPC when a peer's 32-slot queue is full, silently; pacing on the queues keeps
        bursts from overflowing them, while the bound keeps one stalled peer from stopping the node.
        """
        deadline = trio.current_time() + QUEUE_WAIT_S
        while trio.current_time() < deadline:
            if all(len(q) < QUEUE_HIGH_WATER for q in list(pubsub.peer_queues.values())):
                return
            await trio.sleep(0.001)

    async def _watch(self, host: IHost, pubsub: HardenedPubsub, gossipsub: FloodPublishGossipSub) -> None:
        """Every 200 ms: check the services are alive and refuse disallowed peers; refresh the peers snapshot
        and the peer cache when the peer set changed, else every ``_SNAPSHOT_REFRESH_S`` (formatting every
        peer's multiaddrs is the costliest part of an idle node)."""
        network = host.get_network()
        last_count = -1
        last_live: set[ID] = set()
        refreshed_at = -math.inf
        while True:
            for name, service in (("pubsub", pubsub), ("gossipsub", gossipsub), ("network", network)):
                manager = getattr(service, "manager", None)
                if manager is not None and manager.is_started and not manager.is_running:
                    raise StackDied(f"libp2p {name} service stopped")
            pubsub.prune_stale_streams()
            peers = host.get_connected_peers()
            refused = [p for p in peers if not self._admits(p.to_base58())]
            for peer in refused:
                await refuse(host, peer)
            peers = [p for p in peers if p not in refused]
            live = set(peers)
            for gone in [p for p in self._first_seen if p not in live]:
                del self._first_seen[gone]
            now = trio.current_time()
            if self._relay is not None:
                self.addr_snapshot = self._own_addrs + self._relay.circuit_addrs
            mesh = self._push_mesh
            ready = mesh.ready_peers() if mesh is not None else set()
            self.counters.direct_peers = len(ready)
            self.member_snapshot = tuple(p.to_base58() for p in ready)
            far = mesh.far_members(live) if mesh is not None and self.config.bounded_ingress else set()
            self.far_snapshot = tuple(p.to_base58() for p in far)
            self.counters.push_covers_members = mesh is not None and mesh.covers_all_members()
            if live == last_live and now - refreshed_at < _SNAPSHOT_REFRESH_S and last_count >= 0:
                await trio.sleep(0.2)
                continue
            last_live, refreshed_at = live, now
            store = host.get_peerstore()
            snapshot = []
            for peer in peers:
                addrs = peer_addrs(store, peer)
                snapshot.append(PeerState(peer_id=peer.to_base58(), address=addrs[0] if addrs else ""))
                if addrs and self._cache.remember(peer.to_base58(), addrs):
                    self._cache_dirty = True
            self.peer_snapshot = tuple(snapshot)
            if len(snapshot) != last_count:
                last_count = len(snapshot)
                self.callbacks.peers_changed(last_count)
            self._save_cache(force=False)
            await trio.sleep(0.2)

    def _save_cache(self, force: bool) -> None:
        now = time.monotonic()
        if not self._cache_dirty and not force:
            return
        if not force and now - self._cache_saved_at < 1.0:
            return
        self._cache.save()
        self._cache_dirty = False
        self._cache_saved_at = now
