"""Duplicate identity detection: one identity key may be live on one node only.

Two processes started with the same identity key have the same libp2p peer id, so the swarm cannot tell
them apart: their connections merge under one id at every peer, streams go to either, and each one's
replay and trust state is the other's. hivemind refuses a second peer with an id already in use; so does
this, with the ``/swarmrl/instance/1.0.0`` protocol:

* Every node draws a random *instance nonce* at start and, on each newly connected peer, opens a stream and
  says ``hello`` with it.
* The receiving peer remembers which connection each peer id greeted on. When a hello arrives for a peer id
  that has another live connection, it *probes* that other connection directly (a stream on that very
  connection, not one the host picks): if the node there answers with a different nonce, two nodes use one
  identity. The peer answers the newcomer ``in use`` (with since when and from where the identity is live),
  logs one line and closes the newcomer's connection. A probe that goes unanswered means the old connection
  is a dead leftover (a restarted node), and the newcomer is accepted.
* The newcomer, told ``in use`` while starting, fails its start with ``IdentityInUseError`` (the CLI prints
  one line and exits 2); told later, it logs one ERROR line and drops that peer.

Messages are one JSON line each (at most ``MAX_LINE`` bytes). Peers that do not speak the protocol (older
versions) are simply not checked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator

from swarmrl.errors import IdentityError

logger = logging.getLogger(__name__)

INSTANCE_PROTOCOL = TProtocol("/swarmrl/instance/1.0.0")
MAX_LINE = 1024
#: A hello or probe must be answered within this long.
REPLY_TIMEOUT_S = 5.0
#: How often new connections are looked for (to greet them).
_POLL_S = 0.2


class IdentityInUseError(IdentityError):
    """This node's identity key is already live on another node of the swarm (exit code 2)."""

    exit_code = 2


@dataclass
class InstanceCounters:
    #: Newcomers this node refused because their identity was live elsewhere (as a peer).
    refused: int = 0
    #: Peers that told this node its identity is already live elsewhere.
    told_in_use: int = 0


