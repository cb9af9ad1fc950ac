"""The ``NodeControl`` gRPC service (status, peers, pool, recent rewards) and its small blocking client.

The service runs on the node's asyncio loop (grpc.aio), bound to 127.0.0.1 only: it is for the operator of
this machine (``swarm-node status|peers``) and tests, never for the swarm. Handlers only read node state
that the loop itself owns, so they need no locks. ``ControlPlane`` also writes ``DATA/node.json`` (see
``runinfo``) once every port is bound, so clients find the node by its data directory.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from swarmrl.errors import ConfigError, NodeError
from swarmrl.node.records import RoundRecord
from swarmrl.node.runinfo import RunInfo, pid_alive, read_run_info, remove_run_info, write_run_info
from swarmrl.protocol import swarm_pb2, swarm_pb2_grpc
from swarmrl.swarm.service import Swarm

if TYPE_CHECKING:
    from rich.table import Table

log = logging.getLogger(__name__)

CONTROL_HOST = "127.0.0.1"
#: Entries returned when a request says 0 ("server default"), and the most ever returned.
DEFAULT_POOL_LIMIT = 100
DEFAULT_REWARD_ROUNDS = 20
MAX_ITEMS = 10_000


@dataclass(frozen=True)
class ControlView:
    """What the control plane reads from a node: fixed facts, the live swarm, and getters for the rest."""

    name: str
    model: str
    transport: str
    swarm_id: str
    data_dir: Path
    control_port: int
    swarm: Swarm
    round: Callable[[], int]
    policy_version: Callable[[], int]
    recent_rounds: Callable[[], list[RoundRecord]]
    metrics_url: Callable[[], str]


class ControlServicer(swarm_pb2_grpc.NodeControlServicer):
    """Answers from the live node: its round, policy version, swarm, pool and journal."""

    def __init__(self, node: ControlView, started: float) -> None:
        self._node = node
        self._started = started

    async def Status(  # type: ignore[override]
        self, request: swarm_pb2.StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> swarm_pb2.StatusReply:
        node, swarm = self._node, self._node.swarm
        return swarm_pb2.StatusReply(
            node=node.name,
            peer_id=swarm.peer_id,
            swarm_id=node.swarm_id,
            transport=node.transport,
            round=node.round(),
            policy_version=node.policy_version(),
            peers_connected=len(swarm.peers()),
            pool_groups=swarm.pool_size(),
            uptime_seconds=time.time() - self._started,
            listen_addrs=swarm.listen_addrs(),
            model=node.model,
        )

    async def Peers(  # type: ignore[override]
        self, request: swarm_pb2.PeersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> swarm_pb2.PeersReply:
        swarm = self._node.swarm
        connected = {p.peer_id: p.address for p in swarm.peers()}
        records = swarm.peer_records()
        accepted = swarm.accepted_by_peer()
        entries = []
        for peer in sorted(set(connected) | set(records) | set(accepted))[:MAX_ITEMS]:
            rec = records.get(peer)
            entries.append(
                swarm_pb2.PeerEntry(
                    peer_id=peer,
                    address=connected.get(peer, ""),
                    score=rec.score if rec is not None else 0.0,
                    banned_until_unix_ms=int(rec.banned_until * 1000) if rec is not None else 0,
                    connected=peer in connected,
                    accepted_groups=accepted.get(peer, 0),
                )
            )
        return swarm_pb2.PeersReply(peers=entries)

    async def Pool(  # type: ignore[override]
        self, request: swarm_pb2.PoolRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> swarm_pb2.PoolReply:
        swarm = self._node.swarm
        entries = swarm.pool_entries()
        limit = min(request.limit or DEFAULT_POOL_LIMIT, MAX_ITEMS)
        out = []
        for e in entries[:limit]:
            t = e.group.task
            out.append(
                swarm_pb2.PoolEntry(
                    peer_id=e.peer,
                    task=swarm_pb2.TaskRef(
                        source=t.source,
                        dataset=t.dataset,
                        config_digest=t.config_digest,
                        seed=t.seed,
                        index=t.index,
                    ),
                    received_round=e.received_round,
                    completions=e.group.size,
                )
            )
        return swarm_pb2.PoolReply(entries=out, total=len(entries))

    async def RecentRewards(  # type: ignore[override]
        self, request: swarm_pb2.RecentRewardsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> swarm_pb2.RecentRewardsReply:
        n = min(request.rounds or DEFAULT_REWARD_ROUNDS, MAX_ITEMS)
        out = [
            swarm_pb2.RoundRewards(
                round=r.round,
                mean=float(r.reward_mean),
                modules={str(k): float(v) for k, v in r.modules.items()},
                local_groups=r.local_groups,
                external_groups=r.external_groups,
            )
            for r in self._node.recent_rounds()[-n:]
        ]
        return swarm_pb2.RecentRewardsReply(rounds=out)


class ControlPlane:
    """The control server (unless ``node.control_port`` is -1) plus ``DATA/node.json``."""

    def __init__(self, node: ControlView) -> None:
        self._node = node
        self._server: grpc.aio.Server | None = None
        self.address = ""
        self.started = time.time()

    async def start(self) -> None:
        port = self._node.control_port
        if port >= 0:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            swarm_pb2_grpc.add_NodeControlServicer_to_server(
                ControlServicer(self._node, self.started), server
            )
            try:
                bound = server.add_insecure_port(f"{CONTROL_HOST}:{port}")
            except RuntimeError as exc:
                raise NodeError(
                    f"cannot bind the control service to {CONTROL_HOST}:{port} ({exc}); "
                    "pick another node.control_port (0 = any free port, -1 disables it)"
                ) from None
            if bound == 0:
                raise NodeError(
                    f"cannot bind the control service to {CONTROL_HOST}:{port}: the port is in use; "
                    "pick another node.control_port (0 = any free port, -1 disables it)"
                )
            await server.start()
            self._server = server
            self.address = f"{CONTROL_HOST}:{bound}"
            log.info("control at %s", self.address)
        self.write_run_info()

    def run_info(self) -> RunInfo:
        node, swarm = self._node, self._node.swarm
        return RunInfo(
            pid=os.getpid(),
            name=node.name,
            metrics_url=node.metrics_url(),
            control=self.address,
            peer_id=swarm.peer_id,
            listen_addrs=swarm.listen_addrs(),
            transport=node.transport,
            swarm_id=node.swarm_id,
            started_unix=self.started,
        )

    def write_run_info(self) -> None:
        try:
            write_run_info(self._node.data_dir, self.run_info())
        except OSError as exc:
            log.warning(
                "cannot write %s/node.json (%s); `swarm-node status` needs --control",
                self._node.data_dir,
                exc,
            )

    async def close(self) -> None:
        """Stop serving and remove node.json (only ours). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=0.5)
        remove_run_info(self._node.data_dir, os.getpid())


