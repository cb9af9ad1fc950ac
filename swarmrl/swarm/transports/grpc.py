"""gRPC transport: static peers, one bidirectional stream per link, optional mutual TLS.

Each node serves ``SwarmPeer.Exchange`` and dials every address in its static peer list (reconnecting
with jittered exponential back-off). On each new stream both ends prove their peer id with a signed
``Hello`` bound to that stream by a challenge: the dialler sends a random challenge in the call metadata
(``swarmrl-challenge``), the server answers in its initial metadata with its own, and each side's Hello
signs the *other* side's challenge, so a recorded Hello is worthless on any other stream. The stream is
then bound to the peer id the Hello proves, which is what the peer filter (allowlist) and the receive path
see. Envelopes are pushed as opaque bytes; one link per peer id is used for sending, so two nodes that
list each other do not receive everything twice. A slow peer never blocks ``publish``: each link has a
bounded queue that drops its oldest envelope when full.

Bounds against hostile clients (all in ``GrpcSettings``, from ``swarm.grpc``): at most ``max_connections``
TCP connections (checked against ``RLIMIT_NOFILE`` at start), ``max_streams_per_connection`` streams on one
connection, ``max_handshakes`` streams handshaking at once (more are refused at once), ``max_links_per_peer``
links per peer id (the oldest is closed), the HTTP/2 and Hello handshakes within ``handshake_timeout_s``,
and a read timeout on every link (``idle_timeout_s``; each side sends an empty keepalive frame every
``keepalive_s``), so a stream that stalls mid-frame is closed. Envelopes over gRPC's message cap are
counted as ``oversized`` rejections.

With ``tls_ca``/``tls_cert``/``tls_key`` both the server and the dialler present certificates signed by
the swarm CA and require the other side's (mutual TLS); a peer without such a certificate cannot open a
stream. Without TLS, the Hello still proves identity, but traffic is not confidential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from swarmrl.errors import ProtocolError, TransportError
from swarmrl.protocol import envelope as wire
from swarmrl.protocol import swarm_pb2, swarm_pb2_grpc
from swarmrl.protocol.envelope import Signer
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.fdlimit import connection_budget
from swarmrl.swarm.transports.base import EnvelopeHandler, PeerFilter, PeerState, Transport

log = logging.getLogger(__name__)

_FRAME_OVERHEAD = 1024
#: After a stream's EOF, how long the server waits to tell a clean half-close from a stream gRPC cancelled.
_ABORT_GRACE_S = 0.25
#: Metadata key carrying a side's challenge (hex) for the other side's Hello.
CHALLENGE_KEY = "swarmrl-challenge"
#: ``close`` waits at most this long for the link tasks it cancelled, then for the server's stop.
CLOSE_TASKS_S = 5.0
SERVER_STOP_GRACE_S = 0.2
SERVER_STOP_S = 5.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for mutual TLS: the swarm CA, this node's certificate chain and its key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except OSError as exc:
            raise TransportError(
                f"cannot read TLS file '{exc.filename}': {exc.strerror}; check swarm.grpc.tls_*"
            ) from None


@dataclass(frozen=True, slots=True)
class GrpcSettings:
    swarm_id: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    static_peers: tuple[str, ...] = ()
    tls: TlsFiles | None = None
    tls_server_name: str = ""
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    handshake_timeout_s: float = 5.0
    send_queue: int = 256
    max_envelope_bytes: int = 1_000_000
    max_clock_skew_s: float = 300.0
    max_connections: int = 256
    max_streams_per_connection: int = 4
    max_handshakes: int = 64
    max_links_per_peer: int = 2
    idle_timeout_s: float = 30.0
    keepalive_s: float = 10.0


class _Link:
    """One authenticated stream to a peer, with its bounded outgoing queue."""

    def __init__(self, peer_id: str, address: str, capacity: int) -> None:
        self.peer_id = peer_id
        self.address = address
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=capacity)
        self.dropped = 0
        self.closed = asyncio.Event()
        self.eof = False  # the peer's side of the stream ended

    def offer(self, data: bytes) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(data)


ReadFrame = Callable[[], Awaitable[Any]]
WriteFrame = Callable[[swarm_pb2.PeerFrame], Awaitable[None]]


class _Servicer(swarm_pb2_grpc.SwarmPeerServicer):
    def __init__(self, transport: GrpcTransport) -> None:
        self._t = transport

    async def Exchange(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:  # type: ignore[override]
        del request_iterator  # frames are read with context.read()
        t = self._t
        task = asyncio.current_task()
        if t._closing or task is None:
            return
        t._handlers.add(task)
        try:
            await self._exchange(t, context)
        except asyncio.CancelledError:
            if not t._closing:
                raise
            # cancelled by our own close: end the call normally (re-raising makes gRPC print a traceback
            # per open stream at every shutdown, for streams any client can hold open)
        finally:
            t._handlers.discard(task)

    async def _exchange(self, t: GrpcTransport, context: grpc.aio.ServicerContext) -> None:
        if t._handshaking >= t.settings.max_handshakes:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many handshakes in progress")
            return
        t._handshaking += 1
        try:
            link = await asyncio.wait_for(t._accept(context), t.settings.handshake_timeout_s)
        except (TimeoutError, ProtocolError) as exc:
            log.info("refused inbound stream from %.100s: %s", context.peer(), exc)
            link = None
        except Exception as exc:  # the client went away mid-handshake, an over-cap frame, ...
            t._count_oversized(exc)
            log.debug("inbound handshake from %.100s failed: %r", context.peer(), exc)
            return
        finally:
            t._handshaking -= 1
        if link is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "handshake refused")
            return
        try:
            await t._serve_link(link, context.read, context.write)
            if link.eof:
                # A dialler closes its stream with a half-close (EOF) and nothing after. gRPC itself ends a
                # stream whose message is over its cap: the read sees EOF and the call is then cancelled.
                await asyncio.sleep(_ABORT_GRACE_S)
        except asyncio.CancelledError:
            if link.eof and not t._closing:
                t._count_reset(link)
            raise


class GrpcTransport(Transport):
    """Static-peer gRPC transport (see module docstring)."""

    def __init__(
        self, settings: GrpcSettings, identity: Signer, peer_id_text: str, events: SwarmEvents | None = None
    ) -> None:
        self.settings = settings
        self._events = events
        self._identity = identity
        self.peer_id = peer_id_text
        self._handler: EnvelopeHandler | None = None
        self._admit: PeerFilter | None = None
        self._links: dict[str, list[_Link]] = {}
        self._server: grpc.aio.Server | None = None
        self._port = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()  # server-side stream handlers running now
        self._closing = False
        self._rng = random.Random()
        self._handshaking = 0
        self.max_connections = settings.max_connections
        self.sent = 0
        limit = settings.max_envelope_bytes + _FRAME_OVERHEAD
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]

    # --------------------------------------------------------------------------------------- interface

    async def start(self) -> None:
        s = self.settings
        # no SO_REUSEPORT: a second node on the same port must fail, not silently share the socket
        self.max_connections = connection_budget(s.max_connections, "swarm.grpc.max_connections")
        per_conn = s.max_streams_per_connection
        handshake_ms = int(s.handshake_timeout_s * 1000)
        server = grpc.aio.server(
            options=[
                *self._options,
                ("grpc.so_reuseport", 0),
                ("grpc.max_allowed_incoming_connections", self.max_connections),
                ("grpc.max_concurrent_streams", per_conn),
                ("grpc.server_handshake_timeout_ms", handshake_ms),
                # a connection without a stream is closed after this long (idle floods hold no fds)
                ("grpc.max_connection_idle_ms", handshake_ms),
            ],
            maximum_concurrent_rpcs=self.max_connections * per_conn,
        )
        swarm_pb2_grpc.add_SwarmPeerServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        bind = f"{s.listen_host}:{s.listen_port}"
        try:
            if s.tls is None:
                port = server.add_insecure_port(bind)
            else:
                ca, cert, key = s.tls.read()
                creds = grpc.ssl_server_credentials(
                    [(key, cert)], root_certificates=ca, require_client_auth=True
                )
                port = server.add_secure_port(bind, creds)
        except (RuntimeError, TransportError) as exc:
            await server.stop(None)
            raise TransportError(f"cannot listen on {bind}: {exc}; pick another swarm.listen_port") from None
        if port == 0:
            await server.stop(None)
            raise TransportError(
                f"cannot listen on {bind}; is the port in use? pick another swarm.listen_port"
            )
        self._port = port
        await server.start()
        self._server = server
        for address in s.static_peers:
            self._spawn(self._dial_loop(address))

    async def publish(self, data: bytes) -> None:
        for links in list(self._links.values()):
            if links:
                links[0].offer(data)
                self.sent += 1

    def subscribe(self, handler: EnvelopeHandler) -> None:
        self._handler = handler

    def set_peer_filter(self, admit: PeerFilter) -> None:
        self._admit = admit

    def peers(self) -> list[PeerState]:
        return [PeerState(peer_id=p, address=links[0].address) for p, links in self._links.items() if links]

    def listen_addrs(self) -> list[str]:
        return [f"{self.settings.listen_host}:{self._port}"] if self._port else []

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # Bounded: every link task (dial loops and server-side stream handlers, whatever a peer left them
        # doing) is cancelled and awaited for at most CLOSE_TASKS_S, then the server stops with a grace.
        tasks = [*self._tasks, *self._handlers]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TASKS_S)
            for task in stuck:
                log.warning(
                    "gRPC link task %s did not stop within %.0fs of close", task.get_name(), CLOSE_TASKS_S
                )
        server, self._server = self._server, None
        if server is not None:
            try:
                await asyncio.wait_for(server.stop(grace=SERVER_STOP_GRACE_S), SERVER_STOP_S)
            except TimeoutError:
                log.warning("gRPC server did not stop within %.0fs", SERVER_STOP_S)

    # --------------------------------------------------------------------------------------- handshake

    def _hello(self, challenge: bytes) -> swarm_pb2.Hello:
        addr = self.listen_addrs()
        return wire.make_hello(
            self._identity, self.settings.swarm_id, addr[0] if addr else "", _now_ms(), challenge
        )

    def _check_hello(self, frame: Any, challenge: bytes) -> str:
        if frame is grpc.aio.EOF or frame is None or not frame.HasField("hello"):
            raise ProtocolError("malformed", "stream did not start with a Hello")
        skew_ms = int(self.settings.max_clock_skew_s * 1000)
        peer = wire.verify_hello(frame.hello, self.settings.swarm_id, _now_ms(), skew_ms, challenge)
        if peer == self.peer_id:
            raise ProtocolError("malformed", "connected to ourselves")
        if self._admit is not None and not self._admit(peer):
            raise ProtocolError("not_allowed", f"peer {peer} is not on the allowlist")
        return peer

    async def _accept(self, context: grpc.aio.ServicerContext) -> _Link:
        """Server side of the handshake: their challenge in, ours out with our Hello, their Hello in."""
        theirs = _challenge_from(context.invocation_metadata())
        if theirs is None:
            raise ProtocolError("malformed", "no challenge in the call metadata")
        ours = os.urandom(wire.CHALLENGE_BYTES)
        await context.send_initial_metadata(((CHALLENGE_KEY, ours.hex()),))
        await context.write(swarm_pb2.PeerFrame(hello=self._hello(theirs)))
        first = await context.read()
        peer = self._check_hello(first, ours)
        address = first.hello.listen_addr or str(context.peer())[:100]
        return _Link(peer, address, self.settings.send_queue)

    def _count_oversized(self, exc: BaseException) -> None:
        """gRPC fails a call whose message is over its cap; count it like the receive path would."""
        code = getattr(exc, "code", None)
        status = code() if callable(code) else None
        over = status == grpc.StatusCode.RESOURCE_EXHAUSTED or "message larger than max" in str(exc).lower()
        if over and self._events is not None:
            self._events.rejected("oversized")

    def _count_reset(self, link: _Link) -> None:
        """An inbound stream gRPC ended under us: in this protocol that is an envelope over gRPC's message
        cap (the server fails the call) or a dialler that broke the stream off instead of closing it."""
        log.info("stream from peer %s ended by gRPC (an envelope over the message cap?)", link.peer_id)
        if self._events is not None:
            self._events.rejected("oversized")

    # ------------------------------------------------------------------------------------------ links

    async def _serve_link(
        self,
        link: _Link,
        read: ReadFrame,
        write: WriteFrame,
        finish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run an authenticated link until either side closes it: read frames, push the queue.

        ``finish`` (the dialler's half-close) runs before the reader is stopped: cancelling a pending read
        cancels the whole gRPC call, which the server could not tell from a stream gRPC broke off."""
        links = self._links.setdefault(link.peer_id, [])
        links.append(link)
        while len(links) > self.settings.max_links_per_peer:
            links.pop(0).closed.set()  # the peer's oldest link makes room (a reconnect replaces it)
        self._report_peers()
        log.info("connected to peer %s at %.100s", link.peer_id, link.address)
        reader = asyncio.ensure_future(self._read_loop(link, read))
        closer = asyncio.ensure_future(link.closed.wait())
        getter: asyncio.Future[bytes] | None = None
        keepalive, idle = self.settings.keepalive_s, self.settings.idle_timeout_s
        try:
            while True:
                getter = asyncio.ensure_future(link.queue.get())
                done, _ = await asyncio.wait(
                    {getter, reader, closer}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # nothing to send for a while: keep the peer's read timeout from firing
                    getter.cancel()
                    getter = None
                    await asyncio.wait_for(write(swarm_pb2.PeerFrame(envelope=b"")), idle)
                    continue
                if getter not in done:
                    break
                data = getter.result()
                getter = None
                # a peer that stops reading fills the stream's flow-control window: writes then block,
                # and such a link is closed like one that stops sending
                await asyncio.wait_for(write(swarm_pb2.PeerFrame(envelope=data)), idle)
                if self._events is not None:
                    self._events.messages_sent(1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke (peer gone, cancelled RPC): close this link only
            log.debug("link to peer %s failed: %r", link.peer_id, exc)
        finally:
            if finish is not None and not reader.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(finish(), 1.0)
                    await asyncio.wait_for(asyncio.shield(reader), 2.0)  # the server ends the call
            parts = [task for task in (getter, reader, closer) if task is not None]
            for task in parts:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait(parts, timeout=CLOSE_TASKS_S)
            links = self._links.get(link.peer_id, [])
            if link in links:
                links.remove(link)
            if not links:
                self._links.pop(link.peer_id, None)
            self._report_peers()
            log.info("link to peer %s closed", link.peer_id)

    async def _read_loop(self, link: _Link, read: ReadFrame) -> None:
        """Every read has a deadline: a peer that sends nothing (not even a keepalive) for
        ``idle_timeout_s``, or stalls in the middle of a frame, loses the link."""
        timeout = self.settings.idle_timeout_s
        while True:
            try:
                frame = await asyncio.wait_for(read(), timeout)
            except TimeoutError:
                log.info("link to peer %s idle for %.0fs; closing it", link.peer_id, timeout)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._count_oversized(exc)
                log.debug("reading from peer %s failed: %r", link.peer_id, exc)
                return
            if frame is grpc.aio.EOF:
                link.eof = True
                return
            if frame.HasField("envelope") and frame.envelope and self._handler is not None:
                self._handler(frame.envelope, link.peer_id)

    async def _dial_loop(self, address: str) -> None:
        """Keep a stream to ``address`` open, reconnecting with jittered exponential back-off."""
        s = self.settings
        delay = s.reconnect_min_s
        while not self._closing:
            try:
                if await self._dial_once(address):
                    delay = s.reconnect_min_s
            except asyncio.CancelledError:
                raise
            except ProtocolError as exc:
                log.warning("peer at %s refused: %s", address, exc)
                if "ourselves" in str(exc):
                    return
            except Exception as exc:  # network failures are normal at the edge: retry
                log.debug("stream to %s failed: %r", address, exc)
            if self._closing:
                return
            await asyncio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, s.reconnect_max_s)

    async def _dial_once(self, address: str) -> bool:
        """One connection attempt; returns True if the handshake succeeded (the stream has ended since)."""
        s = self.settings
        options = list(self._options)
        if s.tls is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            ca, cert, key = s.tls.read()
            creds = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
            if s.tls_server_name:
                options.append(("grpc.ssl_target_name_override", s.tls_server_name))
            channel = grpc.aio.secure_channel(address, creds, options=options)
        try:
            stub = swarm_pb2_grpc.SwarmPeerStub(channel)  # type: ignore[no-untyped-call]
            ours = os.urandom(wire.CHALLENGE_BYTES)
            call = stub.Exchange(metadata=((CHALLENGE_KEY, ours.hex()),))
            try:
                peer = await asyncio.wait_for(self._greet(call, ours), s.handshake_timeout_s)
                await self._serve_link(
                    _Link(peer, address, s.send_queue), call.read, call.write, finish=call.done_writing
                )
            finally:
                call.cancel()
            return True
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.close(grace=None), CLOSE_TASKS_S)

    async def _greet(self, call: Any, ours: bytes) -> str:
        """Dialler side of the handshake: the server's challenge and Hello in, our Hello out."""
        theirs = _challenge_from(await call.initial_metadata())
        if theirs is None:
            raise ProtocolError("malformed", "the server sent no challenge (an older swarmrl version?)")
        peer = self._check_hello(await call.read(), ours)
        await call.write(swarm_pb2.PeerFrame(hello=self._hello(theirs)))
        return peer

    def _report_peers(self) -> None:
        if self._events is not None:
            self._events.peers_connected(len(self._links))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _challenge_from(metadata: Any) -> bytes | None:
    """The peer's challenge from call metadata, or None when absent or not 16 bytes of hex."""
    for key, value in metadata or ():
        if key == CHALLENGE_KEY and isinstance(value, str) and len(value) == 2 * wire.CHALLENGE_BYTES:
            try:
                return bytes.fromhex(value)
            except ValueError:
                return None
    return None
