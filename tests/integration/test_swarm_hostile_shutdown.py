"""A gRPC victim (a real ``swarm-node run``) under an active attack must still stop promptly on SIGTERM.

While SIGTERM arrives: the victim's own static peer is a tarpit that accepts TCP and never answers (its dial
loop is mid-handshake), linked attacker streams never read what the victim writes, streams sit in the
handshake without a Hello, raw connections stop half-way through the HTTP/2 preface, and a loop keeps
opening and cancelling streams. The victim must exit 0 within ``EXIT_BOUND_S``, and within
``AFTER_STOP_BOUND_S`` of logging that it stopped, with no ERROR or Traceback line in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from swarmrl.swarm.identity import Identity
from tests.integration.hostile_peers import Attacker, GrpcPeer, connected, until
from tests.integration.swarm_procs import Proc, cluster

#: Seconds from SIGTERM to exit: the round in flight, a checkpoint and a bounded close (FAST rounds take
#: well under a second; the rest is headroom for a saturated machine).
EXIT_BOUND_S = 30.0
#: Seconds from the node's "stopped at round" line (everything closed) to the process being gone. Before
#: ``exit_now`` this was the interpreter's teardown: 9 s at load 10, 24 s at load 35 on 2 cores.
AFTER_STOP_BOUND_S = 5.0
STOPPED = re.compile(r"^(\S+ \S+) INFO .*stopped at round", re.M)


async def tarpit(held: list[asyncio.StreamWriter]) -> asyncio.Server:
    """A TCP server that accepts and never sends a byte."""

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    return await asyncio.start_server(accept, "127.0.0.1", 0)


def test_grpc_victim_under_attack_exits_promptly_on_sigterm(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_run(tmp_path), 600))


async def _run(root: Path) -> None:
    held: list[asyncio.StreamWriter] = []
    pit = await tarpit(held)
    pit_port = pit.sockets[0].getsockname()[1]
    victim: dict[str, Any] = {
        "swarm": {
            "transport": "grpc",
            "grpc": {
                "static_peers": [f"127.0.0.1:{pit_port}"],
                "handshake_timeout_s": 4.0,
                "idle_timeout_s": 5.0,
                "keepalive_s": 1.0,
            },
        }
    }
    with cluster(root) as c:
        node = c.start("victim", victim)
        await asyncio.to_thread(node.wait_up)
        try:
            await _attack_then_stop(node, root, held)
        finally:
            pit.close()
            for w in held:
                w.close()


async def _attack_then_stop(node: Proc, root: Path, held: list[asyncio.StreamWriter]) -> None:
    assert node.info is not None
    (addr,) = [a for a in node.info.listen_addrs if "/" not in a]
    host, port = addr.rsplit(":", 1)
    good = await GrpcPeer(root, "good", addr).start()
    attackers: list[Attacker] = []
    stop = asyncio.Event()

    async def churn() -> None:
        a = Attacker(addr, Identity.generate())
        attackers.append(a)
        while not stop.is_set():
            with contextlib.suppress(Exception):
                call = await asyncio.wait_for(a.link(), 5)
                call.cancel()
            await asyncio.sleep(0.05)

    churner: asyncio.Future[None] | None = None
    try:
        await until(lambda: connected(node, good.peer_id), 60, "the honest peer to link")
        silent = [Attacker(addr, Identity.generate()) for _ in range(3)]
        attackers.extend(silent)
        for a in silent:  # linked, then never read what the victim writes
            await a.link()
        pending = Attacker(addr, Identity.generate())
        attackers.append(pending)
        for _ in range(3):  # streams left in the handshake: no Hello ever comes
            pending.open()
        for _ in range(20):  # half an HTTP/2 preface, then nothing
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"PRI * HTTP/2.0\r\n")
            held.append(writer)
        churner = asyncio.ensure_future(churn())
        await until(
            lambda: all(connected(node, a.ident.peer_id_text) for a in silent), 30, "the silent links"
        )
        await asyncio.sleep(1.0)  # the churn is under way

        t0 = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(node.process.wait, EXIT_BOUND_S)
        except Exception:
            pytest.fail(f"the victim had not exited {EXIT_BOUND_S:.0f}s after SIGTERM:\n{node.tail()}")
        took, gone = time.monotonic() - t0, time.time()
        stopped = STOPPED.search(node.log.read_text(errors="replace"))
        assert stopped is not None, node.tail()
        after_stop = gone - datetime.strptime(stopped.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        print(
            f"victim exited {code} {took:.1f}s after SIGTERM ({after_stop:.1f}s after it stopped), under attack"
        )
        assert code == 0, node.tail()
        assert after_stop < AFTER_STOP_BOUND_S, f"{after_stop:.1f}s from 'stopped at round' to exit"
        assert node.bad_log_lines() == [], node.bad_log_lines()[:5]
    finally:
        stop.set()
        if churner is not None:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, Exception):
                await asyncio.wait_for(churner, 10)
        for a in attackers:
            with contextlib.suppress(Exception):
                await a.close()
        await good.close()