async def start_control(node: ControlView) -> ControlPlane:
    """Start the control plane of a started node (call after the metrics server and the swarm)."""
    plane = ControlPlane(node)
    await plane.start()
    return plane


# ------------------------------------------------------------------------------------------------ client


@dataclass(frozen=True, slots=True)
class ControlClient:
    """Blocking client for ``swarm-node status|peers`` and tests. ``address`` is ``host:port``."""

    address: str
    timeout_s: float = 5.0

    def _call(self, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.address) as channel:
            stub = swarm_pb2_grpc.NodeControlStub(channel)
            try:
                return getattr(stub, method)(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                raise NodeError(
                    f"control service at {self.address} did not answer {method} ({code}); "
                    "is the node running? (`swarm-node status --data-dir D` finds it through node.json)"
                ) from None

    def status(self) -> swarm_pb2.StatusReply:
        reply: swarm_pb2.StatusReply = self._call("Status", swarm_pb2.StatusRequest())
        return reply

    def peers(self) -> swarm_pb2.PeersReply:
        reply: swarm_pb2.PeersReply = self._call("Peers", swarm_pb2.PeersRequest())
        return reply

    def pool(self, limit: int = 0) -> swarm_pb2.PoolReply:
        reply: swarm_pb2.PoolReply = self._call("Pool", swarm_pb2.PoolRequest(limit=limit))
        return reply

    def recent_rewards(self, rounds: int = 0) -> swarm_pb2.RecentRewardsReply:
        reply: swarm_pb2.RecentRewardsReply = self._call(
            "RecentRewards", swarm_pb2.RecentRewardsRequest(rounds=rounds)
        )
        return reply


def resolve_address(data_dir: Path | None, control: str | None) -> str:
    """``--control HOST:PORT`` as given, else the control address in ``DATA/node.json`` of a live node."""
    if control:
        host, sep, port = control.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError("--control", f"{control!r} must look like HOST:PORT, e.g. 127.0.0.1:50051")
        return control
    directory = data_dir if data_dir is not None else Path("./swarm-data")
    info = read_run_info(directory)
    if not pid_alive(info.pid):
        raise NodeError(
            f"the node that wrote {directory}/node.json (pid {info.pid}) is no longer running; "
            f"start it with `swarm-node run --data-dir {directory}`"
        )
    if not info.control:
        raise NodeError(
            f"node {info.name or info.pid} runs without a control service (node.control_port = -1); "
            "restart it with node.control_port >= 0"
        )
    return info.control


def status_table(reply: swarm_pb2.StatusReply) -> Table:
    """A two-column rich table of a Status reply."""
    from rich.table import Table

    table = Table(title=f"node {reply.node}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("peer id", reply.peer_id or "-"),
        ("swarm", reply.swarm_id),
        ("transport", reply.transport),
        ("model", reply.model),
        ("round", str(reply.round)),
        ("policy version", str(reply.policy_version)),
        ("peers connected", str(reply.peers_connected)),
        ("pool groups", str(reply.pool_groups)),
        ("uptime", f"{reply.uptime_seconds:.0f}s"),
        ("listening on", "\n".join(reply.listen_addrs) or "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def peers_table(reply: swarm_pb2.PeersReply, now_ms: int | None = None) -> Table:
    """One row per known peer: id, connection, address, score, accepted groups, ban."""
    from rich.table import Table

    now = int(time.time() * 1000) if now_ms is None else now_ms
    table = Table(title=f"{len(reply.peers)} known peers")
    for column in ("peer id", "connected", "address", "score", "accepted groups", "banned"):
        table.add_column(column, justify="right" if column in ("score", "accepted groups") else "left")
    for p in reply.peers:
        banned = (
            f"{(p.banned_until_unix_ms - now) / 1000:.0f}s left" if p.banned_until_unix_ms > now else "no"
        )
        table.add_row(
            p.peer_id,
            "yes" if p.connected else "no",
            p.address or "-",
            f"{p.score:.1f}",
            str(p.accepted_groups),
            banned,
        )
    return table
