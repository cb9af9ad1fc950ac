"""Hostile peers, round two, against a RUNNING node on the libp2p transport (a real ``swarm-node run``).

One victim process: its own envelope re-encoded with an unknown field and handed back (the signature covers
fields, not bytes, so the transport's byte-level own-envelope filter misses it), a push-stream frame that
stalls at 99.9%, and 300 stalled partial handshakes from one loopback address, renewed as fast as the victim
drops them, while a new honest peer tries to join from another. Problems are collected per class (a run against an older node lists all).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from swarmrl.config.swarm import SwarmSection
from swarmrl.swarm.transports.libp2p.push import KIND_ENVELOPE, KIND_HELLO, PUSH_PROTOCOL, encode_frame
from swarmrl.swarm.transports.libp2p.transport import topic_for
from tests.integration.hostile_peers import (
    SWARM,
    connected,
    eventually,
    fd_count,
    rejected,
    rss_mb,
    until,
)
from tests.integration.swarm_procs import Peer, Proc, cluster, libp2p_addr, valid_group

_BOUNDED = "push_frame_timeout_s" in SwarmSection.model_fields
_PER_ADDRESS = "max_pending_handshakes_per_address" in SwarmSection.model_fields
VICTIM: dict[str, Any] = {
    "swarm": {
        "transport": "libp2p",
        **({"push_frame_timeout_s": 3.0} if _BOUNDED else {}),
        # few handshake slots, so that one address's flood renews all of them well within the gate's
        # minimum age (1 s) unless that address is held to its share
        "max_pending_handshakes": 8,
        **({"max_pending_handshakes_per_address": 2} if _PER_ADDRESS else {}),
    },
}
#: An unknown protobuf field (number 15, varint 1): parsers keep it, the signature does not cover it.
UNKNOWN_FIELD = b"\x78\x01"


def stalled_frame(target: str, result: dict[str, Any], stop: threading.Event) -> None:
    """A raw libp2p host opens a push stream, sends its HELLO and 99.9% of a 1 MB envelope frame, then
    waits: ``result['reset']`` says whether the victim dropped the stream within 15 s."""

    async def main() -> None:
        kp = create_new_key_pair()
        noise = NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)
        host = new_host(key_pair=kp, sec_opt={NOISE_PROTOCOL_ID: noise})
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = info_from_p2p_addr(multiaddr.Multiaddr(target))
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [PUSH_PROTOCOL])
            hello = b'{"topic": "%s", "addrs": []}' % topic_for(SWARM).encode()
            await stream.write(encode_frame(KIND_HELLO, hello))
            length = 1_000_000
            await stream.write(struct.pack(">IB", length, KIND_ENVELOPE) + b"\x00" * (length - 1000))
            result["sent"] = time.monotonic()
            with trio.move_on_after(15):
                try:
                    while await stream.read(65536):
                        pass
                except Exception:
                    pass
                result["reset"] = time.monotonic() - result["sent"]
            while not stop.is_set():
                await trio.sleep(0.05)

    trio.run(main)


#: Where the flood comes from: another loopback address than the newcomer's 127.0.0.1 (all of 127/8 is lo).
ATTACKER_ADDRESS = "127.0.0.2"


async def hold_handshakes(host: str, port: int, count: int, stop: asyncio.Event) -> int:
    """Keep ``count`` TCP connections from ``ATTACKER_ADDRESS`` open that sent a partial multistream header
    and stall; each one the victim drops is reopened at once. Returns how many were opened in all."""
    opened = 0

    async def one() -> None:
        nonlocal opened
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER_ADDRESS, 0))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            opened += 1
            writer.write(b"\x13/multistr")  # the first bytes of "/multistream/1.0.0\n", then nothing
            with contextlib.suppress(Exception):
                await writer.drain()
                stopper = asyncio.ensure_future(stop.wait())
                closed = asyncio.ensure_future(reader.read(1024))
                await asyncio.wait({stopper, closed}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                closed.cancel()
            writer.close()
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(count)))
    return opened


def test_libp2p_victim_survives_round_two(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        node = c.start("victim", VICTIM)
        node.wait_up()
        problems: list[str] = asyncio.run(asyncio.wait_for(_attacks(node), 200))
        assert node.process.poll() is None, node.tail()
        bad = node.bad_log_lines()
        if bad:
            problems.append(f"ERROR/Traceback lines in the victim's log: {bad[:3]}")
        assert problems == [], "\n".join(problems)
        assert node.terminate() == 0


async def _attacks(node: Proc) -> list[str]:
    problems: list[str] = []
    target = libp2p_addr(node)
    pid = node.process.pid
    good = await Peer([target]).start()
    evil = await Peer([target]).start()
    received: list[bytes] = []
    handler: Any = good.transport._handler  # type: ignore[attr-defined]

    def keep(data: bytes, via: str) -> None:
        received.append(data)
        handler(data, via)

    good.transport.subscribe(keep)
    stop_raw = threading.Event()
    frame: dict[str, Any] = {}
    raw = threading.Thread(target=stalled_frame, args=(target, frame, stop_raw), daemon=True)
    newcomer: Peer | None = None
    try:
        await until(lambda: connected(node, good.peer_id), 30, "the honest peer")
        await good.send(good.seal([valid_group(11)]))
        await until(lambda: node.accepted_from_id(good.peer_id) == 1, 30, "the honest group")
        round_before = node.round()
        rss_before = rss_mb(pid)

        # 5. the victim's own envelope, re-encoded with an unknown field, handed back by a peer
        await until(lambda: len(received) > 0, 30, "an envelope from the victim")
        own = rejected(node, "own_envelope")
        await evil.send(received[-1] + UNKNOWN_FIELD)
        await eventually(
            lambda: rejected(node, "own_envelope") > own or node.accepted_from_id(node.peer_id) > 0, 10
        )
        if node.accepted_from_id(node.peer_id) > 0:
            problems.append("5 own envelope: a re-encoded copy of the victim's envelope was accepted")

        # 9. a push frame stalled at 99.9%
        raw.start()
        await until(lambda: "sent" in frame, 30, "the stalled frame to be sent")
        await eventually(lambda: "reset" in frame, 20)
        if frame.get("reset") is None or frame["reset"] > 12:
            problems.append("9 push frame: a frame stalled mid-way kept its stream (no frame timeout)")
        else:
            print(f"stalled push frame dropped after {frame['reset']:.1f}s")

        # 4. 300 stalled partial handshakes from one address, renewed at once, while a new honest peer joins
        # from another: that address gets its share of the handshake slots and no more
        stop = asyncio.Event()
        host, port = target.split("/")[2], int(target.split("/")[4])
        holder = asyncio.ensure_future(hold_handshakes(host, port, 300, stop))
        await asyncio.sleep(3.0)  # let the stalled handshakes take their slots
        t0 = time.monotonic()
        newcomer = await Peer([target]).start()
        joined = await eventually(lambda: connected(node, newcomer.peer_id), 20)
        stop.set()
        opened = await holder
        if not joined:
            problems.append(
                f"4 handshakes: a new peer could not join past stalled handshakes ({opened} opened)"
            )
        else:
            print(f"new peer joined {time.monotonic() - t0:.1f}s into the flood ({opened} connections)")

        # still training, still accepting the honest peer, bounded
        await good.send(good.seal([valid_group(12)]))
        if not await eventually(lambda: node.accepted_from_id(good.peer_id) == 2, 30):
            problems.append("end: the honest peer's group was not accepted")
        if not await eventually(lambda: node.round() >= round_before + 3, 60):
            problems.append("rounds stopped advancing")
        rss, fds = rss_mb(pid), fd_count(pid)
        print(f"victim rss {rss_before:.0f} -> {rss:.0f} MB, fds {fds}")
        if rss > rss_before + 300:
            problems.append(f"RSS grew from {rss_before:.0f} to {rss:.0f} MB")
        if fds > 250:
            problems.append(f"{fds} open fds")
    finally:
        stop_raw.set()
        for p in (good, evil, newcomer):
            if p is not None:
                await p.close()
        if raw.is_alive():
            await asyncio.to_thread(raw.join, 10)
    return problems