@dataclass
class InstanceGuard:
    """One per stack incarnation; ``run`` greets peers, ``handle`` answers greetings and probes."""

    host: IHost
    peer_id: str
    on_in_use: Callable[[str], None]
    nonce: str = field(default_factory=lambda: os.urandom(16).hex())
    started: float = field(default_factory=time.time)
    counters: InstanceCounters = field(default_factory=InstanceCounters)

    def __post_init__(self) -> None:
        self._greeted: set[ID] = set()
        self._answered: set[ID] = set()  # peers whose reply to our hello arrived (ok or in use)
        self._since: dict[ID, float] = {}  # when each peer id first greeted us (this incarnation)

    def install(self) -> None:
        self.host.set_stream_handler(INSTANCE_PROTOCOL, self.handle)

    def settled(self) -> bool:
        """Every currently connected peer has been greeted and has answered (or failed to)."""
        return all(p in self._answered for p in self.host.get_connected_peers())

    # ------------------------------------------------------------------ as the node that greets
    async def run(self) -> None:
        while True:
            connected = set(self.host.get_connected_peers())
            self._greeted &= connected
            self._answered &= connected
            for peer in list(self._since):
                if peer not in connected:
                    del self._since[peer]
            async with trio.open_nursery() as nursery:
                for peer in connected - self._greeted:
                    self._greeted.add(peer)
                    nursery.start_soon(self._greet, peer)
            await trio.sleep(_POLL_S)

    async def _greet(self, peer: ID) -> None:
        reply: dict[str, Any] | None = None
        try:
            with trio.move_on_after(REPLY_TIMEOUT_S):
                stream = await self.host.new_stream(peer, [INSTANCE_PROTOCOL])
                try:
                    await _write(stream, {"op": "hello", "nonce": self.nonce, "started": self.started})
                    reply = await _read(stream)
                finally:
                    await _close(stream)
        except Exception as exc:  # an older peer without the protocol, or a lost connection
            logger.debug("instance hello to %s failed: %r", peer, exc)
        self._answered.add(peer)
        if reply is None or reply.get("ok", True):
            return
        self.counters.told_in_use += 1
        where = str(reply.get("addr", "?"))
        since = _age(reply.get("since"))
        self.on_in_use(
            f"identity {self.peer_id} is already live in the swarm: peer {peer.to_base58()} sees another node "
            f"with it at {where} (for {since}); one identity key must run on one node only: stop the other "
            "node, or give this one its own key (swarm.identity_file / node.data_dir)"
        )

    # ------------------------------------------------------------------ as the peer that is greeted
    async def handle(self, stream: INetStream) -> None:
        try:
            with trio.move_on_after(REPLY_TIMEOUT_S * 2):
                msg = await _read(stream)
                if msg is None:
                    return
                if msg.get("op") == "probe":
                    await _write(stream, {"nonce": self.nonce})
                elif msg.get("op") == "hello":
                    await self._on_hello(stream, str(msg.get("nonce", "")))
        except Exception as exc:
            logger.debug("instance stream failed: %r", exc)
        finally:
            await _close(stream)

    async def _on_hello(self, stream: INetStream, nonce: str) -> None:
        peer = stream.muxed_conn.peer_id
        conn = getattr(stream, "swarm_conn", None)
        others = [
            c for c in self.host.get_network().get_connections(peer) if c is not conn and not _closed(c)
        ]
        for other in others:
            theirs = await self._probe(other)
            if theirs is None or theirs == nonce:
                continue
            addr = _addr_of(other)
            self.counters.refused += 1
            logger.warning(
                "refused peer %s from %s: a node with that identity is already live at %s; "
                "two nodes are using one identity key",
                peer.to_base58(),
                _addr_of(conn),
                addr,
            )
            await _write(stream, {"ok": False, "since": self._since.get(peer, time.time()), "addr": addr})
            await _close(stream)
            if conn is not None:
                await trio.sleep(0.2)  # let the answer leave before the connection goes
                with trio.move_on_after(2.0):
                    await conn.close()
            return
        self._since.setdefault(peer, time.time())
        await _write(stream, {"ok": True})

    async def _probe(self, conn: Any) -> str | None:
        """The nonce of the node at the other end of ``conn`` (None: no answer in time, a dead leftover)."""
        try:
            with trio.move_on_after(REPLY_TIMEOUT_S):
                stream = await conn.new_stream()
                try:
                    selected = await self.host.multiselect_client.select_one_of(  # type: ignore[attr-defined]
                        [INSTANCE_PROTOCOL], MultiselectCommunicator(stream), int(REPLY_TIMEOUT_S)
                    )
                    stream.set_protocol(selected)
                    await _write(stream, {"op": "probe"})
                    reply = await _read(stream)
                finally:
                    await _close(stream)
                return str(reply.get("nonce")) if reply else None
        except Exception as exc:
            logger.debug("instance probe failed: %r", exc)
        return None


def _closed(conn: Any) -> bool:
    return bool(getattr(conn, "is_closed", False))


def _addr_of(conn: Any) -> str:
    try:
        addrs = conn.get_transport_addresses()
        return str(addrs[0]) if addrs else "?"
    except Exception:
        return "?"


def _age(since: object) -> str:
    try:
        seconds = max(0.0, time.time() - float(since))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "an unknown time"
    return f"{seconds:.0f}s"


async def _write(stream: INetStream, msg: dict[str, Any]) -> None:
    await stream.write(json.dumps(msg).encode() + b"\n")


async def _read(stream: INetStream) -> dict[str, Any] | None:
    buf = b""
    while b"\n" not in buf:
        chunk = await stream.read(MAX_LINE)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > MAX_LINE:
            return None
    try:
        msg = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


async def _close(stream: INetStream) -> None:
    try:
        with trio.move_on_after(1.0):
            await stream.close()
    except Exception as exc:
        logger.debug("closing an instance stream raised %r", exc)
