"""py-libp2p 0.8.1 pubsub classes hardened against hostile peers, plus flood-publish of own messages.

Why (LIBP2P_NOTES "A remote peer can crash a node"): upstream lets a pubsub message with a malformed
``key`` field raise out of ``push_msg`` (the Pubsub service then cancels itself), and a garbage frame on
the meshsub protocol raise out of the stream handler (the host's service manager then cancels the whole
host). Here both are caught at the boundary where remote input enters, counted through ``on_malformed`` and
dropped; the supervisor in ``libp2p_stack`` restarts the stack if anything still gets through.

Flood-publish: upstream sends a node's own messages only to its mesh, so a message published after a peer
subscribed but before the next heartbeat grafted it is lost. Like go-libp2p's ``WithFloodPublish``, own
messages go to every gossipsub peer subscribed to the topic; receivers drop duplicates by message id.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

logger = logging.getLogger(__name__)

#: RPCs a peer's outbound queue holds before dropping (upstream: 32). At N=8 in a star the hub relays 7
#: peers' bursts to everyone and 32 silently dropped 10-16% of batches; the publisher still paces its own
#: messages on the queues (``QUEUE_HIGH_WATER`` in libp2p_stack), so this only absorbs relay bursts.
RELAY_QUEUE_SIZE = 256

#: Called with (where: "stream" | "message", forwarding peer id, the exception) for every dropped input.
MalformedHook = Callable[[str, str, BaseException], None]
#: Admission test on a base58 peer id (private swarms); ``None`` admits everyone.
AdmitHook = Callable[[str], bool]


class HardenedPubsub(Pubsub):
    """Pubsub whose remote-input entry points drop (and report) anything that raises."""

    on_malformed: MalformedHook | None = None
    admit: AdmitHook | None = None

    def is_peer_blacklisted(self, peer_id: ID) -> bool:
        """Upstream's blacklist, plus every peer the allowlist refuses: such a peer is never registered
        (so nothing is ever sent to it) and messages it forwards or originates are dropped unread."""
        if super().is_peer_blacklisted(peer_id):
            return True
        admit = self.admit
        if admit is None:
            return False
        try:
            return not admit(peer_id.to_base58())
        except Exception:
            return True

    async def stream_handler(self, stream: INetStream) -> None:
        """Read a peer's pubsub stream; a garbage frame resets that stream instead of killing the host."""
        peer_id = stream.muxed_conn.peer_id
        if self.is_peer_blacklisted(peer_id):
            try:
                await stream.reset()
            except Exception:
                logger.debug("reset of a refused pubsub stream from %s failed", peer_id, exc_info=True)
            return
        try:
            await super().stream_handler(stream)
        except Exception as exc:
            self._report("stream", peer_id, exc)
            try:
                await stream.reset()
            except Exception:
                logger.debug("reset of a malformed pubsub stream from %s failed", peer_id, exc_info=True)
            try:
                self._handle_dead_peer(peer_id)
            except Exception:
                logger.debug("cleanup after a malformed pubsub stream from %s failed", peer_id, exc_info=True)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """Validate and forward one message; one that makes validation raise is dropped, not fatal."""
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            self._report("message", msg_forwarder, exc)

    async def _handle_new_peer(self, peer_id: ID) -> None:
        """Register a (re)connected peer, replacing a registration whose connection is already gone.

        Upstream skips a peer that still has an entry in ``peers``; when a peer restarts with the same
        identity before the old connection's death was processed, the entry is a stream on a closed
        connection and the peer would never get our subscriptions or messages again.
        """
        current = self.peers.get(peer_id)
        if current is not None and self._is_stale(peer_id, current):
            self._drop_stale_stream(peer_id)
        await super()._handle_new_peer(peer_id)
        self._enlarge_queue(peer_id)

    def _enlarge_queue(self, peer_id: ID) -> None:
        """Raise the peer's outbound queue bound to ``RELAY_QUEUE_SIZE`` (upstream has no option for it)."""
        inner = getattr(self.peer_queues.get(peer_id), "_queue", None)
        if inner is not None and getattr(inner, "max_size", RELAY_QUEUE_SIZE) < RELAY_QUEUE_SIZE:
            inner.max_size = RELAY_QUEUE_SIZE

    def prune_stale_streams(self) -> int:
        """Drop registrations whose connection has closed (called periodically). Returns how many."""
        pruned = 0
        for peer_id, stream in list(self.peers.items()):
            if not self._is_stale(peer_id, stream):
                continue
            pruned += 1
            if self._peer_is_connected(peer_id):
                # reconnected on another connection: keep its subscriptions, reopen our stream there
                self._drop_stale_stream(peer_id)
                self._schedule_peer_stream_retry(peer_id)
            else:
                self._handle_dead_peer(peer_id)
        return pruned

    def _is_stale(self, peer_id: ID, stream: INetStream) -> bool:
        conn = stream.muxed_conn
        if getattr(conn, "is_closed", False):
            return True
        try:
            live = [getattr(c, "muxed_conn", None) for c in self.host.get_network().get_connections(peer_id)]
        except Exception:
            return False
        return all(m is not conn for m in live)

    def _drop_stale_stream(self, peer_id: ID) -> None:
        self.peers.pop(peer_id, None)
        queue = self.peer_queues.pop(peer_id, None)
        if queue is not None:
            queue.close()
        self._replayed_recent_topics.pop(peer_id, None)
        try:
            self.router.remove_peer(peer_id)
        except Exception:
            logger.debug("router.remove_peer(%s) failed", peer_id, exc_info=True)

    def _report(self, where: str, peer_id: ID, exc: BaseException) -> None:
        logger.warning("dropped malformed pubsub %s from peer %s: %r", where, peer_id, exc)
        hook = self.on_malformed
        if hook is not None:
            try:
                hook(where, str(peer_id), exc)
            except Exception:
                logger.exception("on_malformed hook failed")


