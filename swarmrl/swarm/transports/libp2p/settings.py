"""Plain settings, counters and hooks of the libp2p stack (no trio, no libp2p host): shared by the stack, which
runs in its own trio thread, and the transport, which validates and builds them on the caller's side."""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from libp2p.crypto.keys import KeyPair

from swarmrl.errors import SwarmRLError
from swarmrl.swarm.transports.libp2p.push import PushCounters


class StackDied(SwarmRLError):
    """A libp2p service stopped running without raising (the supervisor restarts the stack)."""


class InjectedFault(SwarmRLError):
    """Raised on request inside an incarnation, so tests can exercise the supervisor."""


@dataclass(frozen=True)
class StackConfig:
    """Everything one stack needs; plain values, validated by the transport's constructor."""

    key_pair: KeyPair
    topic: str
    listen_host: str
    listen_port: int
    bootstrap: tuple[str, ...]
    psk_hex: str | None
    peer_cache_path: Path | None
    mdns: bool
    heartbeat_s: float
    publish_rate: float
    router_rate_limit: float
    mesh_grace_s: float
    connect_timeout_s: float
    redial_s: float
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    #: Push own envelopes over direct streams and exchange peer lists (``libp2p_push``).
    direct_push: bool = True
    #: Connections this node opens to members it learns of by peer exchange stop at this many peers.
    max_peers: int = 24
    #: Frames waiting per push stream; a publish waits (bounded) for room, then drops (counted).
    push_queue: int = 256
    #: Largest envelope accepted on a push stream.
    max_frame_bytes: int = 1024 * 1024
    #: Connections held at once (checked against the open-file limit at start).
    max_connections: int = 128
    #: Inbound connections in their security/muxer handshake at once (a new one evicts the oldest).
    max_pending_handshakes: int = 32
    #: Of those, at most this many from one remote address (a new one replaces that address's oldest).
    max_pending_handshakes_per_address: int = 4
    #: Time allowed for an inbound connection's handshake.
    handshake_timeout_s: float = 5.0
    #: A push-stream frame must arrive whole within this long of its first byte.
    push_frame_timeout_s: float = 10.0
    #: Serve as a circuit relay v2 (hop) for nodes that cannot be dialled.
    relay: bool = False
    #: Reserve a slot on bootstrap peers that are relays and advertise the /p2p-circuit addresses (NAT).
    relay_reserve: bool = False
    #: Bounded ingress (``swarm.ingress_groups_per_round`` > 0): own envelopes go only to the push peers that
    #: did not decline them, never flooded through gossipsub while any push peer is there.
    bounded_ingress: bool = False


@dataclass
class StackCounters:
    """Running totals, written by the trio thread, read (as ints, atomically) by anyone."""

    published: int = 0
    delivered: int = 0
    malformed_dropped: int = 0
    restarts: int = 0
    dial_failures: int = 0
    gossiped: int = 0
    push: PushCounters = field(default_factory=PushCounters)
    #: Snapshot (refreshed with the peers): members with a push stream, and whether that is all of them.
    direct_peers: int = 0
    push_covers_members: bool = False
    #: Peers reached only through a relay now; relayed connections upgraded to direct ones (DCUtR), in total.
    relayed_peers: int = 0
    hole_punches: int = 0


@dataclass
class StackCallbacks:
    """Thread-safe hooks the stack calls from the trio thread."""

    deliver: Callable[[bytes, str], None]
    ready: Callable[[BaseException | None], None]
    sent: Callable[[int], None] = lambda _n: None
    peers_changed: Callable[[int], None] = lambda _n: None
    #: One hostile or broken frame/message was dropped at the input boundary.
    malformed: Callable[[], None] = lambda: None
    #: Admission test on a base58 peer id, called in the trio thread (must be thread-safe); None admits all.
    admit: Callable[[str], bool] | None = None


def probe_port(host: str, port: int) -> None:
    """Fail if another process listens on ``host:port``.

    py-libp2p binds with SO_REUSEPORT, so a second node configured with the same port would silently share
    it (the kernel then splits incoming connections between them). A plain bind finds the conflict.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"{host}:{port} is already in use by another process") from exc


def psk_to_hex(psk: bytes) -> str:
    """py-libp2p wants the 32-byte private-network key as 64 hex characters."""
    return psk.hex()


def finite_positive(value: float) -> bool:
    """True for a finite number > 0 (config checks)."""
    return math.isfinite(value) and value > 0
