"""Helpers for the round-two hostile-peer tests: a gRPC swarm member inside the test process, a raw gRPC
attacker that speaks the handshake itself, and readings of a victim process (RSS, fds, log lines).

The attacker code speaks both handshakes (the challenge-bound Hello and the older, unbound one), so the same
tests can be run against an older checkout of the node to show what each one caught there.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from swarmrl.protocol import envelope as wire
from swarmrl.protocol import swarm_pb2, swarm_pb2_grpc
from swarmrl.protocol.types import RolloutGroup
from tests.integration.swarm_procs import Proc, _regen, task_source

SWARM = "swarmrl-public"
REJECTED = "swarmrl_rollouts_rejected_total"
CHALLENGE_KEY = "swarmrl-challenge"
#: True when this checkout's Hello answers a per-stream challenge.
BOUND_HELLO = "challenge" in inspect.signature(wire.make_hello).parameters


async def until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def eventually(cond: Any, timeout: float) -> bool:
    """Like ``until`` but returns False on timeout (for checks collected into a list of problems)."""
    try:
        await until(cond, timeout, "")
    except AssertionError:
        return False
    return True


def rejected(proc: Proc, reason: str) -> float:
    return proc.metric(REJECTED, f'{{reason="{reason}"}}')


def peer_entry(proc: Proc, peer_id: str) -> Any:
    for p in proc.control.peers().peers:
        if p.peer_id == peer_id:
            return p
    return None


def banned(proc: Proc, peer_id: str) -> bool:
    entry = peer_entry(proc, peer_id)
    return entry is not None and entry.banned_until_unix_ms > time.time() * 1000


def connected(proc: Proc, peer_id: str) -> bool:
    entry = peer_entry(proc, peer_id)
    return entry is not None and bool(entry.connected)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def longest_log_line(proc: Proc) -> int:
    text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
    return max((len(line) for line in text.splitlines()), default=0)


def seal(ident: Any, groups: list[RolloutGroup], seq: int | None = None) -> bytes:
    now_ms = int(time.time() * 1000)
    # microseconds: signing takes longer than one, so two seals never share a sequence number
    return wire.seal(ident, SWARM, seq or time.time_ns() // 1000, wire.encode_batch(groups), now_ms)


def hello(ident: Any, challenge: bytes) -> swarm_pb2.Hello:
    now_ms = int(time.time() * 1000)
    if BOUND_HELLO:
        return wire.make_hello(ident, SWARM, "", now_ms, challenge)
    return wire.make_hello(ident, SWARM, "", now_ms)  # type: ignore[call-arg]


class Attacker:
    """Raw gRPC client: one channel (= one TCP connection), streams opened and driven by hand."""

    def __init__(self, address: str, ident: Any, max_send: int = 4 * 1024 * 1024) -> None:
        self.ident = ident
        self.channel = grpc.aio.insecure_channel(
            address,
            options=[("grpc.max_send_message_length", max_send), ("grpc.max_receive_message_length", -1)],
        )
        self.stub = swarm_pb2_grpc.SwarmPeerStub(self.channel)  # type: ignore[no-untyped-call]
        self.calls: list[Any] = []

    def open(self) -> Any:
        call = self.stub.Exchange(metadata=((CHALLENGE_KEY, os.urandom(16).hex()),))
        self.calls.append(call)
        return call

    async def link(self) -> Any:
        """A stream with a completed handshake as ``ident`` (either protocol version)."""
        call = self.open()
        if BOUND_HELLO:
            metadata = await call.initial_metadata()
            theirs = bytes.fromhex(dict(metadata)[CHALLENGE_KEY])
            await call.read()
            await call.write(swarm_pb2.PeerFrame(hello=hello(self.ident, theirs)))
        else:
            await call.write(swarm_pb2.PeerFrame(hello=hello(self.ident, b"")))
            await call.read()
        return call

    @staticmethod
    async def send_hello(call: Any, frame: swarm_pb2.Hello) -> bool:
        try:
            await call.write(swarm_pb2.PeerFrame(hello=frame))
        except Exception:
            return False
        return True

    @staticmethod
    async def send(call: Any, data: bytes) -> bool:
        try:
            await call.write(swarm_pb2.PeerFrame(envelope=data))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()
        await self.channel.close(grace=None)


class GrpcPeer:
    """An honest swarm member in the test process: real identity, real GrpcTransport dialling the victim,
    the real receive path. Keeps the raw envelopes it received (``received``)."""

    def __init__(self, root: Path, name: str, victim: str) -> None:
        from swarmrl.config import NodeConfig
        from swarmrl.swarm.events import CountingEvents
        from swarmrl.swarm.identity import Identity
        from swarmrl.swarm.service import Swarm
        from swarmrl.swarm.transports.factory import build_transport

        cfg = NodeConfig.model_validate(
            {
                "swarm": {
                    "transport": "grpc",
                    "swarm_id": SWARM,
                    "grpc": {"static_peers": [victim], "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
                }
            }
        )
        self.identity = Identity.generate()
        self.events = CountingEvents()
        source = task_source()
        self.transport = build_transport(cfg, self.identity, root / name, events=self.events)
        self.swarm = Swarm(cfg, self.identity, self.transport, lambda ref: _regen(source, ref), self.events)
        self.received: list[bytes] = []

        def keep(data: bytes, via: str) -> None:
            self.received.append(data)
            self.swarm.receiver.handle(data, via)

        self.transport.subscribe(keep)

    @property
    def peer_id(self) -> str:
        return str(self.identity.peer_id_text)

    def captured_hello(self) -> swarm_pb2.Hello:
        """A Hello exactly as this peer sends one on a stream (what someone on the path could record)."""
        make: Any = self.transport._hello  # type: ignore[attr-defined]
        return make(os.urandom(16)) if BOUND_HELLO else make()

    async def start(self) -> GrpcPeer:
        await self.swarm.start()
        return self

    async def send(self, groups: list[RolloutGroup]) -> None:
        await self.transport.publish(seal(self.identity, groups))

    async def close(self) -> None:
        await self.swarm.close()