class FloodPublishGossipSub(GossipSub):
    """GossipSub that sends this node's own messages to all subscribed gossipsub peers, not only the mesh."""

    flood_publish: bool = True

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Iterable[ID]:
        topics = list(topic_ids)
        chosen = set(super()._get_peers_to_send(topics, msg_forwarder, origin, msg_id))
        pubsub = self.pubsub
        if self.flood_publish and pubsub is not None and origin == pubsub.my_id:
            for topic in topics:
                for peer in pubsub.peer_topics.get(topic, ()):
                    if peer != origin and self._is_gossipsub_peer(peer):
                        chosen.add(peer)
        return chosen


def address_key(remote: tuple[str, int] | None) -> str:
    """The "address" handshake slots are shared by: the remote IPv4 address, the /64 of an IPv6 one (one
    host usually holds a whole /64), an IPv4-mapped IPv6 address as IPv4; ``"?"`` when unknown."""
    if not remote:
        return "?"
    try:
        ip = ipaddress.ip_address(remote[0])
    except ValueError:
        return str(remote[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def remote_address(conn: Any) -> tuple[str, int] | None:
    """``conn.get_remote_address()``, or None when the connection cannot say."""
    try:
        addr = conn.get_remote_address()
    except Exception:
        return None
    return addr if isinstance(addr, tuple) and addr else None


@dataclass(eq=False)
class _Pending:
    started: float
    address: str
    scope: trio.CancelScope


@dataclass(eq=False)
class _Inbound:
    """One inbound connection's handler: set ``muxed`` once its upgrade succeeded."""

    upgraded: trio.Event = field(default_factory=trio.Event)
    muxed: Any = None


class HandshakeGate:
    """At most ``limit`` inbound connections in their security/muxer handshake at once, at most
    ``per_address`` of them from one address (``address_key``), each within ``timeout_s``.

    When an address already holds its ``per_address`` slots, a new connection from it replaces that
    address's own oldest pending handshake (if that one has been pending for at least ``min_age_s``, else the
    newcomer is refused): one address, however fast it reconnects, never holds more than its share nor takes
    a slot from anyone else. When all ``limit`` slots are taken, the newcomer evicts the oldest handshake of
    the address holding the most slots if that address holds at least two more than the newcomer's;
    otherwise (every address holds about as many) it evicts the oldest pending handshake if that one has
    been pending for at least ``min_age_s``, else it is refused. An honest handshake completes in
    milliseconds; the minimum age keeps a flood of fresh connections from many addresses from evicting it
    before it is done.

    ``install`` also makes py-libp2p 0.8.1 give back the inbound-connection slot of a connection that has
    closed: upstream's inbound handler holds its slot (``Swarm._inbound_limiter``) until the whole swarm
    stops, so after (max_connections - min_connections) successful inbound connections in a node's lifetime
    (peers reconnecting, or anyone connecting and leaving) every new inbound connection was refused.
    """

    def __init__(
        self, limit: int, timeout_s: float, per_address: int | None = None, min_age_s: float | None = None
    ) -> None:
        self.limit = limit
        self.per_address = limit if per_address is None else max(1, min(per_address, limit))
        self.timeout_s = timeout_s
        self.min_age_s = min(1.0, timeout_s / 4) if min_age_s is None else min_age_s
        self._pending: deque[_Pending] = deque()
        self._by_address: dict[str, int] = {}
        self._inbound: dict[int, _Inbound] = {}  # id(raw stream) -> its handler, while the handler runs
        self.evicted = 0
        self.refused = 0
        self.refused_address = 0
        self.timed_out = 0
        self.released = 0

    def install(self, network: Any) -> None:
        """Wrap py-libp2p's Swarm ``network``: ``upgrade_inbound_raw_conn`` with this gate, and its inbound
        connection handler so that a closed connection's inbound slot is released."""
        inner: Callable[[Any, Any], Awaitable[Any]] = network.upgrade_inbound_raw_conn

        async def guarded(raw_conn: Any, maddr: Any) -> Any:
            return await self.run(inner, raw_conn, maddr)

        network.upgrade_inbound_raw_conn = guarded
        handler: Callable[[Any, Any], Awaitable[None]] | None = getattr(
            network, "_handle_inbound_connection", None
        )
        if handler is not None:

            async def handle(read_write_closer: Any, maddr: Any) -> None:
                await self.handle(handler, read_write_closer, maddr)

            # the listener's callback looks the method up on the swarm at each connection
            network._handle_inbound_connection = handle

    @property
    def pending(self) -> int:
        return len(self._pending)

    def pending_from(self, address: str) -> int:
        return self._by_address.get(address, 0)

    async def handle(self, inner: Callable[[Any, Any], Awaitable[None]], stream: Any, maddr: Any) -> None:
        """Run upstream's inbound handler; once the connection it upgraded is closed, cancel the handler
        (it would otherwise wait for the swarm to stop), which releases the connection's inbound slot."""
        if self._over_share(address_key(remote_address(stream)), trio.current_time()):
            # refused before it takes one of upstream's inbound slots (a flood from one address would
            # otherwise hold them all for the moment each refusal takes)
            self.refused_address += 1
            with trio.move_on_after(1.0) as cleanup:
                cleanup.shield = True
                try:
                    await stream.close()
                except Exception:
                    logger.debug("closing a refused inbound connection failed", exc_info=True)
            return
        inbound = _Inbound()
        self._inbound[id(stream)] = inbound
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._release_when_closed, inbound, nursery.cancel_scope)
                await inner(stream, maddr)
                nursery.cancel_scope.cancel()
        finally:
            self._inbound.pop(id(stream), None)

    async def _release_when_closed(self, inbound: _Inbound, scope: trio.CancelScope) -> None:
        await inbound.upgraded.wait()
        muxed = inbound.muxed
        closed = getattr(muxed, "event_closed", None)
        if isinstance(closed, trio.Event):
            await closed.wait()
        else:
            while not getattr(muxed, "is_closed", True):
                await trio.sleep(1.0)
        self.released += 1
        scope.cancel()

    async def run(self, inner: Callable[[Any, Any], Awaitable[Any]], raw_conn: Any, maddr: Any) -> Any:
        now = trio.current_time()
        address = address_key(remote_address(raw_conn))
        self._make_room(address, now)
        scope = trio.CancelScope(deadline=now + self.timeout_s)
        entry = _Pending(now, address, scope)
        self._pending.append(entry)
        self._by_address[address] = self._by_address.get(address, 0) + 1
        try:
            with scope:
                muxed = await inner(raw_conn, maddr)
                inbound = self._inbound.get(id(getattr(raw_conn, "stream", None)))
                if inbound is not None:
                    inbound.muxed = muxed
                    inbound.upgraded.set()
                return muxed
        finally:
            self._forget(entry)
        # the scope was cancelled (evicted) or its deadline passed: the caller closes the raw connection
        if trio.current_time() >= scope.deadline:
            self.timed_out += 1
        raise SwarmException("inbound handshake evicted or timed out")

    def _make_room(self, address: str, now: float) -> None:
        """Evict whatever must go for a handshake from ``address`` to start, or raise (refused)."""
        mine = self._by_address.get(address, 0)
        if mine >= self.per_address and self.per_address < self.limit:
            if self._over_share(address, now):
                self.refused_address += 1
                raise SwarmException("too many inbound handshakes in progress from this address")
            self._evict(next(e for e in self._pending if e.address == address))
            return
        while len(self._pending) >= self.limit:
            top = max(self._by_address.values())
            if top >= mine + 2:
                greedy = next(e for e in self._pending if self._by_address[e.address] == top)
                self._evict(greedy)
                continue
            oldest = self._pending[0]
            if now - oldest.started < self.min_age_s:
                self.refused += 1
                raise SwarmException("too many inbound handshakes in progress")
            self._evict(oldest)

    def _over_share(self, address: str, now: float) -> bool:
        """True when ``address`` holds its whole share and its own oldest handshake is too young to go."""
        if self.per_address >= self.limit or self._by_address.get(address, 0) < self.per_address:
            return False  # no share below the total: the total's rules decide
        own = next(e for e in self._pending if e.address == address)
        return now - own.started < self.min_age_s

    def _evict(self, entry: _Pending) -> None:
        self._forget(entry)
        entry.scope.cancel()
        self.evicted += 1

    def _forget(self, entry: _Pending) -> None:
        try:
            self._pending.remove(entry)
        except ValueError:
            return
        left = self._by_address[entry.address] - 1
        if left:
            self._by_address[entry.address] = left
        else:
            del self._by_address[entry.address]


#: py-libp2p loggers whose ERROR records are about one remote connection (a peer that fails its muxer
#: upgrade, a malformed yamux frame, a stream reset mid-read): input any peer can send.
REMOTE_INPUT_LOGGERS = (
    "libp2p.network.swarm",
    "libp2p.stream_muxer.yamux.yamux",
    "libp2p.host.basic_host",
    "libp2p.security.noise.io",
    "libp2p.protocol_muxer.multiselect",
    "libp2p.protocol_muxer.multiselect_client",
    # "Failed to open TCP stream: ..." is a dial that failed: an unreachable peer, not a fault of this node
    "libp2p.transport.tcp.tcp",
    # a peer's signed peer record that does not verify (e.g. two nodes sending records for one identity)
    "libp2p.pubsub.pubsub",
    "libp2p.pubsub.utils",
    # a relay client whose hop stream is slow or broken
    "libp2p.relay.circuit_v2.protocol",
    "libp2p.relay.circuit_v2.transport",
)


class RemoteErrorsAsWarnings(logging.Filter):
    """Logs ERROR records of py-libp2p's per-connection code as WARNING, without traceback: a remote peer
    must not be able to write ERROR lines or tracebacks into a node's log (operators alert on those). No
    record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        if record.exc_info and record.levelno >= logging.WARNING:
            # one line per remote failure (the message names the exception), not a traceback a peer can
            # make us write at will
            record.exc_info = None
            record.exc_text = None
        return True


def route_libp2p_logs() -> None:
    """Send py-libp2p's records through the node's logging (idempotent).

    At import py-libp2p gives its ``libp2p`` logger no handler and turns propagation off (unless
    ``LIBP2P_DEBUG`` is set), so its WARNING and ERROR records fell to Python's last-resort handler: bare
    lines such as "Failed to open TCP stream: ..." on stderr, outside the node's log file and format. With
    propagation on they reach the root logger's handlers (text or JSON, file or stderr) like ours. An
    operator who sets ``LIBP2P_DEBUG`` keeps py-libp2p's own debug logging.
    """
    if os.environ.get("LIBP2P_DEBUG"):
        return
    root = logging.getLogger("libp2p")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.propagate = True
    if root.level == logging.NOTSET or root.level < logging.WARNING:
        root.setLevel(logging.WARNING)
    # some modules pin their own logger to INFO at import (the auto-connector logs its state every 10 s)
    for name, child in list(logging.root.manager.loggerDict.items()):
        pinned = isinstance(child, logging.Logger) and logging.NOTSET < child.level < logging.WARNING
        if name.startswith("libp2p.") and pinned:
            child.setLevel(logging.WARNING)  # type: ignore[union-attr]


def demote_remote_errors() -> None:
    """Install ``RemoteErrorsAsWarnings`` on ``REMOTE_INPUT_LOGGERS`` (idempotent)."""
    route_libp2p_logs()
    for name in REMOTE_INPUT_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RemoteErrorsAsWarnings) for f in target.filters):
            target.addFilter(RemoteErrorsAsWarnings())
