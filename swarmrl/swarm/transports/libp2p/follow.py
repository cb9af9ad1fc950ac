"""Connections that follow bounded ingress's selection, for swarms larger than ``swarm.max_peers``.

The push mesh dials every selected sender it is not connected to at once (beyond ``max_peers``), and, beyond
``max_peers`` connections, closes the idle ones: peers that declined this node's envelopes (they selected
other senders) and that this node did not select, connected for at least ``PRUNE_HOLD_S``. A pruned peer is
not re-dialled by peer exchange for as long, unless selected, so two nodes do not close and redial each other
in a loop. Bootstrap peers (relays among them) are never pruned. See docs/scale.md, mechanism 1b.

A sender also catches up a receiver that chose it: the receiver's SELECT frame says how long ago it chose
(``selection``), and the sender's own envelopes published since then (within ``CATCH_UP_S``, at most
``CATCH_UP_MAX``) that this peer was not sent go out at once, so a newly chosen far sender's round is not lost
to the dial. Nothing published before the choice is sent (the receiver's byte bound holds), and each envelope
reaches each peer at most once from us (no replay).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import multiaddr
from libp2p.peer.id import ID

from swarmrl.swarm.lru import LRU
from swarmrl.swarm.transports.libp2p.selection import SelectState

#: A connection is pruned only once it is this old; a pruned peer is not re-dialled for this long.
PRUNE_HOLD_S = 60.0
#: Own envelopes this recent (and at most this many) are sent to a peer that starts wanting them.
CATCH_UP_S = 30.0
CATCH_UP_MAX = 8


class Follower:
    """When each connection began and which peers were pruned (trio thread only)."""

    def __init__(self, capacity: int) -> None:
        self._since: dict[ID, float] = {}
        self._pruned_at: LRU[str, float] = LRU(capacity)

    def observe(self, connected: set[ID], now: float) -> None:
        for peer in connected:
            self._since.setdefault(peer, now)
        for peer in [p for p in self._since if p not in connected]:
            del self._since[peer]

    def held(self, peer: str, now: float) -> bool:
        """Was ``peer`` pruned less than ``PRUNE_HOLD_S`` ago (peer exchange leaves it alone)?"""
        return now - (self._pruned_at.get(peer) or -math.inf) < PRUNE_HOLD_S

    def idle(
        self, connected: set[ID], selection: SelectState, keep: frozenset[ID], over: int, now: float
    ) -> list[ID]:
        """Up to ``over`` connections to close, oldest first; they are marked as pruned."""
        if over <= 0 or selection.selection is None:
            return []
        idle = [
            p
            for p in sorted(connected, key=lambda p: self._since.get(p, now))
            if p in selection.declined_by
            and not selection.wished(p)
            and p not in keep
            and now - self._since.get(p, now) >= PRUNE_HOLD_S
        ][:over]
        for peer in idle:
            self._pruned_at.put(peer.to_base58(), now)
        return idle


class CatchUp:
    """This node's recent own envelope frames and the peers each was queued to (trio thread only)."""

    def __init__(self) -> None:
        self._recent: list[tuple[float, bytes, set[ID]]] = []

    def record(self, frame: bytes, peers: set[ID], now: float) -> None:
        self._recent.append((now, frame, set(peers)))
        del self._recent[:-CATCH_UP_MAX]

    def missing(self, peer: ID, since: float, now: float) -> list[bytes]:
        """Frames published at or after ``since`` (and within ``CATCH_UP_S``) that ``peer`` was not sent."""
        self._recent = [r for r in self._recent if now - r[0] <= CATCH_UP_S]
        return [frame for at, frame, sent in self._recent if at >= since and peer not in sent]

    def sent(self, frame: bytes, peer: ID) -> None:
        for _, f, peers in self._recent:
            if f is frame:
                peers.add(peer)


def protected_peers(bootstrap: Iterable[str]) -> frozenset[ID]:
    """The peer ids of the bootstrap multiaddrs (never pruned)."""
    out: set[ID] = set()
    for addr in bootstrap:
        with contextlib.suppress(Exception):
            pid = multiaddr.Multiaddr(addr).get_peer_id()
            if pid is not None:
                out.add(ID.from_base58(pid))
    return frozenset(out)
