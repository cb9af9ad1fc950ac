"""Direct push of envelopes over persistent libp2p streams, plus peer exchange (the trio side).

Why: gossipsub in py-libp2p costs several ms of Python per received message (RPC protobuf, message
signature, router bookkeeping), and in a star every message is relayed through the hub. A raw libp2p
stream (Noise + Yamux) moves the same bytes 3-30x cheaper (LIBP2P_NOTES). So, for every directly connected
swarm member, this node keeps one outbound stream on ``PUSH_PROTOCOL`` and writes its *own* envelopes
there as length-prefixed frames; the receiver authenticates the sender by the connection (Noise), so the
origin of a pushed envelope is the stream's peer. Gossipsub stays for announcements of membership and for
relaying: when this node does not have a push stream to every member it knows of, it also gossips
(``PushMesh.covers_all_members``), and receivers drop the second copy by envelope hash when it comes over
the *other* path (``first_on_path``); a repeat over the same path is a replay and goes on to the receive
path, which rejects, counts and charges it. Best effort, like gossipsub: a member that joined through
another peer is covered only once that peer's PEERS frame (sent on change) has arrived.

Peer exchange makes the mesh full so that push alone suffices: the first frame on a push stream is a
HELLO (topic, the sender's listen multiaddrs); PEERS frames list the swarm members the sender is connected
to, with their addresses, and are re-sent on change. Members this node is not connected to are dialled (up
to ``max_peers`` connections; beyond that gossipsub relays), the one with the smaller peer id first so two
nodes rarely dial each other at once. Bounded ingress (``libp2p.selection``): a receiver may ask a sender
not to push to it (SELECT frames); the sender then skips it. Selected senders are dialled at once and idle
connections beyond ``max_peers`` are closed (``libp2p.follow``).

Wire format of a frame: 4-byte big-endian body length, 1 kind byte, body. HELLO and PEERS bodies are JSON
(bounded: ``MAX_CONTROL_BYTES``, ``MAX_PEERS_PER_FRAME``, ``MAX_ADDRS_PER_PEER``); ENVELOPE bodies are the
envelope bytes (at most ``max_frame_bytes``). The length is checked before anything is buffered for the
body; a malformed frame resets that stream (reported through ``on_malformed``), never the host. Refused
peers (``admit``) get their streams reset and are never dialled or pushed to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from swarmrl.errors import SwarmRLError
from swarmrl.swarm.lru import LRU
from swarmrl.swarm.transports.libp2p.follow import CATCH_UP_S, CatchUp, Follower
from swarmrl.swarm.transports.libp2p.frames import MAX_ADDRS_PER_PEER, MalformedFrame
from swarmrl.swarm.transports.libp2p.frames import json_body as _json_body
from swarmrl.swarm.transports.libp2p.frames import valid_addrs as _valid_addrs
from swarmrl.swarm.transports.libp2p.frames import valid_peer_id as _valid_peer_id
from swarmrl.swarm.transports.libp2p.selection import HELLO_FLAG, KIND_SELECT, SelectState, select_body

logger = logging.getLogger(__name__)

PUSH_PROTOCOL = TProtocol("/swarmrl/push/1.0.0")

KIND_HELLO = 1
KIND_PEERS = 2
KIND_ENVELOPE = 3

_HEADER = struct.Struct(">IB")
#: Largest HELLO/PEERS body accepted.
MAX_CONTROL_BYTES = 64 * 1024
MAX_PEERS_PER_FRAME = 64
#: Bytes asked of the stream per read.
_READ_CHUNK = 256 * 1024
#: Envelope hashes remembered for duplicate suppression (push and gossip copies of one envelope).
SEEN_CAPACITY = 16384
#: How long a peer that could not take a push stream (old version, other swarm) is left alone.
_OPEN_BACKOFF_S = 10.0
#: A peer with the larger id waits this long for the smaller one to dial before dialling itself.
_DIAL_YIELD_S = 1.5
#: PEERS frames are re-sent this often even without a change (members expire after 3 periods).
_PEERS_REFRESH_S = 5.0
_TICK_S = 0.1
#: Learned members are considered for dialling on every change and otherwise every this many ticks.
_DIAL_EVERY_TICKS = 5
_TABLE_CAPACITY = 4096
#: The writer joins waiting frames into one stream write up to about this many bytes.
_COALESCE_BYTES = 256 * 1024


class FrameTimeout(SwarmRLError):
    """A frame did not arrive whole in time (the stream is reset; a slow link is not proof of malice)."""


@dataclass
class PushCounters:
    """Running totals of the push path (written by the trio thread)."""

    pushed: int = 0  # envelope frames queued to peers
    push_dropped: int = 0  # envelope frames dropped because a peer's queue stayed full
    push_received: int = 0  # envelope frames received and handed on
    duplicates_dropped: int = 0  # second copies that came over the other path (push vs gossip)
    frames_timed_out: int = 0  # inbound streams reset because a frame stalled part-way
    pruned: int = 0  # idle connections closed beyond max_peers (bounded ingress)
    caught_up: int = 0  # recent own envelopes sent to a peer when it started wanting them


@dataclass
class _Outbound:
    stream: INetStream
    send: trio.MemorySendChannel[bytes]
    recv: trio.MemoryReceiveChannel[bytes]
    queued: int = 0


@dataclass
class _Learned:
    """Members one peer told us about: peer id (text) -> (peer id, addrs), and when it last told us."""

    at: float
    body: bytes = b""
    peers: dict[str, tuple[ID, tuple[str, ...]]] = field(default_factory=dict)


def encode_frame(kind: int, body: bytes) -> bytes:
    """One push-protocol frame."""
    return _HEADER.pack(len(body), kind) + body


def envelope_digest(data: bytes) -> bytes:
    """The duplicate-suppression key of an envelope (16-byte BLAKE2b)."""
    return hashlib.blake2b(data, digest_size=16).digest()


#: Paths an envelope was seen on (bit flags in the shared ``seen`` table).
SEEN_PUSH = 1
SEEN_GOSSIP = 2
SEEN_OWN = 4


def first_on_path(seen: LRU[bytes, int], data: bytes, path: int) -> bool:
    """Record that ``data`` arrived on ``path``; False when it already came over *another* path (or is our
    own), i.e. it is the transport's second copy of one publish and is dropped silently.

    A repeat on the *same* path is not suppressed here: a peer that sends one envelope twice is replaying,
    and the receive path must see (reject, count and charge) that.
    """
    digest = envelope_digest(data)
    flags = seen.get(digest) or 0
    if flags & ~path:
        return False
    seen.put(digest, flags | path)
    return True


class PushMesh:
    """Push streams to every directly connected member, their reader side, and peer exchange.

    Lives inside one stack incarnation: build it with the incarnation's host, register ``handle_inbound``
    as the ``PUSH_PROTOCOL`` stream handler before the host runs, run ``run()`` in the incarnation's
    nursery. All methods run in the trio thread.
    """

    def __init__(
        self,
        host: IHost,
        topic: str,
        *,
        my_addrs: Callable[[], Iterable[str]],
        subscribers: Callable[[], Iterable[ID]],
        deliver: Callable[[bytes, str], None],
        admits: Callable[[str], bool],
        on_malformed: Callable[[str, BaseException], None],
        seen: LRU[bytes, int],
        counters: PushCounters,
        max_frame_bytes: int,
        queue_size: int,
        max_peers: int,
        connect_timeout_s: float,
        frame_timeout_s: float = 10.0,
        connect: Callable[[PeerInfo], Awaitable[None]] | None = None,
        protected: frozenset[ID] = frozenset(),
    ) -> None:
        self.host = host
        self._protected = protected  # never pruned (bootstrap peers, relays)
        self._connect = connect or host.connect  # the relay's connect also dials /p2p-circuit addresses
        self.topic = topic
        self._my_id = host.get_id()
        self._my_addrs = my_addrs
        self._subscribers = subscribers
        self._deliver = deliver
        self._admits = admits
        self._on_malformed = on_malformed
        self.seen = seen
        self.counters = counters
        self.max_frame_bytes = max_frame_bytes
        self.queue_size = queue_size
        self.max_peers = max_peers
        self.connect_timeout_s = connect_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self._outbound: dict[ID, _Outbound] = {}
        self._opening: set[ID] = set()
        # bounded: a hostile peer can make us learn or try any number of peer ids
        self._open_backoff: LRU[ID, float] = LRU(_TABLE_CAPACITY)
        self._inbound: dict[ID, INetStream] = {}
        self._hello_addrs: dict[ID, tuple[str, ...]] = {}
        self._learned: dict[ID, _Learned] = {}
        self._first_learned: LRU[str, float] = LRU(_TABLE_CAPACITY)
        self._dialling: set[str] = set()
        self._dial_backoff: LRU[str, tuple[int, float]] = LRU(_TABLE_CAPACITY)
        self._follower = Follower(_TABLE_CAPACITY)
        self._catch_up = CatchUp()
        self._last_peers_body = b""
        self._peers_sent_at = 0.0
        self._nursery: trio.Nursery | None = None
        self._ticks = 0
        self._learned_dirty = False
        self.selection = SelectState()

    # ------------------------------------------------------------------ publishing side
    def ready_peers(self) -> set[ID]:
        """Confirmed members (they sent us a HELLO or joined the topic) with an open outbound push stream."""
        confirmed = set(self._hello_addrs)
        confirmed.update(self._subscribers())
        return {p for p in self._outbound if p in confirmed}

    def members(self) -> set[ID]:
        """Swarm members this node knows of: pushing to us, subscribed to the topic, or listed by a peer."""
        out: set[ID] = set(self._hello_addrs)
        out.update(self._subscribers())
        cutoff = time.monotonic() - 3 * _PEERS_REFRESH_S
        for learned in self._learned.values():
            if learned.at >= cutoff:
                out.update(peer for peer, _ in learned.peers.values())
        out.discard(self._my_id)
        return {p for p in out if self._admits(p.to_base58())}

    def far_members(self, connected: set[ID]) -> set[ID]:
        """Members this node knows of (listed by a peer) but is not ``connected`` to, with an address and not
        in dial backoff: the senders bounded ingress may select and then dial (``_dial_selected``)."""
        now = time.monotonic()
        cutoff = now - 3 * _PEERS_REFRESH_S
        out: set[ID] = set()
        for learned in self._learned.values():
            if learned.at < cutoff:
                continue
            for text, (peer, addrs) in learned.peers.items():
                if not addrs or peer in connected or peer == self._my_id or not self._admits(text):
                    continue
                if self._backed_off(text, now):
                    continue
                out.add(peer)
        return out

    def covers_all_members(self) -> bool:
        """True when every known member has a push stream, so gossiping our own envelopes is unnecessary."""
        members = self.members()
        return bool(members) and members <= self.ready_peers()

    async def wait_for_room(self, timeout_s: float) -> None:
        """Backpressure: wait (bounded) until every push queue has room for one more frame and a spare."""
        deadline = trio.current_time() + timeout_s
        while trio.current_time() < deadline:
            if all(out.queued < self.queue_size - 1 for out in self._outbound.values()):
                return
            await trio.sleep(0.001)

    def push(self, data: bytes) -> int:
        """Queue ``data`` to every push peer; returns how many queues took it (full ones drop, counted)."""
        self.seen.put(envelope_digest(data), SEEN_OWN)
        frame = encode_frame(KIND_ENVELOPE, data)
        taken: set[ID] = set()
        for peer in self.ready_peers():
            if not self.selection.wants(peer):
                continue  # it selected other senders (bounded ingress)
            if self._queue_envelope(peer, frame):
                taken.add(peer)
        self._catch_up.record(frame, taken, time.monotonic())
        return len(taken)

    def _queue_envelope(self, peer: ID, frame: bytes, count_drop: bool = True) -> bool:
        out = self._outbound[peer]
        try:
            out.send.send_nowait(frame)
        except trio.WouldBlock:
            self.counters.push_dropped += count_drop  # a catch-up is retried on the next tick
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        out.queued += 1
        self.counters.pushed += 1
        return True

    def _send_catch_up(self, now: float) -> None:
        """Own envelopes published since a peer chose us, to that peer (``follow.CatchUp``): once its
        SELECT frame with an age has arrived and our push stream to it is ready."""
        asked = self.selection.catch_up_since
        if not asked:
            return
        ready = self.ready_peers()
        for peer in [p for p in asked if p in ready or now - asked[p] > CATCH_UP_S]:
            since = asked.pop(peer)
            if peer not in ready or not self.selection.wants(peer):
                continue
            for frame in self._catch_up.missing(peer, since, now):
                if self._queue_envelope(peer, frame, count_drop=False):
                    self.counters.caught_up += 1
                    self._catch_up.sent(frame, peer)

    def select(self, senders: frozenset[str] | None) -> None:
        """Bounded ingress: take pushes only from ``senders`` (None: from everyone); peers are told at once."""
        self.selection.choose(senders)
        self._send_selection()

    def _send_selection(self) -> None:
        for peer, want, age in self.selection.pending(set(self._outbound)):
            out = self._outbound[peer]
            try:
                out.send.send_nowait(encode_frame(KIND_SELECT, select_body(want, age)))
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                continue  # retried on the next tick
            out.queued += 1
            self.selection.told[peer] = want

    # ------------------------------------------------------------------ background
    async def run(self) -> None:
        """Open push streams to new peers, drop closed ones, exchange peer lists, dial learned members."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                self._tick(nursery)
                await trio.sleep(_TICK_S)

    def _tick(self, nursery: trio.Nursery) -> None:
        now = time.monotonic()
        self._ticks += 1
        connected = set(self.host.get_connected_peers())
        self._follower.observe(connected, now)
        for peer in list(self._outbound):
            if peer not in connected:
                self._close_outbound(peer)
        for peer in list(self._inbound):
            if peer not in connected:
                self._forget_inbound(peer)
        for peer in connected:
            if peer in self._outbound or peer in self._opening or peer == self._my_id:
                continue
            if (self._open_backoff.get(peer) or 0.0) > now or not self._admits(peer.to_base58()):
                continue
            self._opening.add(peer)
            nursery.start_soon(self._open, peer)
        self._maybe_send_peers(now)
        self._send_selection()
        self._send_catch_up(now)
        self._dial_selected(nursery, connected)
        if self._learned_dirty or self._ticks % _DIAL_EVERY_TICKS == 0:
            self._learned_dirty = False
            self._dial_learned(nursery, connected, now)
            self._prune(nursery, connected)

    async def _open(self, peer: ID) -> None:
        try:
            with trio.fail_after(self.connect_timeout_s):
                stream = await self.host.new_stream(peer, [PUSH_PROTOCOL])
                hello = {
                    "topic": self.topic,
                    "addrs": list(self._my_addrs())[:MAX_ADDRS_PER_PEER],
                    HELLO_FLAG: 1,
                }
                await stream.write(encode_frame(KIND_HELLO, json.dumps(hello).encode()))
                peers_body = self._peers_body()
                await stream.write(encode_frame(KIND_PEERS, peers_body))
        except Exception as exc:
            logger.debug("no push stream to %s: %r", peer, exc)
            self._open_backoff.put(peer, time.monotonic() + _OPEN_BACKOFF_S)
            return
        finally:
            self._opening.discard(peer)
        send, recv = trio.open_memory_channel[bytes](self.queue_size)
        out = _Outbound(stream, send, recv)
        self._outbound[peer] = out
        self._last_peers_body = b""  # our member list changed: tell everyone
        nursery = self._nursery
        if nursery is not None:
            nursery.start_soon(self._writer, peer, out)

    async def _writer(self, peer: ID, out: _Outbound) -> None:
        """Write queued frames in order; frames already waiting go out in one write (fewer yamux/Noise
        frames and syscalls per envelope under load)."""
        try:
            async for frame in out.recv:
                out.queued -= 1
                if out.queued > 0:
                    parts = [frame]
                    size = len(frame)
                    while size < _COALESCE_BYTES:
                        try:
                            more = out.recv.receive_nowait()
                        except trio.WouldBlock:
                            break
                        out.queued -= 1
                        parts.append(more)
                        size += len(more)
                    frame = b"".join(parts)
                await out.stream.write(frame)
        except Exception as exc:
            logger.debug("push stream to %s ended: %r", peer, exc)
        finally:
            if self._outbound.get(peer) is out:
                self._open_backoff.put(peer, time.monotonic() + 1.0)
                self._close_outbound(peer)

    def _close_outbound(self, peer: ID) -> None:
        out = self._outbound.pop(peer, None)
        self.selection.forget(peer, outbound=True)
        if out is None:
            return
        out.send.close()
        self._last_peers_body = b""
        nursery = self._nursery
        if nursery is not None:
            nursery.start_soon(_reset_quietly, out.stream)

    def _forget_inbound(self, peer: ID) -> None:
        self._inbound.pop(peer, None)
        self.selection.forget(peer, outbound=False)
        if self._hello_addrs.pop(peer, None) is not None:
            self._last_peers_body = b""  # a member to unlist
        self._learned.pop(peer, None)

    def _peers_body(self) -> bytes:
        """Our directly connected members with their addresses (from their HELLOs), as a PEERS body."""
        listed = []
        for peer, addrs in list(self._hello_addrs.items())[:MAX_PEERS_PER_FRAME]:
            if peer in self._outbound or peer in self.host.get_connected_peers():
                listed.append([peer.to_base58(), list(addrs)])
        return json.dumps({"peers": listed}).encode()

    def _maybe_send_peers(self, now: float) -> None:
        if self._last_peers_body and now - self._peers_sent_at < _PEERS_REFRESH_S:
            return  # nothing changed (a change clears _last_peers_body) and no refresh due
        body = self._peers_body()
        self._last_peers_body = body
        self._peers_sent_at = now
        frame = encode_frame(KIND_PEERS, body)
        for out in list(self._outbound.values()):
            try:
                out.send.send_nowait(frame)  # control frames share the queue; a full one skips a refresh
                out.queued += 1
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                continue

    def _dial_learned(self, nursery: trio.Nursery, connected: set[ID], now: float) -> None:
        room = self.max_peers - len(connected) - len(self._dialling)
        if room <= 0:
            return
        mine = self._my_id.to_base58()
        candidates: dict[str, tuple[str, ...]] = {}
        for learned in self._learned.values():
            for text, (_, addrs) in learned.peers.items():
                if addrs and text != mine:
                    candidates.setdefault(text, addrs)
        connected_texts = {p.to_base58() for p in connected}
        for text, addrs in candidates.items():
            if room <= 0:
                break
            if text in connected_texts or text in self._dialling or not self._admits(text):
                continue
            first = self._first_learned.get(text)
            if first is None:
                first = now
                self._first_learned.put(text, now)
            if text < mine and now - first < _DIAL_YIELD_S:
                continue  # the smaller id dials; we step in only if it has not
            if self._backed_off(text, now):
                continue
            if self._follower.held(text, now):
                continue  # we closed it as idle: not again before the hold-off, unless selected
            self._dialling.add(text)
            room -= 1
            nursery.start_soon(self._dial, text, addrs)

    def _dial_selected(self, nursery: trio.Nursery, connected: set[ID]) -> None:
        """Bounded ingress: dial the selected senders this node is not connected to, at once (no id order,
        and beyond ``max_peers``: a selection must not wait for room; ``_prune`` makes room later)."""
        chosen = self.selection.selection
        if not chosen:
            return
        connected_texts = {p.to_base58() for p in connected}
        now = time.monotonic()
        for text in sorted(chosen - connected_texts - self._dialling):
            addrs = self._learned_addrs(text)
            if not addrs or self._backed_off(text, now) or not self._admits(text):
                continue
            self._dialling.add(text)
            nursery.start_soon(self._dial, text, addrs)

    def _backed_off(self, text: str, now: float) -> bool:
        """Is a dial of ``text`` still in its backoff after failures (``_dial``)?"""
        return (self._dial_backoff.get(text) or (0, 0.0))[1] > now

    def _learned_addrs(self, text: str) -> tuple[str, ...]:
        for learned in self._learned.values():
            entry = learned.peers.get(text)
            if entry is not None and entry[1]:
                return entry[1]
        return ()

    def _prune(self, nursery: trio.Nursery, connected: set[ID]) -> None:
        """Beyond ``max_peers`` connections, close the idle ones (``follow``)."""
        over = len(connected) - self.max_peers
        for peer in self._follower.idle(connected, self.selection, self._protected, over, time.monotonic()):
            self.counters.pruned += 1
            nursery.start_soon(self._disconnect, peer)

    async def _disconnect(self, peer: ID) -> None:
        with trio.move_on_after(self.connect_timeout_s):
            try:
                await self.host.disconnect(peer)
            except Exception as exc:
                logger.debug("closing the idle connection to %s raised %r", peer, exc)

    async def _dial(self, text: str, addrs: tuple[str, ...]) -> None:
        ok = False
        try:
            peer = ID.from_base58(text)
            bare = [multiaddr.Multiaddr(a).decapsulate(multiaddr.Multiaddr(f"/p2p/{text}")) for a in addrs]
            with trio.move_on_after(self.connect_timeout_s):
                await self._connect(PeerInfo(peer, bare))
                ok = True
        except Exception as exc:
            logger.debug("dial of learned peer %s failed: %r", text, exc)
        finally:
            self._dialling.discard(text)
        if ok:
            self._dial_backoff.pop(text)
            return
        failures = (self._dial_backoff.get(text) or (0, 0.0))[0] + 1
        self._dial_backoff.put(text, (failures, time.monotonic() + min(300.0, 2.0 * 2 ** min(failures, 8))))

    # ------------------------------------------------------------------ receiving side
    async def handle_inbound(self, stream: INetStream) -> None:
        """Stream handler for ``PUSH_PROTOCOL``: HELLO first, then PEERS/ENVELOPE frames until EOF.

        Never raises: a malformed frame or a broken connection resets this stream only.
        """
        peer = stream.muxed_conn.peer_id
        if peer == self._my_id or not self._admits(peer.to_base58()):
            await _reset_quietly(stream)
            return
        old = self._inbound.get(peer)
        if old is not None and old is not stream:
            await _reset_quietly(old)  # one inbound push stream per peer: the newest wins
        self._inbound[peer] = stream
        try:
            await self._read_frames(stream, peer)
        except MalformedFrame as exc:
            self._on_malformed(peer.to_base58(), exc)
            await _reset_quietly(stream)
        except FrameTimeout as exc:
            logger.info("push stream from %s reset: %s", peer, exc)
            await _reset_quietly(stream)
        except Exception as exc:
            logger.debug("push stream from %s ended: %r", peer, exc)
            await _reset_quietly(stream)  # never leave a stream open that nobody reads
        finally:
            if self._inbound.get(peer) is stream:
                self._forget_inbound(peer)

    async def _read_frames(self, stream: INetStream, peer: ID) -> None:
        """Frames until EOF. A frame must arrive whole within ``frame_timeout_s`` of its first byte (and the
        HELLO within that long of the stream's start), so a peer that stalls mid-frame loses the stream and
        its buffer; between frames a stream may stay quiet (a member with nothing to publish)."""
        buf = bytearray()
        hello = False
        deadline = trio.current_time() + self.frame_timeout_s  # the HELLO is due at once
        while True:
            chunk: bytes | None = None
            if buf or not hello:
                with trio.move_on_after(max(0.0, deadline - trio.current_time())):
                    chunk = await stream.read(_READ_CHUNK)
                if chunk is None:
                    self.counters.frames_timed_out += 1
                    raise FrameTimeout(f"no whole frame within {self.frame_timeout_s:g}s")
            else:
                chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                return
            if not buf:
                deadline = trio.current_time() + self.frame_timeout_s
            buf += chunk
            consumed = False
            while len(buf) >= _HEADER.size:
                length, kind = _HEADER.unpack_from(buf)
                limit = self.max_frame_bytes if kind == KIND_ENVELOPE else MAX_CONTROL_BYTES
                if kind not in (KIND_HELLO, KIND_PEERS, KIND_ENVELOPE, KIND_SELECT):
                    raise MalformedFrame(f"unknown frame kind {kind}")
                if length > limit:
                    raise MalformedFrame(f"frame of {length} bytes over the {limit}-byte limit")
                end = _HEADER.size + length
                if len(buf) < end:
                    break
                body = bytes(buf[_HEADER.size : end])
                del buf[:end]
                consumed = True
                if not hello:
                    if kind != KIND_HELLO:
                        raise MalformedFrame("the first frame must be HELLO")
                    self._on_hello(peer, body)
                    hello = True
                elif kind == KIND_ENVELOPE:
                    self._on_envelope(peer, body)
                elif kind == KIND_PEERS:
                    self._on_peers(peer, body)
                elif kind == KIND_SELECT:
                    self.selection.on_frame(peer, body)
                else:
                    raise MalformedFrame("HELLO sent twice")
            if consumed and buf:  # the next frame started inside this chunk: its clock starts now
                deadline = trio.current_time() + self.frame_timeout_s

    def _on_hello(self, peer: ID, body: bytes) -> None:
        obj = _json_body(body)
        if obj.get("topic") != self.topic:
            raise MalformedFrame("peer is in another swarm (topic mismatch)")
        self._hello_addrs[peer] = _valid_addrs(peer.to_base58(), obj.get("addrs", []))
        if obj.get(HELLO_FLAG) == 1:
            self.selection.supporting.add(peer)
        self._last_peers_body = b""  # a new member to list

    def _on_peers(self, peer: ID, body: bytes) -> None:
        previous = self._learned.get(peer)
        if previous is not None and previous.body == body:
            previous.at = time.monotonic()  # the periodic refresh of an unchanged list
            return
        obj = _json_body(body)
        raw = obj.get("peers")
        if not isinstance(raw, list) or len(raw) > MAX_PEERS_PER_FRAME:
            raise MalformedFrame("peers must be a short list")
        learned = _Learned(time.monotonic(), body)
        for entry in raw:
            if not isinstance(entry, list) or len(entry) != 2:
                raise MalformedFrame("a peers entry must be [peer id, addrs]")
            text, peer_id = _valid_peer_id(entry[0])
            learned.peers[text] = (peer_id, _valid_addrs(text, entry[1]))
        self._learned[peer] = learned
        self._learned_dirty = True

    def _on_envelope(self, peer: ID, body: bytes) -> None:
        if not first_on_path(self.seen, body, SEEN_PUSH):
            self.counters.duplicates_dropped += 1
            return
        self.counters.push_received += 1
        self._deliver(body, peer.to_base58())


async def _reset_quietly(stream: INetStream) -> None:
    with trio.move_on_after(2.0):
        try:
            await stream.reset()
        except Exception:
            logger.debug("reset of a push stream failed", exc_info=True)
